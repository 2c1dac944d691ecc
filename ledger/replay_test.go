package ledger

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// A statement is logged once: a replay in any accepted form — here the
// same payload signed again, which gives another ECDSA signature — is
// answered with the existing entry and never appended.

// resign returns n entries of one statement, each with its own signature.
func (s *testSigner) resign(t testing.TB, st *notarize.Statement, n int) []*notarize.Entry {
	t.Helper()
	out := make([]*notarize.Entry, n)
	for i := range out {
		e, err := notarize.Sign(context.Background(), s.sv, st)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e
	}
	for i := 1; i < n; i++ {
		if bytes.Equal(mustMarshal(t, out[0]), mustMarshal(t, out[i])) {
			t.Fatal("two signatures of one statement are the same bytes; the test needs randomized signatures")
		}
	}
	return out
}

func statementAbout(d notarize.Digest) *notarize.Statement {
	return notarize.NewStatement(d, "registry.example/app:1", notarize.Predicate{
		Status: notarize.StatusTrusted, Kind: notarize.KindImage, Timestamp: time.Now().UTC().Truncate(time.Second),
	})
}

func TestResignedReplayIsDuplicate(t *testing.T) {
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	d := randomDigest(t)
	entries := s.resign(t, statementAbout(d), 2)
	first := tl.submit(t, entries[0], http.StatusCreated)
	again := tl.submit(t, entries[1], http.StatusOK)
	if !again.Duplicate || again.Index != first.Index {
		t.Fatalf("re-signed replay: index %d duplicate %v, want a duplicate of %d", again.Index, again.Duplicate, first.Index)
	}
	// The receipt carries the entry as logged, proven.
	tl.checkReceipt(t, again, mustMarshal(t, entries[0]))
	if got := tl.walk(t, d, nil); len(got) != 1 {
		t.Fatalf("%d entries about the digest, want 1", len(got))
	}
	// Still so after a restart (the index is rebuilt from nothing but disk).
	tl.restart(t)
	if rec := tl.submit(t, entries[1], http.StatusOK); !rec.Duplicate || rec.Index != first.Index {
		t.Fatalf("replay after restart: %+v", rec)
	}
}

func TestConcurrentReplaysAppendOnce(t *testing.T) {
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	for round := range 3 {
		d := randomDigest(t)
		entries := s.resign(t, statementAbout(d), 8)
		var wg sync.WaitGroup
		recs := make([]api.Receipt, len(entries))
		statuses := make([]int, len(entries))
		start := make(chan struct{})
		for i, e := range entries {
			body := mustMarshal(t, e)
			wg.Go(func() {
				<-start
				var err error
				statuses[i], recs[i], err = post(t.Context(), http.DefaultClient, tl.url, body)
				if err != nil {
					t.Errorf("submit %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		created := 0
		for i := range recs {
			if statuses[i] == http.StatusCreated {
				created++
			} else if !recs[i].Duplicate {
				t.Errorf("round %d submission %d: status %d, not a duplicate", round, i, statuses[i])
			}
			if recs[i].Index != recs[0].Index {
				t.Errorf("round %d: receipts name indices %d and %d", round, recs[0].Index, recs[i].Index)
			}
		}
		if created != 1 {
			t.Errorf("round %d: %d submissions created an entry, want 1", round, created)
		}
		if got := tl.walk(t, d, nil); len(got) != 1 {
			t.Fatalf("round %d: %d entries about the digest, want 1", round, len(got))
		}
	}
}
