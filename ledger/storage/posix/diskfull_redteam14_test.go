package posix

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// envRT14Full makes the test binary the child of rt14WriteUntilFull: it
// limits the size of the files it may write (RLIMIT_FSIZE, as a full disk
// refuses a write), opens the engine it names in the directory it names
// and writes until a Write fails, then prints how it failed.
const envRT14Full = "NOTARIZE_TEST_RT14_FULL"

// TestRedteam14FullChild is the child of rt14WriteUntilFull.
func TestRedteam14FullChild(t *testing.T) {
	spec := os.Getenv(envRT14Full)
	if spec == "" {
		t.Skip("the child process of the disk-full tests")
	}
	engine, dir, _ := strings.Cut(spec, ":")
	signal.Ignore(syscall.SIGXFSZ) // a write past the limit fails with EFBIG instead
	var ix indexCloser
	var err error
	if engine == EnginePebble {
		ix, err = openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
	} else {
		ix, err = openIndex(filepath.Join(dir, IndexFile), quiet())
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 2 << 20, Max: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			fmt.Printf("PANIC: %.200v\n", fmt.Sprint(r))
		}
	}()
	for b := 0; b < 10000; b++ {
		rows := rt14Batch(b, 16, h(fmt.Sprint(b)), h("k"))
		for i := range rows {
			rows[i].Data = make([]byte, 2048)
		}
		if _, err := ix.Write(t.Context(), uint64(b*16), rows); err != nil {
			_, perr := ix.Position(t.Context())
			fmt.Printf("ERROR: %.200v (position read after: %v)\n", err, perr)
			return
		}
	}
	fmt.Println("NO LIMIT HIT")
}

// rt14WriteUntilFull runs TestRedteam14FullChild on engine and returns
// its output.
func rt14WriteUntilFull(t *testing.T, engine string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestRedteam14FullChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envRT14Full+"="+engine+":"+t.TempDir())
	out, err := cmd.CombinedOutput()
	t.Logf("%s child (%v): %s", engine, err, out)
	return string(out)
}

// TestRedteam14BboltFullDiskIsAnError: the bbolt index on a disk that
// refuses writes returns the error from Write (the follower retries with
// backoff; lookups keep being answered), which is what the pebble engine
// is compared with (TestRedteam14PebbleFullDiskPanics, tag redteam14).
func TestRedteam14BboltFullDiskIsAnError(t *testing.T) {
	if os.Getenv(envRT14Full) != "" {
		t.Skip("in the child")
	}
	if out := rt14WriteUntilFull(t, EngineBbolt); !strings.Contains(out, "ERROR: ") {
		t.Fatalf("the bbolt index on a full disk: %s", out)
	}
}
