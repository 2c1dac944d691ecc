package ledger

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// Red team 22: the self-revocation check keeps a point read's "this key
// never wrote about its revocation digest" on an index the process alone
// writes (selfRevokedCache.never, index.selfDigest). These tests attack
// that kept answer; a statement admitted where the point read would have
// refused it fails with "BYPASS:".

// redteam22Engines runs f on a new POSIX directory of each index engine
// (both set storage.FollowTuning.SoleWriter, so both keep the answer).
func redteam22Engines(t *testing.T, f func(t *testing.T)) {
	for _, e := range []string{posix.EngineBbolt, posix.EnginePebble} {
		t.Run(e, func(t *testing.T) {
			t.Setenv(envTestEngine, e)
			f(t)
		})
	}
}

// redteam22Kept fails t unless the ledger keeps k's "never wrote" answer
// and would use it (the attacks below go through that path).
func redteam22Kept(t *testing.T, tl *testLedger, keyID string) {
	t.Helper()
	if !tl.store.tune.SoleWriter {
		t.Fatal("a POSIX index is not SoleWriter: the kept answer is not exercised")
	}
	if !tl.selfRevoked.neverWrote(keyID) || tl.store.selfDigest.may(keyID) {
		t.Fatalf("key %s: never %v, selfDigest %v: the kept answer is not in use", keyID,
			tl.selfRevoked.neverWrote(keyID), tl.store.selfDigest.may(keyID))
	}
}

// redteam22Refused wants err to be k's SelfRevokedError at rev.
func redteam22Refused(t *testing.T, what string, err error, keyID string, rev uint64) {
	t.Helper()
	var sre *SelfRevokedError
	if err == nil {
		t.Fatalf("BYPASS: %s: a statement by self-revoked key %s (revocation at %d, indexed) was admitted", what, keyID, rev)
	}
	if !errors.As(err, &sre) || sre.KeyID != keyID || sre.Index != rev {
		t.Fatalf("%s: %v, want a SelfRevokedError of %s at %d", what, err, keyID, rev)
	}
}

// TestRedteam22KeptAnswerEndsWithRevocation: a key admitted twice (its
// "never wrote" answer kept and used), then revoked through HTTP (the
// follower takes the row verified at submission; on bbolt) or through
// Submit (the follower parses and verifies the entry itself; on pebble),
// is refused at once through either API; and still is once its
// revocation's answer is evicted (selfRevokedCache.revoked emptied, as
// selfRevokedKeys other revoked keys would), which leaves the kept
// "never wrote" as the first answer consulted.
//
// Mutants checked: selfDigest.add removed from indexFollower.step, and
// "&& !selfDigest.may(keyID)" removed from selfRevokedAt: both fail here
// with BYPASS.
func TestRedteam22KeptAnswerEndsWithRevocation(t *testing.T) {
	redteam22Engines(t, func(t *testing.T) {
		tl := startLedger(t, Config{})
		now := time.Now().Add(-time.Hour)
		via := "http" // the revocation through HTTP on bbolt, through Submit on pebble
		if testNewEngine() == posix.EnginePebble {
			via = "submit"
		}
		{
			k := newTestSigner(t)
			tl.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated)
			redteam22Kept(t, tl, k.keyID)
			tl.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(time.Second)), http.StatusCreated) // the kept answer used
			redteam22Kept(t, tl, k.keyID)

			revocation := k.revoke(t, k.keyID, "stolen", now.Add(time.Minute))
			var rev uint64
			if via == "http" {
				rev = tl.submit(t, revocation, http.StatusCreated).Index
			} else {
				r, err := tl.Submit(t.Context(), revocation)
				if err != nil {
					t.Fatal(err)
				}
				rev = r.Index
			}
			for i := range 2 {
				if i == 1 { // the revocation's kept answer evicted
					tl.selfRevoked.mu.Lock()
					clear(tl.selfRevoked.revoked)
					tl.selfRevoked.mu.Unlock()
				}
				ts := now.Add(time.Duration(2+2*i) * time.Minute)
				status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, mustMarshal(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, ts)))
				if status == http.StatusCreated {
					t.Fatalf("BYPASS: revoked via %s, round %d: HTTP 201 for a statement by the self-revoked key %s", via, i, k.keyID)
				}
				if status != http.StatusForbidden || decodeError(t, b).Code != api.CodeKeyRevoked {
					t.Fatalf("revoked via %s, round %d: HTTP %d %s, want 403 %s", via, i, status, b, api.CodeKeyRevoked)
				}
				_, err := tl.Submit(t.Context(), k.sign(t, randomDigest(t), notarize.StatusTrusted, ts.Add(time.Second)))
				redteam22Refused(t, fmt.Sprintf("revoked via %s, round %d, Submit", via, i), err, k.keyID, rev)
			}
		}
	})
}

