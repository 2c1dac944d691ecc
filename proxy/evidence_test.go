package proxy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// wrongRootTrust is a trust source whose replica found a wrong map root.
type wrongRootTrust struct {
	noTrust
	ev *replica.WrongMapRootError
}

func (w wrongRootTrust) Status() replica.Status {
	return replica.Status{MapRootsChecked: 3, WrongMapRoot: w.ev}
}

// TestEvidenceEndpoint: the evidence of a wrong map root the replica found
// is served at /notarize/v1/evidence (entry, checkpoint, both roots) and
// counted in /metrics; without any, the list is empty and the gauge 0.
func TestEvidenceEndpoint(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, err := notarize.ParsePolicy([]byte("signers: {r: {keys: [k]}}\nrules: [{match: '**', require: [r]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	pe, err := p.Evaluator(map[string][]crypto.PublicKey{"r": {priv.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(trust TrustSource, path string) string {
		s, err := New(Config{DataDir: t.TempDir(), Policy: pe, Trust: trust})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://proxy.test"+path, nil))
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		return w.Body.String()
	}
	ev := &replica.WrongMapRootError{Index: 9, Size: 7, Entry: []byte("docker-notarize map root v1\n…"), Checkpoint: []byte("cp"), Want: [32]byte{1}, Got: [32]byte{2}}
	var got Evidence
	if err := json.Unmarshal([]byte(get(wrongRootTrust{ev: ev}, "/notarize/v1/evidence")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.WrongMapRoots) != 1 || got.WrongMapRoots[0].Index != 9 || got.WrongMapRoots[0].Entry != string(ev.Entry) ||
		got.WrongMapRoots[0].Claimed[0] != 2 || got.WrongMapRoots[0].Recomputed[0] != 1 || got.WrongMapRoots[0].Checkpoint != "cp" {
		t.Fatalf("evidence %+v", got)
	}
	if m := get(wrongRootTrust{ev: ev}, "/metrics"); !strings.Contains(m, "notarize_proxy_replica_wrong_map_roots 1") || !strings.Contains(m, "notarize_proxy_replica_map_roots_checked_total 3") {
		t.Fatalf("metrics do not count the wrong root")
	}
	if body := get(noTrust{}, "/notarize/v1/evidence"); !strings.Contains(body, `"wrongMapRoots":[]`) {
		t.Fatalf("no evidence: %s", body)
	}
	if m := get(noTrust{}, "/metrics"); !strings.Contains(m, "notarize_proxy_replica_wrong_map_roots 0") {
		t.Fatal("metrics without a wrong root")
	}
}
