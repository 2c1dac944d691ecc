package plugin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/client"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// Red team 9: attacks on the anchored lookups and untrust's --index-wait.

// rt9Get GETs upstream+path and returns the body of a 200 answer.
func rt9Get(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return b
}

// rt9ReplayFront is a front before the ledger at upstream that answers the
// current lookup of digest d by building, for the ledger's newest
// checkpoint, an answer from what it saw before the untrust: the map proof
// old (against the root that was the newest then, a genuine log entry) and
// the trust entry, both with inclusion proofs recomputed from the ledger's
// public tiles under that checkpoint (no rollback: the checkpoint is the
// newest). Every other request passes through.
func rt9ReplayFront(t *testing.T, upstream, d string, old *api.MapProof, trust api.LookupEntry) *httptest.Server {
	t.Helper()
	u, err := url.Parse(upstream + "/")
	if err != nil {
		t.Fatal(err)
	}
	tiles, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathDigests+d+api.PathCurrentSuffix {
			rp.ServeHTTP(w, r)
			return
		}
		cp, err := tiles.ReadCheckpoint(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		lines := strings.SplitN(string(cp), "\n", 3)
		n, err := strconv.ParseUint(lines[1], 10, 64)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		pb, err := client.NewProofBuilder(r.Context(), n, tiles.ReadTile)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		tp, err1 := pb.InclusionProof(r.Context(), trust.Index)
		rootp, err2 := pb.InclusionProof(r.Context(), *old.RootIndex)
		if err1 != nil || err2 != nil {
			http.Error(w, "proofs", http.StatusBadGateway)
			return
		}
		m := *old
		m.RootInclusionProof, m.Tail = rootp, nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&api.LookupResponse{
			Digest: d, Checkpoint: string(cp), Map: &m,
			Entries: []api.LookupEntry{{Index: trust.Index, Entry: trust.Entry, InclusionProof: tp}},
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// rt9SignedBefore signs app with alice on h, waits for a map root covering
// the trust, and returns the statement and the ledger's current answer then.
func rt9SignedBefore(t *testing.T, h *harness, app string) (signOutput, api.LookupResponse) {
	t.Helper()
	var s signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "sign", "-o", "json", app)), &s); err != nil {
		t.Fatal(err)
	}
	st := s.Statements[0]
	deadline := time.Now().Add(20 * time.Second)
	for {
		var before api.LookupResponse
		b := rt9Get(t, h.ledger.URL+api.PathDigests+st.Digest+api.PathCurrentSuffix+"?"+api.QueryKeyID+"="+st.KeyID)
		if err := json.Unmarshal(b, &before); err == nil && before.Map != nil && before.Map.RootIndex != nil && len(before.Entries) == 1 {
			return st, before
		}
		if time.Now().After(deadline) {
			t.Fatal("no map root covering the trust")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedteam9VerifyReplayedRootPastLag: a front answering verify with the
// map root before the untrust (genuine, re-proven under the newest
// checkpoint) makes verify exit 4 once that root is older than
// --max-index-lag, and always with --max-index-lag 0: the replay works only
// inside the documented window.
func TestRedteam9VerifyReplayedRootPastLag(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	app := h.reg.host + "/app:v1"
	st, before := rt9SignedBefore(t, h, app)
	h.mustRun(0, "untrust", app)
	front := rt9ReplayFront(t, h.ledger.URL, st.Digest, before.Map, before.Entries[0])
	if out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--max-index-lag", "0", app); code != ExitCouldNotVerify {
		t.Fatalf("BYPASS? verify --max-index-lag 0 through the replaying front: exit %d, want %d\n%s%s", code, ExitCouldNotVerify, out, errOut)
	}
	time.Sleep(2500 * time.Millisecond) // the replayed root (dated to the second) is now over 1 s old
	if out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--max-index-lag", "1s", app); code != ExitCouldNotVerify {
		t.Fatalf("BYPASS? verify --max-index-lag 1s through a front replaying a root older than that: exit %d, want %d\n%s%s", code, ExitCouldNotVerify, out, errOut)
	}
}
