package ledger

import (
	"crypto"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestStrangersEarnNoKeyTables: keys that are not enrolled, whose every
// submission is refused (403 NOT_ENROLLED), earn no table of their key's
// multiples (notarize.KeyCache), so they cannot take every place from the
// enrolled signers (review: VerifyWith counted a signature before the
// ledger's own checks, and 64 strangers took all 64 places).
func TestStrangersEarnNoKeyTables(t *testing.T) {
	enrolled := newTestSigner(t)
	tl := startLedger(t, Config{Signers: []crypto.PublicKey{enrolled.pub}})
	for range 64 {
		stranger := newTestSigner(t)
		body := mustMarshal(t, stranger.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
		for range 16 { // one signed entry, replayed
			status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, body)
			if er := decodeError(t, b); status != http.StatusForbidden || er.Code != api.CodeNotEnrolled {
				t.Fatalf("got %d %+v, want 403 NOT_ENROLLED", status, er)
			}
		}
	}
	if got := tl.store.keys.Tables(); got != 0 {
		t.Fatalf("64 strangers' refused submissions built %d tables", got)
	}
	entry := enrolled.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
	tl.submit(t, entry, http.StatusCreated)
	for range 20 { // replays are not new entries
		tl.submit(t, entry, http.StatusOK)
	}
	if got := tl.store.keys.Tables(); got != 0 {
		t.Fatalf("one entry replayed 20 times built %d tables", got)
	}
	for range 20 {
		tl.submit(t, enrolled.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	}
	if got := tl.store.keys.Tables(); got != 1 {
		t.Fatalf("the enrolled signer's 20 entries: %d tables, want 1", got)
	}
}

// TestConcurrentReplaysEarnNoKeyTable: one new entry posted 32 times at
// once is appended once, and counts once towards its key's table: the
// submissions that joined the first, and the replays after it, count for
// nothing.
func TestConcurrentReplaysEarnNoKeyTable(t *testing.T) {
	tl := startLedger(t, Config{})
	k := newTestSigner(t)
	for range 4 {
		body := mustMarshal(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				if status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, body); status != http.StatusCreated && status != http.StatusOK {
					t.Errorf("got %d %s", status, b)
				}
			})
		}
		wg.Wait()
	}
	if got := tl.store.keys.Tables(); got != 0 {
		t.Fatalf("4 entries, each posted 32 times at once: %d tables, want 0", got)
	}
}

// TestKeyTableAfterSixteenEntries: a key's table comes with its 16th new
// entry, whether submitted over HTTP or through Submit (review: entries
// submitted through Submit counted twice, once when admitted and once when
// the index follower checked them again, and the table came at the 8th).
func TestKeyTableAfterSixteenEntries(t *testing.T) {
	for _, via := range []string{"HTTP", "Submit"} {
		t.Run(via, func(t *testing.T) {
			tl := startLedger(t, Config{})
			k := newTestSigner(t)
			submit := func() {
				e := k.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
				if via == "HTTP" {
					tl.submit(t, e, http.StatusCreated)
				} else if _, err := tl.Submit(t.Context(), e); err != nil {
					t.Fatal(err)
				}
			}
			for range 15 {
				submit()
			}
			if got := tl.store.keys.Tables(); got != 0 {
				t.Fatalf("15 entries: %d tables, want 0", got)
			}
			submit()
			if got := tl.store.keys.Tables(); got != 1 {
				t.Fatalf("16 entries: %d tables, want 1", got)
			}
		})
	}
}

