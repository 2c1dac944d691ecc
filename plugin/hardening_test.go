package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// runEnv is harness.run with the environment variables vars instead of the
// harness's own.
func (h *harness) runEnv(vars map[string]string, args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	return h.runWith(vars, nil, args...)
}

// runWith is runEnv with the environment changed by mod.
func (h *harness) runWith(vars map[string]string, mod func(*env), args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	dockerCli, err := command.NewDockerCli(
		command.WithInputStream(io.NopCloser(strings.NewReader(""))),
		command.WithOutputStream(&out),
		command.WithErrorStream(&errOut),
	)
	if err != nil {
		h.t.Fatal(err)
	}
	e := env{
		lookupEnv:    func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		now:          h.now,
		keychain:     authn.NewMultiKeychain(),
		isTerminal:   func(int) bool { return false },
		readPassword: func(int) ([]byte, error) { panic("no terminal in tests") },
	}
	if mod != nil {
		mod(&e)
	}
	cmd := newRootCmd("docker-notarize", false, dockerCli, e)
	cmd.SetArgs(args)
	code, msg := Exit(cmd.ExecuteContext(h.t.Context()))
	if msg != "" {
		errOut.WriteString(msg + "\n")
	}
	return out.String(), errOut.String(), code
}

// TestKeyGenerateRefusesEmptyPasswordEnv: NOTARIZE_PASSWORD set but empty
// must not make a key that is only nominally encrypted, as the prompt
// refuses an empty password.
func TestKeyGenerateRefusesEmptyPasswordEnv(t *testing.T) {
	h := newHarness(t)
	vars := map[string]string{EnvHome: h.home, EnvPassword: "", EnvLedger: h.ledger.URL}
	out, errOut, code := h.runEnv(vars, "key", "generate", "--name", "carol")
	if code == 0 || !strings.Contains(errOut, EnvPassword) || !strings.Contains(errOut, "empty") {
		t.Fatalf("key generate with an empty %s: exit %d\nstdout: %s\nstderr: %s", EnvPassword, code, out, errOut)
	}
	if _, err := NewKeyStore(h.home).Public("carol"); err == nil {
		t.Fatal("a key was created")
	}
	entries, err := os.ReadDir(filepath.Join(h.home, "keys"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("key store holds %v (%v), want nothing", entries, err)
	}
	vars[EnvPassword] = testPassword
	h.mustRunEnv(vars, 0, "key", "generate", "--name", "carol")
}

func (h *harness) mustRunEnv(vars map[string]string, want int, args ...string) string {
	h.t.Helper()
	out, errOut, code := h.runEnv(vars, args...)
	if code != want {
		h.t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out
}

// TestFileNotRegularRefusedWithoutBlocking: file:PATH naming a FIFO, a
// device or a directory is refused at once, never opened for a read that
// blocks (a FIFO without a writer blocks open(2) forever, past Ctrl-C).
func TestFileNotRegularRefusedWithoutBlocking(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Should an old build block in open(2), a writer releases it at the end.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	link := filepath.Join(dir, "link-to-fifo")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"fifo", fifo, "named pipe"},
		{"symlink to a fifo", link, "named pipe"},
		{"character device", os.DevNull, "device"},
		{"directory", dir, "directory"},
	} {
		for _, cmd := range []string{"sign", "verify"} {
			t.Run(tc.name+"/"+cmd, func(t *testing.T) {
				type result struct {
					errOut string
					code   int
				}
				done := make(chan result, 1)
				go func() {
					_, errOut, code := h.run(cmd, "file:"+tc.path)
					done <- result{errOut, code}
				}()
				select {
				case r := <-done:
					if r.code == 0 || !strings.Contains(r.errOut, tc.want) || !strings.Contains(r.errOut, "not a regular file") {
						t.Fatalf("exit %d, stderr %q; want a refusal naming %q", r.code, r.errOut, tc.want)
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("%s file:%s still running after 30s: blocked", cmd, tc.path)
				}
			})
		}
	}
}

// TestResolveFileEndsWithContext: hashing a file stops when the command's
// context is cancelled (Ctrl-C).
func TestResolveFileEndsWithContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := resolveFile(ctx, path); !errors.Is(err, context.Canceled) {
		t.Fatalf("hash under a cancelled context: %v", err)
	}
	s, err := resolveFile(t.Context(), path)
	if err != nil || s.Size != 1<<20 || s.Digest != notarize.DigestOf(make([]byte, 1<<20)) {
		t.Fatalf("hash: %+v, %v", s, err)
	}
}

