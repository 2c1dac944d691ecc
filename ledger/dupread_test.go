package ledger

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
)

// identityReads is an index that counts its IndexOf reads by statement
// identity; with notSole it reports that another process may write it
// (storage.FollowTuning.SoleWriter false), as MySQL's does.
type identityReads struct {
	storage.Index
	notSole bool

	mu    sync.Mutex
	reads map[[32]byte]int
}

func (r *identityReads) IndexOf(ctx context.Context, id []byte) (uint64, bool, error) {
	r.mu.Lock()
	r.reads[[32]byte(id)]++
	r.mu.Unlock()
	return r.Index.IndexOf(ctx, id)
}

func (r *identityReads) Tuning() storage.FollowTuning {
	tune := r.Index.Tuning()
	if r.notSole {
		tune.SoleWriter = false
	}
	return tune
}

func (r *identityReads) of(id [32]byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads[id]
}

// TestDuplicateCheckReadsOncePerSubmission: a new statement's identity is
// read from the index once on an index the process alone writes (Submit's
// look-up answers for the append's antispam decorator too: index.Decorator),
// and twice on one another process may write (the decorator reads again
// after the claim, where another instance may have appended it). A
// replay, with another signature, is one read that finds it, answered as
// a duplicate at the first one's index, on both.
//
// Mutants checked: the decorator skipping its read whatever the index's
// writers (notSole reads once), and never skipping it (sole reads twice).
func TestDuplicateCheckReadsOncePerSubmission(t *testing.T) {
	for _, c := range []struct {
		name    string
		notSole bool
		want    int
	}{{"sole writer", false, 1}, {"shared index", true, 2}} {
		t.Run(c.name, func(t *testing.T) {
			var rec *identityReads
			dir := t.TempDir()
			tl := startLedgerAt(t, func(t testing.TB) Storage {
				st := posixAt(dir)(t)
				rec = &identityReads{Index: st.Index(), notSole: c.notSole, reads: map[[32]byte]int{}}
				return indexedStorage{Storage: st, idx: rec}
			}, Config{})
			if tl.store.tune.SoleWriter == c.notSole {
				t.Fatalf("SoleWriter %v, want %v", tl.store.tune.SoleWriter, !c.notSole)
			}
			s := newTestSigner(t)
			now := time.Now().Add(-time.Hour).Truncate(time.Second)
			const n = 12
			var entries []*notarize.Entry
			var ids [][32]byte
			var digests []notarize.Digest
			for range n {
				d := randomDigest(t)
				e := s.signAt(t, d, notarize.StatusTrusted, now)
				digests = append(digests, d)
				v, err := e.Verify()
				if err != nil {
					t.Fatal(err)
				}
				entries, ids = append(entries, e), append(ids, v.Identity())
			}
			first := submitAll(t, tl.url, entries)
			for i, id := range ids {
				if first[i].Duplicate {
					t.Fatalf("statement %d: a new statement answered as a duplicate", i)
				}
				if got := rec.of(id); got != c.want {
					t.Errorf("statement %d: identity read %d times, want %d", i, got, c.want)
				}
			}
			for i, d := range digests {
				replay := s.signAt(t, d, notarize.StatusTrusted, now) // the same statement, a new signature
				rr := tl.submit(t, replay, http.StatusOK)
				if !rr.Duplicate || rr.Index != first[i].Index {
					t.Fatalf("replay %d: duplicate %v at %d, want a duplicate at %d", i, rr.Duplicate, rr.Index, first[i].Index)
				}
				if got := rec.of(ids[i]); got != c.want+1 {
					t.Errorf("replay %d: identity read %d times in all, want %d", i, got, c.want+1)
				}
			}
		})
	}
}