// TestStrangersTakeNoKeyCachePlaces: submissions refused on their way to
// the log (a stranger's, not enrolled or with no enrolled identity; a
// fresh key under a signature it did not make), each with a fresh key,
// more of them than the key cache holds, leave the signer's key and its
// table in the cache (red team: each refused key was parsed into the cache
// before the enrolment check, and 1,024 of them pushed every signer's key,
// table included, out of it).
func TestStrangersTakeNoKeyCachePlaces(t *testing.T) {
	signer := newTestSigner(t)
	for _, c := range []struct {
		name    string
		cfg     Config
		refused error
	}{
		{"enrolled signers", Config{Signers: []crypto.PublicKey{signer.pub}}, ErrNotEnrolled},
		{"identities alone", Config{Identities: map[string]notarize.Identity{signer.keyID: {Name: "test signer"}}}, ErrNotEnrolled},
	} {
		t.Run(c.name, func(t *testing.T) {
			tl := startLedger(t, c.cfg)
			for range 16 {
				tl.submit(t, signer.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
			}
			if n, tables := tl.store.keys.Len(), tl.store.keys.Tables(); n != 1 || tables != 1 {
				t.Fatalf("after the signer's 16 entries: %d keys, %d tables; want 1, 1", n, tables)
			}
			for i := range notarize.DefaultKeyCacheSize + 64 {
				e := newTestSigner(t).sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
				switch i % 64 {
				case 0: // over HTTP
					status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, mustMarshal(t, e))
					if status != http.StatusForbidden {
						t.Fatalf("stranger over HTTP: %d %s, want 403", status, b)
					}
				case 1: // the signer's signature under a fresh key
					e.Envelope.Signatures[0].Sig = signer.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()).Envelope.Signatures[0].Sig
					if _, err := tl.Submit(t.Context(), e); !errors.Is(err, notarize.ErrBadSignature) {
						t.Fatalf("forged: %v, want ErrBadSignature", err)
					}
				default:
					if _, err := tl.Submit(t.Context(), e); !errors.Is(err, c.refused) {
						t.Fatalf("stranger: %v, want %v", err, c.refused)
					}
				}
			}
			if n, tables := tl.store.keys.Len(), tl.store.keys.Tables(); n != 1 || tables != 1 {
				t.Fatalf("after %d refused submissions with fresh keys: %d keys, %d tables; want the signer's 1, 1",
					notarize.DefaultKeyCacheSize+64, n, tables)
			}
			tl.submit(t, signer.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
		})
	}
}

// TestRateLimitedKeysTakeNoKeyCachePlaces: on a ledger open to any key,
// a submission refused by the keys' rate limit leaves no key in the cache;
// only the keys of statements logged are held (review: the key was
// remembered once the ledger's own checks passed, before the rate limit).
func TestRateLimitedKeysTakeNoKeyCachePlaces(t *testing.T) {
	tl := startLedger(t, Config{RateLimits: RateLimits{KeyPerSecond: 1e-6, KeyBurst: 1, Tracked: 1}})
	logged, limited := 0, 0
	for range 100 {
		_, err := tl.Submit(t.Context(), newTestSigner(t).sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
		switch {
		case err == nil:
			logged++
		case errors.Is(err, ErrRateLimited):
			limited++
		default:
			t.Fatal(err)
		}
	}
	if limited == 0 {
		t.Fatalf("no submission was rate limited (%d logged): the test tests nothing", logged)
	}
	if n := tl.store.keys.Len(); n != logged {
		t.Fatalf("%d statements logged, %d rate limited: %d keys held, want %d", logged, limited, n, logged)
	}
}

// TestKeyTablesConfigured: the ledger's key cache keeps as many tables as
// Config.KeyTables says, DefaultKeyTables when it is zero; signers past
// the bound are admitted as before, without one.
func TestKeyTablesConfigured(t *testing.T) {
	if got := startLedger(t, Config{}).store.keys.TablesBound(); got != DefaultKeyTables {
		t.Fatalf("a default ledger's key cache holds %d tables, want %d", got, DefaultKeyTables)
	}
	tl := startLedger(t, Config{KeyTables: 2})
	var bodies [][]byte
	for range 3 {
		k := newTestSigner(t)
		for range 17 {
			bodies = append(bodies, mustMarshal(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
		}
	}
	var wg sync.WaitGroup
	for _, body := range bodies { // at once: a receipt waits for a checkpoint
		wg.Go(func() {
			if status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, body); status != http.StatusCreated {
				t.Errorf("got %d %s, want 201", status, b)
			}
		})
	}
	wg.Wait()
	if got := tl.store.keys.Tables(); got != 2 {
		t.Fatalf("3 signers of 17 entries each, KeyTables 2: %d tables", got)
	}
}
