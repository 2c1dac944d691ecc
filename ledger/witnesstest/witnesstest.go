// Package witnesstest gives tests real C2SP tlog-witness servers: the
// transparency-dev/witness omniwitness binary, installed by the project's
// scripts/witness.sh into ${NOTARIZE_CACHE:-~/.cache/notarize}/bin (or
// found on PATH), each witness with its own key, its own SQLite database
// and an additional-logs file naming the one log it cosigns, on a free
// loopback port. Witnesses make no outbound calls: the log pushes its
// checkpoints to them (POST /add-checkpoint).
//
//	ws := witnesstest.StartN(t, 3, origin, ledgerVKey) // skips loudly without omniwitness
//	policy := witnesstest.Policy(2, ws...)               // a 2-of-3 witness policy file
//	ws[0].Stop(t); ws[0].Start(t)                        // a restart keeps key and database
package witnesstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	f_note "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/internal/testutil"
)

// exitUnavailable is scripts/witness.sh's exit code for "omniwitness
// cannot be installed here".
const exitUnavailable = 77

// ErrUnavailable is returned (wrapped) by Binary when omniwitness is not
// installed and cannot be; tests skip, loudly, on it.
var ErrUnavailable = errors.New("omniwitness is not available on this machine")

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the omniwitness binary, installing it with
// scripts/witness.sh (once per process) when it is neither in the cache
// directory nor on PATH.
func Binary() (string, error) {
	binOnce.Do(func() { binPath, binErr = findBinary() })
	return binPath, binErr
}

func findBinary() (string, error) {
	cache := os.Getenv("NOTARIZE_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err == nil {
			cache = filepath.Join(home, ".cache", "notarize")
		}
	}
	if cache != "" {
		p := filepath.Join(cache, "bin", "omniwitness")
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath("omniwitness"); err == nil {
		return p, nil
	}
	script, err := testutil.Script("witness.sh")
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out, err := exec.Command(script, "install").Output()
	if exit, ok := errors.AsType[*exec.ExitError](err); ok && exit.ExitCode() == exitUnavailable {
		return "", fmt.Errorf("%w: %s", ErrUnavailable, exit.Stderr)
	}
	if err != nil {
		return "", fmt.Errorf("%s install: %w", script, err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "omniwitness"), nil
}

// RequireBinary returns the omniwitness binary or skips t loudly.
func RequireBinary(t testing.TB) string {
	t.Helper()
	p, err := Binary()
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("\n%s\n## SKIPPED: %v\n## install it with scripts/witness.sh install\n%s",
			strings.Repeat("#", 78), err, strings.Repeat("#", 78))
	}
	if err != nil {
		t.Fatalf("omniwitness: %v", err)
	}
	return p
}

// Witness is one omniwitness process for one log.
type Witness struct {
	// Name is the witness's name in policy files (and its key's name).
	Name string
	// VKey is its C2SP tlog-cosignature verifier key (signature type 0x04).
	VKey string
	// URL is its base URL, "http://127.0.0.1:PORT"; it survives restarts.
	URL string

	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartN starts n witnesses of the log origin whose checkpoints verify
// under logVKey (a signed-note verifier key); t.Cleanup stops them.
func StartN(t testing.TB, n int, origin, logVKey string) []*Witness {
	t.Helper()
	ws := make([]*Witness, n)
	for i := range ws {
		ws[i] = New(t, fmt.Sprintf("w%d", i+1), origin, logVKey)
		ws[i].Start(t)
	}
	return ws
}

// New prepares a witness named name (its key, its additional-logs file and
// its database directory) without starting it; t.Cleanup stops it.
func New(t testing.TB, name, origin, logVKey string) *Witness {
	t.Helper()
	bin := RequireBinary(t)
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, "localhost/witness-"+name)
	if err != nil {
		t.Fatal(err)
	}
	cvkey, err := f_note.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	logs := fmt.Sprintf("Logs:\n  - Origin: %q\n    URL: \"http://127.0.0.1/\"\n    PublicKey: %q\n", origin, logVKey)
	for f, b := range map[string]string{"witness.key": skey, "logs.yaml": logs} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w := &Witness{Name: name, VKey: cvkey, URL: "http://" + addr, bin: bin, dir: dir, addr: addr}
	t.Cleanup(func() { w.Stop(t) })
	return w
}

