package plugin

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// TestRedteam10RecursiveUntrustHoldCoversEveryStatement: untrust
// --recursive records one statement per manifest and waits once, on the
// one with the largest log index. Once it returns, a front that replays,
// for the FIRST statement's digest (not the one waited on), the map root
// from before the untrusts (genuine, re-proven under the newest checkpoint)
// must not get a default verify of that manifest to exit 0: the hold is
// measured after the last receipt, so it covers every root that misses any
// of them. Fails if the wait covered only the last statement's digest by a
// root, or started before the last receipt.
func TestRedteam10RecursiveUntrustHoldCoversEveryStatement(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	multi := h.reg.host + "/multi:v1"
	var s signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "sign", "--recursive", "-o", "json", multi)), &s); err != nil || len(s.Statements) < 3 {
		t.Fatalf("sign --recursive: %v %+v", err, s)
	}
	first := s.Statements[1] // a manifest of the index, not the last one recorded
	before := rt10CoveredTrust(t, h.ledger.URL, first.Digest, first.KeyID)
	h.indexHold = defaultIndexHold // as in production
	var u signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "untrust", "--recursive", "-o", "json", multi)), &u); err != nil || len(u.Statements) != len(s.Statements) {
		t.Fatalf("untrust --recursive: %v %+v", err, u)
	}
	if u.Indexed == nil || !*u.Indexed {
		t.Fatalf("untrust --recursive did not report indexed: %+v", u)
	}
	var untrustFirst, last uint64
	for _, st := range u.Statements {
		if st.Digest == first.Digest {
			untrustFirst = st.LogIndex
		}
		last = max(last, st.LogIndex)
	}
	if untrustFirst >= last {
		t.Fatalf("the replayed digest's untrust (%d) is the last one recorded (%d): the test needs another", untrustFirst, last)
	}
	returned := time.Now()
	front := rt9ReplayFront(t, h.ledger.URL, first.Digest, before.Map, before.Entries[0])
	child := h.reg.host + "/multi@" + first.Digest
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", child)
	if code == 0 {
		t.Fatalf("BYPASS: untrust --recursive returned \"indexed\": true; %v later a default verify of a manifest whose untrust (log index %d) was not the last one (%d), through a front replaying the root before it, exits 0:\n%s%s",
			time.Since(returned).Round(time.Millisecond), untrustFirst, last, out, errOut)
	}
	if code != ExitCouldNotVerify {
		t.Fatalf("verify %s through the replaying front: exit %d, want %d\n%s%s", child, code, ExitCouldNotVerify, out, errOut)
	}
}

// rt10CoveredTrust waits until the ledger's current lookup of keyID's
// statement about digest carries a map root and exactly one entry (the
// trust a test just signed, covered by a root) and returns that answer: the
// state a replaying front later shows.
func rt10CoveredTrust(t *testing.T, ledgerURL, digest, keyID string) api.LookupResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var before api.LookupResponse
		b := rt9Get(t, ledgerURL+api.PathDigests+digest+api.PathCurrentSuffix+"?"+api.QueryKeyID+"="+keyID)
		if err := json.Unmarshal(b, &before); err == nil && before.Map != nil && before.Map.RootIndex != nil && len(before.Entries) == 1 {
			return before
		}
		if time.Now().After(deadline) {
			t.Fatal("no map root covering the trust")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
