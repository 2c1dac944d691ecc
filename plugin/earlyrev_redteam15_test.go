package plugin

// Red team 15: the early revocation lookups (issue 14) are answered while
// the registry resolves the image, and their anchored answer was taken
// later, when the statement lookup had answered, without asking whether
// its map root was still recent. A front that answered them with a root
// from before a revocation (inside --max-index-lag when it answered) kept
// that root counting for as long as the registry took, past the moment
// `key revoke` said every default verify sees the revocation. Now
// PendingRevocations.Current asks the revocations again when their root is
// no longer recent at the verdict.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
)

// rt15Lookup GETs the ledger's JSON answer for d by keyID (current or the
// paginated lookup).
func rt15Lookup(t *testing.T, ledgerURL string, d notarize.Digest, keyIDs []string, current bool) api.LookupResponse {
	t.Helper()
	p := api.PathDigests + string(d)
	if current {
		p += api.PathCurrentSuffix
	}
	q := url.Values{api.QueryKeyID: keyIDs}
	var lr api.LookupResponse
	if err := json.Unmarshal(rt9Get(t, ledgerURL+p+"?"+q.Encode()), &lr); err != nil {
		t.Fatal(err)
	}
	return lr
}

// rt15WaitCovered waits until the ledger's answer for d by keyID has a
// map root whose covered size is beyond index, and returns it.
func rt15WaitCovered(t *testing.T, h *harness, d notarize.Digest, keyIDs []string, current bool, index uint64) api.LookupResponse {
	t.Helper()
	v, err := note.NewVerifier(h.ledger.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		lr := rt15Lookup(t, h.ledger.URL, d, keyIDs, current)
		if lr.Map != nil && lr.Map.RootIndex != nil {
			mr, err := notarize.ParseMapRoot(lr.Map.RootEntry, v)
			if err != nil {
				t.Fatal(err)
			}
			if mr.Size > index {
				return lr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no map root covering entry %d", index)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedteam15EarlyRevocationOutlivesKeyRevoke: alice's key is stolen.
// A CI job starts `verify --signer alice --revoker bob app:v1` while alice
// runs `key revoke --revoker bob alice` and the
// thief trusts the image (backdated). verify's early revocation lookup goes
// to a front that answers with the genuine map root from just before the
// revocation, re-proven under the ledger's newest checkpoint: recent, so
// anchored. The registry (or the network path to it) is slow. `key revoke`
// waits out its index wait and exits 0 ("indexed": every default verify sees
// it). Only then does the registry answer; the statement lookup goes
// through untouched (same checkpoint, so no re-ask) and verify prints
// TRUSTED on the thief's statement, with the revocation lookup's root far
// older than --max-index-lag. A verify started at that moment through the
// same front is refused (exit 4): the window is the early start's.
func TestRedteam15EarlyRevocationOutlivesKeyRevoke(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
		c.AdmitSelfRevoked = false // as in production
	})}, "alice", "bob")
	h.indexHold = defaultIndexHold // key revoke waits as it does for users
	asked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var armed atomic.Bool
	h.reg = newTestRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if armed.Load() && strings.Contains(r.URL.Path, "/manifests/") {
				once.Do(func() { close(asked) })
				<-release
			}
			next.ServeHTTP(w, r)
		})
	})
	var relOnce sync.Once
	releaseAll := func() { relOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // before the registry's Close, which waits for held handlers
	imgD, err := h.reg.image.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d := notarize.Digest(imgD.String())
	app := h.reg.host + "/app:v1"
	kid := newHarnessKeyID(t, "alice")
	by := []string{kid, newHarnessKeyID(t, "bob")} // alice's revocation digest is asked by alice and her revoker bob
	slices.Sort(by)
	revD, err := notarize.KeyRevocationDigest(kid)
	if err != nil {
		t.Fatal(err)
	}
	thief := newThief(t, h, "alice")

	// Alice's earlier, legitimate work: the ledger commits root R0 over it.
	first := thief.state(notarize.DigestOf([]byte("rt15 earlier release")), notarize.StatusTrusted, notarize.KindFile, time.Now())
	before := rt15WaitCovered(t, h, revD, by, false, first)
	if len(before.Entries) != 0 {
		t.Fatalf("revocation lookup before the revocation: %+v", before)
	}

	// Alice revokes her key (the command waits for the index), and the
	// thief trusts the image right after the revocation is logged.
	type result struct {
		out, errOut string
		code        int
		at          time.Time
	}
	revoked := make(chan result, 1)
	go func() {
		out, errOut, code := h.run("key", "revoke", "--yes", "-o", "json", "--revoker", "bob", "alice")
		revoked <- result{out, errOut, code, time.Now()}
	}()
	var rv uint64
	for deadline := time.Now().Add(10 * time.Second); ; {
		if lr := rt15Lookup(t, h.ledger.URL, revD, by, false); len(lr.Entries) == 1 {
			rv = lr.Entries[0].Index
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revocation was not logged")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stolen := thief.state(d, notarize.StatusTrusted, notarize.KindImage, time.Now().Add(-24*time.Hour))
	if stolen <= rv {
		t.Fatalf("thief's statement %d before the revocation %d", stolen, rv)
	}
	rt15WaitCovered(t, h, d, []string{kid}, true, stolen) // the log stops growing

	// The front: the revocation lookup is answered with R0's map proof
	// (genuine, in the log), re-proven under the newest checkpoint, no
	// entries; everything else passes through.
	var revAnswered atomic.Int32
	revSeen := make(chan struct{}, 16)
	front := rt9Replay(t, h.ledger.URL, string(revD), before.Map, nil, func(r *http.Request) bool {
		if r.URL.Path == api.PathDigests+string(revD) {
			revAnswered.Add(1)
			revSeen <- struct{}{}
			return true
		}
		return false
	})

	armed.Store(true)
	done := make(chan result, 1)
	started := time.Now()
	go func() {
		out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL},
			"verify", "-o", "json", "--ledger-key", h.ledger.VerifierKey, "--signer", "alice", "--revoker", "bob", app)
		done <- result{out, errOut, code, time.Now()}
	}()
	<-asked
	select {
	case <-revSeen:
	case <-time.After(10 * time.Second):
		t.Fatal("no early revocation lookup")
	}
	rk := <-revoked
	if rk.code != 0 || !strings.Contains(rk.out, `"indexed": true`) {
		t.Fatalf("key revoke: exit %d\n%s\n%s", rk.code, rk.out, rk.errOut)
	}
	time.Sleep(2 * time.Second) // the registry is slow: the verdict comes well after key revoke's promise
	releaseAll()
	r := <-done
	t.Logf("verify started %v before key revoke returned; verdict %v after it; revocation lookups answered: %d",
		rk.at.Sub(started).Round(time.Millisecond), r.at.Sub(rk.at).Round(time.Millisecond), revAnswered.Load())
	t.Logf("verify output:\n%s%s", r.out, r.errOut)

	// Control: a verify started now, through the same front, is refused.
	armed.Store(false)
	out2, errOut2, code2 := h.runWithEnv(map[string]string{EnvLedger: front.URL},
		"verify", "--ledger-key", h.ledger.VerifierKey, "--signer", "alice", "--revoker", "bob", app)
	t.Logf("control verify started after key revoke returned: exit %d\n%s%s", code2, out2, errOut2)

	if r.code == 0 {
		t.Fatalf("BYPASS: verify exited 0 TRUSTED on the thief's statement (log index %d, after the revocation at %d) %v after `key revoke` returned \"indexed\": true",
			stolen, rv, r.at.Sub(rk.at).Round(time.Millisecond))
	}
}
