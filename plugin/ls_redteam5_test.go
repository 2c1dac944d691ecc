package plugin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// redteam5Front is a front before the harness's ledger that records every
// GET answer while recording, and afterwards replays the recorded answers
// to the lookups of one digest (a stale cache, or a front choosing to
// answer one question from an older, honest checkpoint): everything else
// passes through, fresh.
type redteam5Front struct {
	ledger string
	stale  string // the hex whose lookups are answered from the record

	mu        sync.Mutex
	recording bool
	record    map[string][]byte
	replayed  int
}

type redteam5Recorder struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (r *redteam5Recorder) WriteHeader(s int) { r.status = s; r.ResponseWriter.WriteHeader(s) }
func (r *redteam5Recorder) Write(b []byte) (int, error) {
	r.buf.Write(b)
	return r.ResponseWriter.Write(b)
}

func (f *redteam5Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	recording := f.recording
	b, ok := f.record[r.URL.RequestURI()]
	if !recording && ok && strings.HasPrefix(r.URL.Path, api.PathDigests) && strings.Contains(r.URL.Path, f.stale) {
		f.replayed++
		f.mu.Unlock()
		w.Header().Set("Content-Type", api.MediaTypeJSON)
		_, _ = w.Write(b)
		return
	}
	f.mu.Unlock()
	u, _ := url.Parse(f.ledger)
	rec := &redteam5Recorder{ResponseWriter: w, status: http.StatusOK}
	httputil.NewSingleHostReverseProxy(u).ServeHTTP(rec, r)
	if recording && r.Method == http.MethodGet && rec.status == http.StatusOK {
		f.mu.Lock()
		f.record[r.URL.RequestURI()] = bytes.Clone(rec.buf.Bytes())
		f.mu.Unlock()
	}
}

// redteam5TeamHome is a teammate's home: alice's public key only, its own
// ledger state (pinned key, stored checkpoint).
func redteam5TeamHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "keys", "alice.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "keys", "alice.pub"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

// TestRedteam5LsStaleRevocationLookup: a teammate ran `ls --signer alice`
// before alice revoked her stolen key. Then alice revoked it and the thief
// trusted a new file with it. The teammate runs ls again through a front
// that answers the revocation lookup from the record of the first run (an
// honest answer under the older checkpoint, which the teammate's client
// stored: no rollback) and everything else fresh. verify defends against
// this mix (CurrentWithRevocations asks again when the revocations were
// proven in a smaller log than the statements); ls must too: the thief's
// file must not be counted as alice's trusted asset in a listing "checked
// against" a checkpoint that holds the revocation. Failing closed (exit 4)
// is fine; counting it is a BYPASS.
func TestRedteam5LsStaleRevocationLookup(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	approved, _ := writeFile(t, "approved", "approved before the theft")
	h.mustRun(0, "sign", "--key", "alice", approved)
	aliceID := newHarnessKeyID(t, "alice")
	revD, err := notarize.KeyRevocationDigest(aliceID)
	if err != nil {
		t.Fatal(err)
	}
	front := &redteam5Front{ledger: h.ledger.URL, stale: revD.Hex(), recording: true, record: map[string][]byte{}}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	team := redteam5TeamHome(t)
	viaFront := map[string]string{EnvHome: team, EnvLedger: srv.URL}
	ls := func(env map[string]string) (lsOutput, int, string) {
		t.Helper()
		out, errOut, code := h.runWithEnv(env, "ls", "--signer", "alice", "-o", "json")
		if code != 0 {
			return lsOutput{}, code, errOut
		}
		return decodeLs(t, out), code, errOut
	}
	if o, code, errOut := ls(viaFront); code != 0 || len(o.Signers) != 1 || o.Signers[0].Trusted != 1 {
		t.Fatalf("the first ls: exit %d %+v\n%s", code, o, errOut)
	}

	front.mu.Lock()
	front.recording = false
	front.mu.Unlock()
	h.mustRun(0, "key", "revoke", "--yes", "alice") // alice's own home, straight to the ledger
	th := newThief(t, h, "alice")
	_, stolenD := writeFile(t, "stolen", "trusted by the thief after the revocation")
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Now())

	// Control: a teammate without the stale front sees the revocation.
	honest, code, errOut := ls(map[string]string{EnvHome: redteam5TeamHome(t)})
	if code != 0 || len(honest.Signers) != 1 || honest.Signers[0].Trusted != 1 {
		t.Fatalf("honest ls after the revocation: exit %d %+v\n%s", code, honest, errOut)
	}

	o, code, errOut := ls(viaFront)
	front.mu.Lock()
	replayed := front.replayed
	front.mu.Unlock()
	if replayed == 0 {
		t.Fatal("the front replayed no stale revocation lookup: the test proves nothing")
	}
	if code != 0 {
		t.Logf("ls through the stale front failed closed: exit %d: %s", code, errOut)
		return
	}
	for _, st := range o.Signers[0].Statements {
		if st.Digest == string(stolenD) && st.KeyRevokedAt == nil {
			t.Errorf("BYPASS: ls counts the thief's TRUSTED statement (entry %d) as alice's, in a listing checked against checkpoint %d, which holds alice's revocation: the revocation lookup was answered from an older checkpoint (%d replayed answers) and ls never compares the sizes", st.LogIndex, o.CheckpointSize, replayed)
		}
	}
	if o.Signers[0].Trusted != honest.Signers[0].Trusted {
		t.Errorf("BYPASS: ls through the stale front counts %d trusted assets for alice, the honest listing %d", o.Signers[0].Trusted, honest.Signers[0].Trusted)
	}
}