// Start starts the witness process (again) and waits until it listens.
func (w *Witness) Start(t testing.TB) {
	t.Helper()
	if w.cmd != nil {
		t.Fatalf("witness %s already running", w.Name)
	}
	logf, err := os.OpenFile(filepath.Join(w.dir, "witness.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(w.bin, "--listen", w.addr, "--metrics_listen", "",
		"--private_key_path", filepath.Join(w.dir, "witness.key"),
		"--db_file", filepath.Join(w.dir, "witness.db"),
		"--additional_logs", filepath.Join(w.dir, "logs.yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start witness %s: %v", w.Name, err)
	}
	w.cmd, w.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(w.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", w.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-w.done:
			t.Fatalf("witness %s exited on start:\n%s", w.Name, w.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("witness %s does not listen on %s:\n%s", w.Name, w.addr, w.Log())
		}
	}
}

// Stop stops the witness process (SIGKILL: no goodbye), keeping its key and
// database for a restart. Stopping a stopped witness does nothing.
func (w *Witness) Stop(t testing.TB) {
	t.Helper()
	if w.cmd == nil {
		return
	}
	_ = w.cmd.Process.Kill()
	<-w.done
	w.cmd = nil
}

// Log returns what the witness process wrote so far.
func (w *Witness) Log() string {
	b, _ := os.ReadFile(filepath.Join(w.dir, "witness.log"))
	return string(b)
}

// PolicyLine is the witness's line in a witness policy file.
func (w *Witness) PolicyLine() string {
	return fmt.Sprintf("witness %s %s %s", w.Name, w.VKey, w.URL)
}

// Policy returns a witness policy file (Tessera's NewWitnessGroupFromPolicy
// format) requiring k of the witnesses ws.
func Policy(k int, ws ...*Witness) []byte {
	var b bytes.Buffer
	names := make([]string, len(ws))
	for i, w := range ws {
		fmt.Fprintln(&b, w.PolicyLine())
		names[i] = w.Name
	}
	fmt.Fprintf(&b, "group quorum-group %d %s\nquorum quorum-group\n", k, strings.Join(names, " "))
	return b.Bytes()
}

// Cosigners returns the names of the witnesses of ws whose valid C2SP
// tlog-cosignature the note carries, and the newest cosignature's time.
func Cosigners(noteText []byte, ws ...*Witness) ([]string, time.Time, error) {
	var names []string
	var newest time.Time
	for _, w := range ws {
		v, err := f_note.NewVerifierForCosignatureV1(w.VKey)
		if err != nil {
			return nil, time.Time{}, err
		}
		n, err := note.Open(noteText, note.VerifierList(v))
		if err != nil {
			continue // not signed by w
		}
		for _, s := range n.Sigs {
			ts, err := f_note.CoSigV1Timestamp(s)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("witness %s: %w", w.Name, err)
			}
			if ts.After(newest) {
				newest = ts
			}
		}
		names = append(names, w.Name)
	}
	return names, newest, nil
}

// AddCheckpoint sends one C2SP tlog-witness add-checkpoint request, as a
// log does: cp (a signed checkpoint), the size the log believes the
// witness holds, and a consistency proof from it. It returns the
// witness's status and body (a cosignature line on 200, its size on 409).
func (w *Witness) AddCheckpoint(ctx context.Context, oldSize uint64, proof [][]byte, cp []byte) (int, []byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", oldSize)
	for _, h := range proof {
		fmt.Fprintln(&b, base64.StdEncoding.EncodeToString(h))
	}
	b.WriteString("\n")
	b.Write(cp)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL+"/add-checkpoint", &b)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("add-checkpoint to %s: %w", w.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, body, err
}
