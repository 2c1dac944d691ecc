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

// rt9Replay is a front before the ledger at upstream that answers the
// requests match selects (lookups of digest d) with what the ledger said
// earlier: the map proof old (against the root that was the newest then, a
// genuine log entry) and entries, every inclusion proof rebuilt from the
// ledger's public tiles under its newest checkpoint (no rollback: the
// checkpoint is the newest). Every other request passes through.
func rt9Replay(t *testing.T, upstream, d string, old *api.MapProof, entries []api.LookupEntry, match func(*http.Request) bool) *httptest.Server {
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
		if !match(r) {
			rp.ServeHTTP(w, r)
			return
		}
		cp, err := tiles.ReadCheckpoint(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		n, err := strconv.ParseUint(strings.SplitN(string(cp), "\n", 3)[1], 10, 64)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		pb, err := client.NewProofBuilder(r.Context(), n, tiles.ReadTile)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		m := *old
		if m.RootInclusionProof, err = pb.InclusionProof(r.Context(), *old.RootIndex); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		m.Tail = nil
		out := []api.LookupEntry{}
		for _, e := range entries {
			if e.InclusionProof, err = pb.InclusionProof(r.Context(), e.Index); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			out = append(out, e)
		}
		w.Header().Set("Content-Type", api.MediaTypeJSON)
		_ = json.NewEncoder(w).Encode(&api.LookupResponse{Digest: d, Checkpoint: string(cp), Map: &m, Entries: out})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// rt9ReplayFront answers every current lookup of d with the map proof old
// and the trust entry (rt9Replay).
func rt9ReplayFront(t *testing.T, upstream, d string, old *api.MapProof, trust api.LookupEntry) *httptest.Server {
	t.Helper()
	return rt9Replay(t, upstream, d, old, []api.LookupEntry{trust}, func(r *http.Request) bool {
		return r.URL.Path == api.PathDigests+d+api.PathCurrentSuffix
	})
}

// rt9WaitRoot waits until the ledger's current answer about d by keyID
// has a map root and one statement, and returns it.
func rt9WaitRoot(t *testing.T, ledgerURL, d, keyID string) api.LookupResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var lr api.LookupResponse
		b := rt9Get(t, ledgerURL+api.PathDigests+d+api.PathCurrentSuffix+"?"+api.QueryKeyID+"="+keyID)
		if err := json.Unmarshal(b, &lr); err == nil && lr.Map != nil && lr.Map.RootIndex != nil && len(lr.Entries) == 1 {
			return lr
		}
		if time.Now().After(deadline) {
			t.Fatal("no map root covering the statement")
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	return st, rt9WaitRoot(t, h.ledger.URL, st.Digest, st.KeyID)
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
