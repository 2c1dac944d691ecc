package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"
	"github.com/notarize/docker-notarize/internal/witnesstest"
)

const offPolicy = `signers:
  release: {keys: [release.pub]}
rules:
  - {match: "**", mode: off}
`

// TestServeWitnessPolicy runs the whole command with --witness-policy
// before a front that adds two of three witnesses' cosignatures: with
// fresh cosignatures it is healthy and serves its cosigned checkpoint at
// /notarize/v1/checkpoint; with a quorum two hours old (a frozen view)
// /healthz is 503 and says how old; a bad policy file stops it at start.
func TestServeWitnessPolicy(t *testing.T) {
	s := newStack(t, offPolicy)
	w1, w2, w3 := witnesstest.Three(t)
	policy := writeFile(t, filepath.Join(s.dir, "witnesses.policy"), string(witnesstest.Policy(2, w1, w2, w3)))

	fresh := witnesstest.NewFront(t, s.ledger.URL, w1, w3)
	base := s.start(t, s.args("--ledger", fresh.URL, "--witness-policy", policy, "--data", filepath.Join(s.dir, "fresh")))
	waitHealth(t, base, http.StatusOK, "ok")
	st, body := getBody(t, base+"/notarize/v1/checkpoint")
	if st != http.StatusOK || !strings.Contains(body, "— witness1.test ") || !strings.Contains(body, "— witness3.test ") {
		t.Fatalf("/notarize/v1/checkpoint: %d\n%s", st, body)
	}

	// A peer with the same view: compared, no fork, healthy.
	peer := s.start(t, s.args("--ledger", fresh.URL, "--witness-policy", policy, "--peer", base, "--data", filepath.Join(s.dir, "peer")))
	waitHealth(t, peer, http.StatusOK, "ok")

	old := witnesstest.NewFront(t, s.ledger.URL, w1, w2)
	old.SetClock(func() time.Time { return time.Now().Add(-2 * time.Hour) })
	base = s.start(t, s.args("--ledger", old.URL, "--witness-policy", policy, "--max-staleness", "1m", "--data", filepath.Join(s.dir, "old")))
	waitHealth(t, base, http.StatusServiceUnavailable, "cosigned 2h0m")

	bad := writeFile(t, filepath.Join(s.dir, "bad.policy"), "quorum none\n")
	var logs testutil.SyncBuffer
	if code := run(t.Context(), s.args("--witness-policy", bad), io.Discard, &logs); code != 1 || !strings.Contains(logs.String(), "requires no witness") {
		t.Fatalf("bad witness policy: exit %d\n%s", code, logs.String())
	}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHealth waits until /healthz answers want with a body containing has.
func waitHealth(t *testing.T, base string, want int, has string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, body := getBody(t, base+"/healthz")
		if st == want && strings.Contains(body, has) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %d %s; want %d with %q", st, body, want, has)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