// strangerStatementBytes is less than one of floodStatements' statements
// (nine 1,000-byte attributes, base64 in the entry), and more than an
// owner's lookup answer on this ledger (~2.3 KB): a lookup that reads even
// one of the stranger's statements reads more than this. (Larger
// statements cost the race-enabled ledger ~4× the CPU to log, 150 s of it
// at 30 KB, for no sharper test.)
const strangerStatementBytes = 8 << 10

// floodStatements has a stranger's fresh key post n statements of more
// than strangerStatementBytes each about d to the ledger at url, a few at
// a time.
func floodStatements(t *testing.T, url string, d notarize.Digest, n int) {
	t.Helper()
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: url, Home: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	mallory := notarizetest.NewSigner(t)
	attrs := map[string]string{}
	for i := range 9 {
		attrs[fmt.Sprintf("pad%02d", i)] = strings.Repeat("x", 1000)
	}
	at := time.Now().UTC().Add(-time.Minute)
	statement := func(i int) (*notarize.Entry, error) {
		return notarize.Sign(t.Context(), mallory, notarize.NewStatement(d, "stranger", notarize.Predicate{
			Status: notarize.StatusTrusted, Kind: notarize.KindImage, Name: "mallory",
			Attributes: attrs, Timestamp: at.Add(time.Duration(i) * time.Millisecond),
		}))
	}
	// The statements differ only in their timestamps: one's size is theirs.
	if e, err := statement(0); err != nil {
		t.Fatal(err)
	} else if b, err := json.Marshal(e); err != nil || len(b) <= strangerStatementBytes {
		t.Fatalf("a stranger's statement of %d bytes (%v), not more than %d", len(b), err, strangerStatementBytes)
	}
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				e, err := statement(i)
				if err == nil {
					_, err = c.Submit(t.Context(), e)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("stranger's statement: %v", err)
	}
}

