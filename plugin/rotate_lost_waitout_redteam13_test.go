package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam13RotateWaitOutFromEarliestFailure: key rotate looks for each
// lost re-statement for lostReceiptWait (5 s) only and then, once for all,
// waits out lookBound (--index-wait, 30 s) from the EARLIEST unknown
// failure (waitOut). A rotation whose lost revocations span more than
// --index-wait minus verify's --max-index-lag returns without covering the
// last one. Here seven of NEW's re-stated UNTRUSTED (bob had TRUSTED each
// digest before alice untrusted it) are forwarded by a front (the ledger
// logs them) and answered 502, and the look is answered with the front's
// own answer from just before each submission (proven, so inconclusive):
// the failures run from t≈0 to t≈31 s; rotate returns about 5 s
// after the last submission, and a default verify --signer bob of the last
// digest, through a front replaying the root before its re-statement,
// exits 0 (the policy switched to NEW, as rotate's help says).
//
// Fails with "BYPASS: ..." while waitOut counts from the earliest failure.
// Fix: wait out the bound from the LATEST unknown failure (or give each
// re-stated revocation its own lookBound look).
func TestRedteam13RotateWaitOutFromEarliestFailure(t *testing.T) {
	t.Parallel()
	const n = 7
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice", "bob")
	kb := newHarnessKeyID(t, "bob")
	dir := t.TempDir()
	paths := map[notarize.Digest]string{}
	for i := range n {
		b := fmt.Appendf(nil, "rotate waitout asset %d", i)
		p := "file:" + filepath.Join(dir, fmt.Sprintf("asset%d.bin", i))
		if err := os.WriteFile(strings.TrimPrefix(p, "file:"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		h.mustRun(0, "sign", "--key", "bob", p)
		h.mustRun(0, "sign", "--key", "alice", p)
		h.mustRun(0, "untrust", "--key", "alice", p) // later than bob's trust: rotate re-states it
		paths[notarize.DigestOf(b)] = p
	}
	for d := range paths {
		rt10CoveredTrust(t, h.ledger.URL, string(d), kb) // roots cover bob's trusts
	}
	// Other statements keep the ledger committing fresh roots, as on a
	// ledger in use.
	th := newThief(t, h, "bob") // not OLD: rotate lists OLD's digests only
	stop, busy := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(busy)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			e, err := notarize.Sign(t.Context(), th.signer, notarize.NewStatement(notarize.DigestOf(fmt.Appendf(nil, "busy %d", i)), "x",
				notarize.Predicate{Status: notarize.StatusTrusted, Kind: notarize.KindFile, Name: "bob", Timestamp: time.Now().UTC()}))
			if err == nil {
				_, _ = th.client.Submit(t.Context(), e)
			}
		}
	}()
	defer func() { close(stop); <-busy }()

	type kept struct {
		body  []byte
		ctype string
		resp  api.LookupResponse
	}
	var mu sync.Mutex
	before := map[string]kept{} // digest -> the ledger's current answer by bob just before the submission
	var order []string
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == api.PathEntries:
			body, _ := io.ReadAll(r.Body)
			e, err := notarize.ParseEntry(body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			v, err := e.Verify()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			d := string(v.Statement.Digest())
			// The ledger's answer now, as the look asks for it (its tail
			// inline) and as JSON (for verify's replaying front).
			fetch := func(q url.Values, accept string) *httptest.ResponseRecorder {
				get := httptest.NewRequest(http.MethodGet, api.PathDigests+d+api.PathCurrentSuffix+"?"+q.Encode(), nil)
				get.Header.Set("Accept", accept)
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, get)
				return rec
			}
			rec := fetch(url.Values{api.QueryKeyID: {v.KeyID}, api.QueryTail: {api.TailInline}}, api.MediaTypeTailAnswer+", "+api.MediaTypeJSON)
			var lr api.LookupResponse
			_ = json.Unmarshal(fetch(url.Values{api.QueryKeyID: {v.KeyID}}, api.MediaTypeJSON).Body.Bytes(), &lr)
			mu.Lock()
			if _, resent := before[d]; !resent { // a repeat (the command sends once more) keeps the first answer
				before[d] = kept{body: bytes.Clone(rec.Body.Bytes()), ctype: rec.Header().Get("Content-Type"), resp: lr}
				order = append(order, d)
			}
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(httptest.NewRecorder(), r) // the ledger logs it
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) && r.URL.Query().Get(api.QueryKeyID) == kb && len(r.URL.Query()[api.QueryKeyID]) == 1:
			d := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, api.PathDigests), api.PathCurrentSuffix)
			mu.Lock()
			k, ok := before[d]
			mu.Unlock()
			if ok { // the look: the answer from before the submission
				w.Header().Set("Content-Type", k.ctype)
				_, _ = w.Write(k.body)
				return
			}
		}
		next.ServeHTTP(w, r)
	})

	h.indexHold = defaultIndexHold // as in production
	start := time.Now()
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "key", "rotate", "--jobs", "1", "-o", "json", "alice", "bob")
	returned := time.Now()
	o := decodeRotate(t, out)
	t.Logf("rotate: exit %d after %v", code, returned.Sub(start).Round(time.Millisecond))
	mu.Lock()
	last := order[len(order)-1]
	k := before[last]
	mu.Unlock()
	if code == 0 || o.Failed != n || len(order) != n {
		t.Fatalf("rotate through the front: exit %d, %d failed, %d submissions; want non-zero, %d and %d:\n%s%s", code, o.Failed, len(order), n, n, out, errOut)
	}
	if k.resp.Map == nil || k.resp.Map.RootIndex == nil || len(k.resp.Entries) != 1 {
		t.Skipf("no map root covering bob's trust of %s before its re-statement: %+v", last, k.resp)
	}
	after := rt9WaitRoot(t, h.ledger.URL, last, kb)
	if after.Entries[0].Index <= k.resp.Entries[0].Index {
		t.Fatalf("the ledger did not log bob's re-stated untrust of %s", last)
	}
	vfront := rt9ReplayFront(t, h.ledger.URL, last, k.resp.Map, k.resp.Entries[0])
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: vfront.URL}, "verify", "--signer", "bob", paths[notarize.Digest(last)])
	if vcode == 0 {
		t.Fatalf("BYPASS: key rotate took %v; its %d re-stated revocations were logged behind 502s and not found by the look (answered from before each submission); it waited out --index-wait from the first failure only and returned; %v later a default verify --signer bob of the last one (log index %d), through a front replaying the root before it, exits 0:\n%s%s",
			returned.Sub(start).Round(time.Millisecond), n, time.Since(returned).Round(time.Millisecond), after.Entries[0].Index, vout, verr)
	}
	t.Logf("verify --signer bob through the replaying front %v after rotate returned: exit %d\n%s%s", time.Since(returned).Round(time.Millisecond), vcode, vout, verr)
	if vcode != ExitCouldNotVerify {
		t.Fatalf("verify through the replaying front: exit %d, want %d\n%s%s", vcode, ExitCouldNotVerify, vout, verr)
	}
}
