package ledgertest_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

func newSigner(t *testing.T) (signature.SignerVerifier, crypto.PublicKey) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return sv, priv.Public()
}

func entry(t *testing.T, sv signature.SignerVerifier) []byte {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	st := notarize.NewStatement(notarize.DigestOf(b), "x", notarize.Predicate{Status: notarize.StatusTrusted, Timestamp: time.Now().UTC()})
	e, err := notarize.Sign(t.Context(), sv, st)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func submit(t *testing.T, url string, body []byte) (int, api.Receipt) {
	t.Helper()
	resp, err := http.Post(url+api.PathEntries, api.MediaTypeJSON, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var rec api.Receipt
	if resp.StatusCode < 300 {
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, rec
}

func checkpointOf(t *testing.T, s *ledgertest.Server, raw string) *log.Checkpoint {
	t.Helper()
	v, err := note.NewVerifier(s.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, _, err := log.ParseCheckpoint([]byte(raw), s.Origin, v)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestStartRestart(t *testing.T) {
	sv, _ := newSigner(t)
	s := ledgertest.Start(t)
	if s.URL == "" || s.Origin == "" || s.VerifierKey == "" || s.SignerKey == "" || s.Dir == "" {
		t.Fatalf("incomplete server: %+v", s)
	}
	body := entry(t, sv)
	status, rec := submit(t, s.URL, body)
	if status != http.StatusCreated {
		t.Fatalf("submit: %d", status)
	}
	checkpointOf(t, s, rec.Checkpoint)

	url, vkey := s.URL, s.VerifierKey
	s.Restart(t)
	if s.URL != url || s.VerifierKey != vkey {
		t.Fatalf("restart changed URL or key: %s %s", s.URL, s.VerifierKey)
	}
	status, again := submit(t, s.URL, body)
	if status != http.StatusOK || !again.Duplicate || again.Index != rec.Index {
		t.Fatalf("after restart: %d %+v", status, again)
	}
	s.Stop()
	s.Stop() // idempotent
	if _, err := http.Get(s.URL + api.PathInfo); err == nil {
		t.Fatal("server still answering after Stop")
	}
}

// TestFork starts two ledgers with one identity and different histories:
// both checkpoints verify under the same key, with different roots.
func TestFork(t *testing.T) {
	sv, _ := newSigner(t)
	a := ledgertest.Start(t)
	b := ledgertest.Start(t, ledgertest.WithSignerKey(a.SignerKey), ledgertest.WithOrigin(a.Origin))
	if b.VerifierKey != a.VerifierKey || b.Origin != a.Origin {
		t.Fatalf("fork has another identity: %s %s", b.Origin, b.VerifierKey)
	}
	_, ra := submit(t, a.URL, entry(t, sv))
	_, rb := submit(t, b.URL, entry(t, sv))
	ca, cb := checkpointOf(t, a, ra.Checkpoint), checkpointOf(t, a, rb.Checkpoint)
	if ca.Size != cb.Size || bytes.Equal(ca.Hash, cb.Hash) {
		t.Fatalf("want same size, different roots: %d %x / %d %x", ca.Size, ca.Hash, cb.Size, cb.Hash)
	}
}

func TestOptions(t *testing.T) {
	sv, pub := newSigner(t)
	other, _ := newSigner(t)
	dir := t.TempDir()
	s := ledgertest.Start(t, ledgertest.WithSigners(pub), ledgertest.WithDir(dir), ledgertest.WithOrigin("test.example/log"))
	if s.Dir != dir || s.Origin != "test.example/log" {
		t.Fatalf("dir %q origin %q", s.Dir, s.Origin)
	}
	if status, _ := submit(t, s.URL, entry(t, sv)); status != http.StatusCreated {
		t.Fatalf("enrolled signer: %d", status)
	}
	if status, _ := submit(t, s.URL, entry(t, other)); status != http.StatusForbidden {
		t.Fatalf("unenrolled signer: %d, want 403", status)
	}
}