// TestStrangerCannotBlockRevocation: on an open ledger a stranger's key
// floods the owner's digest with many large statements. The owner's
// untrust, sign, verify and inspect still work and read only the owner's
// statements; inspect --all still reads every one, page by page.
func TestStrangerCannotBlockRevocation(t *testing.T) {
	t.Parallel() // ~45 s under -race, mostly the flood: beside the tests that wait
	h := newHarness(t, "alice")
	app := h.reg.host + "/app:v1"
	h.mustRun(0, "sign", app)
	var v verifyOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "verify", "-o", "json", app)), &v); err != nil {
		t.Fatal(err)
	}
	d := notarize.Digest(v.Digest)

	// More than two pages of statements, each larger than what the owner's
	// lookups may read.
	const strangers = 2*ledgerclient.PageLimit + 10
	floodStatements(t, h.ledger.URL, d, strangers)

	// untrust and verify ask for alice's current statement only, in one
	// small answer each, whatever the stranger wrote.
	vars := map[string]string{EnvHome: h.home, EnvPassword: testPassword, EnvLedger: h.ledger.URL}
	for _, c := range []struct {
		args []string
		code int
	}{{[]string{"untrust", app}, 0}, {[]string{"verify", app}, 1}} {
		var lookups countingTransport
		if out, errOut, code := h.runWith(vars, func(e *env) { e.ledgerHTTP = &http.Client{Transport: &lookups} }, c.args...); code != c.code {
			t.Fatalf("%s after the flood: exit %d, want %d\n%s%s", c.args[0], code, c.code, out, errOut)
		}
		// verify also asks for the revocations of alice's key, by her key
		// only (keyrevoke.go): what the stranger wrote is not in it either.
		want := []string{api.PathDigests + string(d) + api.PathCurrentSuffix}
		if c.args[0] == "verify" {
			want = append(want, api.PathDigests+"sha256:"+v.KeyID)
		}
		// (untrust asks again, the same small question, until the
		// ledger's index covers the untrust: --index-wait.)
		slices.Sort(want)
		slices.Sort(lookups.paths)
		if !slices.Equal(slices.Compact(lookups.paths), want) || lookups.bytes > strangerStatementBytes {
			t.Fatalf("%s asked %v and read %d bytes; want %v, under %d bytes (one stranger's statement)", c.args[0], lookups.paths, lookups.bytes, want, strangerStatementBytes)
		}
	}

	// The owner's machine is two hours behind: sign must still supersede
	// the untrust, which it can only do if it finds it among the flood.
	h.mu.Lock()
	h.clock = h.clock.Add(-2 * time.Hour)
	h.mu.Unlock()
	_, errOut, code := h.run("sign", app)
	if code != 0 || !strings.Contains(errOut, "supersedes") {
		t.Fatalf("sign behind the clock after a flood: exit %d, stderr %q", code, errOut)
	}
	h.mustRun(0, "verify", app)

	var in inspectOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "inspect", "-o", "json", app)), &in); err != nil {
		t.Fatal(err)
	}
	if len(in.Statements) != 3 {
		t.Fatalf("inspect shows %d statements, want alice's 3", len(in.Statements))
	}
	for i, want := range []string{"TRUSTED", "UNTRUSTED", "TRUSTED"} {
		if s := in.Statements[i]; s.Status != want || s.LocalKey != "alice" {
			t.Fatalf("statement %d: %+v, want alice's %s", i, s, want)
		}
	}
	bob := h.mustRun(0, "inspect", "--signer", "testdata/keys/bob.pub", app)
	if !strings.Contains(bob, "no statements") {
		t.Fatalf("inspect of bob's statements: %q", bob)
	}

	var all inspectOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "inspect", "--all", "-o", "json", app)), &all); err != nil {
		t.Fatal(err)
	}
	if len(all.Statements) != strangers+3 || all.CheckpointSize < uint64(strangers+3) {
		t.Fatalf("inspect --all: %d statements, checkpoint size %d; want %d", len(all.Statements), all.CheckpointSize, strangers+3)
	}
	for i := 1; i < len(all.Statements); i++ {
		if all.Statements[i].LogIndex <= all.Statements[i-1].LogIndex {
			t.Fatalf("inspect --all out of log order at %d", i)
		}
	}
	text := h.mustRun(0, "inspect", "--all", app)
	if got := strings.Count(text, "\n"); got != strangers+3+3 || !strings.Contains(text, fmt.Sprintf("%d statement(s)", strangers+3)) {
		t.Fatalf("inspect --all text: %d lines, want a header, a title, %d rows and a summary:\n%s", got, strangers+3, text[:min(len(text), 2000)])
	}
}

// TestInspectUsage: --all and --signer do not mix; an empty key store needs
// one of them.
func TestInspectUsage(t *testing.T) {
	h := newHarness(t)
	app := h.reg.host + "/app:v1"
	if _, errOut, code := h.run("inspect", "--all", "--signer", "testdata/keys/bob.pub", app); code != ExitUsage || errOut == "" {
		t.Fatalf("--all with --signer: exit %d, %q", code, errOut)
	}
	if _, errOut, code := h.run("inspect", app); code != ExitUsage || !strings.Contains(errOut, "--all") {
		t.Fatalf("inspect without keys: exit %d, %q", code, errOut)
	}
	out := h.mustRun(0, "inspect", "--all", "-o", "json", app)
	var in inspectOutput
	if err := json.Unmarshal([]byte(out), &in); err != nil || len(in.Statements) != 0 || in.Digest == "" {
		t.Fatalf("inspect --all of an unsigned image: %q (%v)", out, err)
	}
	if out := h.mustRun(0, "inspect", "--all", app); !strings.Contains(out, "no statements") {
		t.Fatalf("inspect --all text of an unsigned image: %q", out)
	}
}

// countingTransport records the paths of the ledger API lookups it carries
// and the bytes of their answers.
type countingTransport struct {
	mu    sync.Mutex
	paths []string
	bytes int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !strings.HasPrefix(r.URL.Path, api.PathDigests) {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.paths = append(c.paths, r.URL.Path)
	c.bytes += int64(len(b))
	c.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}