// TestRedteam22KeptAnswerRacesRevocation: keys whose answers are kept
// submit from several goroutines while their revocations are submitted;
// every statement whose submission began after its key's revocation got
// its receipt must be refused (statements in the window before are
// admitted, as before the kept answer). Run with -race: the follower's
// selfDigest.add and the check's reads race for real.
func TestRedteam22KeptAnswerRacesRevocation(t *testing.T) {
	const keys, streams, after = 3, 3, 2
	tl := startLedger(t, Config{})
	now := time.Now().Add(-time.Hour)
	var wg sync.WaitGroup
	var ts atomic.Int64
	for range keys {
		k := newTestSigner(t)
		tl.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated)
		redteam22Kept(t, tl, k.keyID)
		var revIndex atomic.Int64
		revIndex.Store(-1)
		var admitted atomic.Int32
		wg.Go(func() {
			for admitted.Load() < streams { // some statements admitted first: the kept answer is in use
				time.Sleep(5 * time.Millisecond)
			}
			r, err := tl.Submit(t.Context(), k.revoke(t, k.keyID, "stolen", now.Add(time.Minute)))
			if err != nil {
				t.Error(err)
				revIndex.Store(0)
				return
			}
			revIndex.Store(int64(r.Index))
		})
		for s := range streams {
			wg.Go(func() {
				refused := 0
				for n := 0; refused < after && n < 200; n++ {
					rev := revIndex.Load() // before the submission begins
					e := k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(time.Duration(ts.Add(1))*time.Second))
					_, err := tl.Submit(t.Context(), e)
					switch {
					case rev >= 0:
						if err == nil {
							t.Errorf("BYPASS: key %s stream %d: statement admitted after its revocation at %d got its receipt", k.keyID, s, rev)
							return
						}
						if !errors.Is(err, ErrSelfRevoked) {
							t.Errorf("key %s: %v, want ErrSelfRevoked", k.keyID, err)
							return
						}
						refused++
					case err == nil:
						admitted.Add(1)
					case !errors.Is(err, ErrSelfRevoked): // the window: refused or admitted
						t.Errorf("key %s before its revocation's receipt: %v", k.keyID, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
}

// TestRedteam22NeverBounded: the kept answers an anonymous writer can add
// (one per fresh key, even for a submission then rate limited: the check
// comes first) stay within selfRevokedKeys, and a full map is emptied, not
// grown. Mutant checked: the bound removed from setNeverWrote.
func TestRedteam22NeverBounded(t *testing.T) {
	var c selfRevokedCache
	for i := range selfRevokedKeys + 10 {
		c.setNeverWrote(fmt.Sprintf("%064x", i))
		if len(c.never) > selfRevokedKeys {
			t.Fatalf("%d kept answers, more than %d", len(c.never), selfRevokedKeys)
		}
	}
	if !c.neverWrote(fmt.Sprintf("%064x", selfRevokedKeys+9)) {
		t.Fatal("the answer kept last is gone")
	}
}

// redteam22ProbeIndex asks the ledger, right after each write of a row by
// a key about its own revocation digest commits and before the follower
// goes on (no receipt given yet), whether the key revoked itself.
type redteam22ProbeIndex struct {
	storage.Index
	l      atomic.Pointer[Ledger]
	mu     sync.Mutex
	probes []string // what each probe found, for a failure
	bad    []string
}

func (p *redteam22ProbeIndex) Write(ctx context.Context, next uint64, batch []storage.Row) (bool, error) {
	won, err := p.Index.Write(ctx, next, batch)
	l := p.l.Load()
	if err != nil || !won || l == nil {
		return won, err
	}
	for i, r := range batch {
		if r.KeyID == nil || !bytes.Equal(r.Digest, r.KeyID) {
			continue
		}
		keyID := hex.EncodeToString(r.KeyID)
		kept := l.selfRevoked.neverWrote(keyID)
		at, revoked, err := l.selfRevokedAt(ctx, keyID)
		p.mu.Lock()
		p.probes = append(p.probes, fmt.Sprintf("key %s row %d: kept %v, revoked %v at %d, err %v", keyID, next+uint64(i), kept, revoked, at, err))
		if err != nil || !revoked || at != next+uint64(i) {
			p.bad = append(p.bad, p.probes[len(p.probes)-1])
		}
		p.mu.Unlock()
	}
	return won, err
}

// TestRedteam22KeptAnswerNotUsedOnceRowWritten: the claim itself, checked
// at the worst moment: once the follower's write of a key's revocation
// commits, and before the index position moves (so before any receipt),
// the check of that key, whose "never wrote" answer is kept, finds the
// revocation, on both engines, whether the follower took the row verified
// at submission (HTTP) or verified the entry itself (Submit).
//
// Mutants checked: selfDigest.add moved after db.Write, or after
// f.s.advance (a receipt could then be given before the key is recorded):
// both fail here every time, where the receipt-based tests above pass.
func TestRedteam22KeptAnswerNotUsedOnceRowWritten(t *testing.T) {
	redteam22Engines(t, func(t *testing.T) {
		dir := t.TempDir()
		var idx *redteam22ProbeIndex
		tl := startLedgerAt(t, func(t testing.TB) Storage {
			st := posixAt(dir)(t)
			idx = &redteam22ProbeIndex{Index: st.Index()}
			return indexedStorage{Storage: st, idx: idx}
		}, Config{})
		idx.l.Store(tl.Ledger)
		now := time.Now().Add(-time.Hour)
		for _, via := range []string{"http", "submit"} {
			k := newTestSigner(t)
			tl.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated)
			redteam22Kept(t, tl, k.keyID)
			revocation := k.revoke(t, k.keyID, "stolen", now.Add(time.Minute))
			if via == "http" {
				tl.submit(t, revocation, http.StatusCreated)
			} else if _, err := tl.Submit(t.Context(), revocation); err != nil {
				t.Fatal(err)
			}
		}
		idx.mu.Lock()
		defer idx.mu.Unlock()
		if len(idx.probes) != 2 {
			t.Fatalf("%d probes, want 2: %q", len(idx.probes), idx.probes)
		}
		if len(idx.bad) > 0 {
			t.Fatalf("BYPASS: the kept answer outlived the write of the key's revocation: %q", idx.bad)
		}
	})
}
