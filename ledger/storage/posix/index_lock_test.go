package posix

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// envHold makes the test binary a child that opens the index of the data
// directory it names (TestHoldIndex), says "held", and keeps it open until
// its stdin closes.
const envHold = "NOTARIZE_TEST_HOLD_INDEX"

// TestHoldIndex is the child of TestIndexHeldByAnotherProcess.
func TestHoldIndex(t *testing.T) {
	dir := os.Getenv(envHold)
	if dir == "" {
		t.Skip("the child process of TestIndexHeldByAnotherProcess")
	}
	st, err := New(t.Context(), Config{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	os.Stdout.WriteString("held\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// TestIndexHeldByAnotherProcess: while another process (a ledger) holds a
// data directory, on either engine, opening it fails at once as in use,
// and a migration refuses to run and leaves it as it was.
func TestIndexHeldByAnotherProcess(t *testing.T) {
	if os.Getenv(envHold) != "" {
		t.Skip("in the child")
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := New(t.Context(), Config{Dir: dir, Engine: e.name, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestHoldIndex$", "-test.count=1")
			cmd.Env = append(os.Environ(), envHold+"="+dir)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "held\n" {
				t.Fatalf("child: %q %v", line, err)
			}
			if _, err := New(t.Context(), Config{Dir: dir, Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
				t.Fatalf("a held %s directory: %v", e.name, err)
			}
			if e.name == EngineBbolt {
				if _, err := MigrateIndex(t.Context(), dir, quiet()); err == nil || !strings.Contains(err.Error(), "in use") {
					t.Fatalf("migration of a held index: %v", err)
				}
				if got, _ := DirEngine(dir); got != EngineBbolt {
					t.Fatalf("a refused migration left engine %q", got)
				}
			}
		})
	}
}
