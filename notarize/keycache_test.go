package notarize_test

import (
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// verifyLoggedWith parses b and verifies it as a logged entry with keys.
func verifyLoggedWith(b []byte, keys *notarize.KeyCache) (*notarize.Verified, error) {
	e, err := notarize.ParseEntry(b)
	if err != nil {
		return nil, err
	}
	return e.VerifyLoggedWith(keys)
}

// TestKeyCacheStillChecksEverySignature: once a key is cached, an entry
// carrying the same PEM text but a signature it did not make (another
// key's, another statement's, a flipped bit) is refused just as without
// the cache: the cache saves the key's parse, never the check.
func TestKeyCacheStillChecksEverySignature(t *testing.T) {
	victim, thief := notarizetest.NewSigner(t), notarizetest.NewSigner(t)
	honest := notarizetest.Entry(t, victim, digestA, notarize.StatusTrusted, t0)
	other := notarizetest.Entry(t, victim, digestB, notarize.StatusTrusted, t0)
	forged := notarizetest.Entry(t, thief, digestB, notarize.StatusTrusted, t0)

	keys := notarize.NewKeyCache(0)
	if _, err := verifyLoggedWith(marshal(t, honest), keys); err != nil {
		t.Fatal(err)
	}
	if keys.Len() != 1 {
		t.Fatalf("cache holds %d keys after one entry, want 1", keys.Len())
	}
	sig := func(e *notarize.Entry) []byte {
		b, err := base64.StdEncoding.DecodeString(e.Envelope.Signatures[0].Sig)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withSig := func(e *notarize.Entry, s []byte) *notarize.Entry {
		m := *e
		m.Envelope.Signatures = append(m.Envelope.Signatures[:0:0], e.Envelope.Signatures...)
		m.Envelope.Signatures[0].Sig = base64.StdEncoding.EncodeToString(s)
		return &m
	}
	flipped := sig(honest)
	flipped[len(flipped)-1] ^= 1
	thiefUnderVictim := *forged
	thiefUnderVictim.PublicKey = honest.PublicKey
	thiefUnderVictim.Envelope.Signatures = append(forged.Envelope.Signatures[:0:0], forged.Envelope.Signatures...)
	thiefUnderVictim.Envelope.Signatures[0].KeyID = honest.Envelope.Signatures[0].KeyID

	highS := func(e *notarize.Entry) *notarize.Entry { // the other S form: as valid, for a logged entry
		r, s := parseSig(t, sig(e))
		return withSig(e, derSig(r, new(big.Int).Sub(elliptic.P256().Params().N, s)))
	}
	// First with the key cached, then once it has signed enough entries
	// to have a table of its multiples (verified with the table, not
	// crypto/ecdsa): both refuse alike, and as without the cache.
	for _, phase := range []string{"cached", "with its table"} {
		if phase != "cached" {
			for range 16 {
				if _, err := verifyLoggedWith(marshal(t, honest), keys); err != nil {
					t.Fatal(err)
				}
			}
			if keys.Tables() != 1 {
				t.Fatalf("a key with 16 more logged entries has no table (%d tables)", keys.Tables())
			}
		}
		for name, e := range map[string]*notarize.Entry{
			"another key's signature under the cached key":      &thiefUnderVictim,
			"the cached key's signature with a bit flipped":     withSig(honest, flipped),
			"the cached key's signature of the other statement": withSig(honest, sig(other)),
		} {
			t.Run(phase+"/"+name, func(t *testing.T) {
				b := marshal(t, e)
				_, cold := verifyLoggedWith(b, nil)
				_, warm := verifyLoggedWith(b, keys)
				if warm == nil || !errors.Is(warm, notarize.ErrBadSignature) {
					t.Fatalf("with the key cached: %v, want ErrBadSignature", warm)
				}
				if cold == nil || cold.Error() != warm.Error() {
					t.Fatalf("refused differently with and without the cache:\n%v\n%v", cold, warm)
				}
			})
		}
		for name, e := range map[string]*notarize.Entry{"honest": honest, "the other S form": highS(honest), "the other statement": other} {
			if _, err := verifyLoggedWith(marshal(t, e), keys); err != nil {
				t.Fatalf("%s, %s: %v", phase, name, err)
			}
		}
	}
	// The keyid must still name the cached key.
	e := *honest
	e.Envelope.Signatures = append(honest.Envelope.Signatures[:0:0], honest.Envelope.Signatures...)
	e.Envelope.Signatures[0].KeyID = forged.Envelope.Signatures[0].KeyID
	if _, err := verifyLoggedWith(marshal(t, &e), keys); !errors.Is(err, notarize.ErrBadSignature) {
		t.Fatalf("keyid of another key under a cached key: %v, want ErrBadSignature", err)
	}
}

// TestKeyCacheKeepsTheOneEncoding: the cache is keyed by the exact PEM
// text, so each re-encoding of an entry whose key is cached (the PEM
// re-wrapped, text around it, a high-S signature for Verify, …) is refused
// exactly as without the cache.
func TestKeyCacheKeepsTheOneEncoding(t *testing.T) {
	honest := notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0)
	keys := notarize.NewKeyCache(0)
	if _, err := verifyLoggedWith(marshal(t, honest), keys); err != nil {
		t.Fatal(err)
	}
	for _, re := range notarizetest.ReEncodings(t, honest) {
		t.Run(re.Name, func(t *testing.T) {
			for _, submitted := range []bool{true, false} {
				check := func(keys *notarize.KeyCache) error {
					e, err := notarize.ParseEntry(re.Body)
					if err != nil {
						return err
					}
					if submitted {
						_, err = e.VerifyWith(keys)
					} else {
						_, err = e.VerifyLoggedWith(keys)
					}
					return err
				}
				cold, warm := check(nil), check(keys)
				if fmt.Sprint(cold) != fmt.Sprint(warm) {
					t.Fatalf("submitted=%v: without the cache %v, with it %v", submitted, cold, warm)
				}
				if submitted && warm == nil {
					t.Fatalf("re-encoding accepted at submission with the key cached")
				}
			}
		})
	}
}

// TestKeyCacheBounded: the cache holds at most its size, dropping the
// least recently used key, and verifies entries of a dropped key again.
func TestKeyCacheBounded(t *testing.T) {
	keys := notarize.NewKeyCache(2)
	var entries [][]byte
	for range 3 {
		entries = append(entries, marshal(t, notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0)))
	}
	for _, b := range append(entries, entries...) {
		if _, err := verifyLoggedWith(b, keys); err != nil {
			t.Fatal(err)
		}
		if keys.Len() > 2 {
			t.Fatalf("cache of size 2 holds %d keys", keys.Len())
		}
	}
}

// TestKeyCacheRemembersOnlyAcceptedKeys: a key enters the cache only with
// an entry accepted: a logged entry that verified, or a submission its
// caller admitted (Remember). Entries refused (a bad signature, a stranger
// a ledger's enrolment turns away, never Remembered) each carrying a fresh
// key, as many as the cache holds, leave the keys it holds in place
// (red team: they were parsed into the cache before any check, and pushed
// every signer's key out).
func TestKeyCacheRemembersOnlyAcceptedKeys(t *testing.T) {
	const size = 8
	keys := notarize.NewKeyCache(size)
	signer := notarizetest.NewSigner(t)
	first := notarizetest.Entry(t, signer, digestA, notarize.StatusTrusted, t0)
	e, err := notarize.ParseEntry(marshal(t, first))
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.VerifyWith(keys)
	if err != nil {
		t.Fatal(err)
	}
	if keys.Len() != 0 {
		t.Fatalf("a submission's check remembered its key before its caller admitted it (%d keys)", keys.Len())
	}
	other := notarize.NewKeyCache(size)
	other.Remember(v) // verified with another cache: not this one's to hold
	if other.Len() != 0 {
		t.Fatalf("a cache remembered a key another cache parsed (%d keys)", other.Len())
	}
	(*notarize.KeyCache)(nil).Remember(v)
	keys.Remember(nil)
	if keys.Len() != 0 {
		t.Fatalf("%d keys", keys.Len())
	}
	keys.Remember(v)
	if keys.Len() != 1 {
		t.Fatalf("an admitted submission's key: %d keys held, want 1", keys.Len())
	}

	for i := range 3 * size {
		stranger := notarizetest.Entry(t, notarizetest.NewSigner(t), digestB, notarize.StatusTrusted, t0)
		if i%2 == 0 { // refused by the caller: verified, never remembered
			e, err := notarize.ParseEntry(marshal(t, stranger))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.VerifyWith(keys); err != nil {
				t.Fatal(err)
			}
			continue
		}
		forged := *stranger // a fresh key whose signature does not verify
		forged.Envelope.Signatures = append(stranger.Envelope.Signatures[:0:0], stranger.Envelope.Signatures...)
		forged.Envelope.Signatures[0].Sig = first.Envelope.Signatures[0].Sig
		for _, submitted := range []bool{true, false} {
			e, err := notarize.ParseEntry(marshal(t, &forged))
			if err != nil {
				t.Fatal(err)
			}
			if submitted {
				_, err = e.VerifyWith(keys)
			} else {
				_, err = e.VerifyLoggedWith(keys)
			}
			if !errors.Is(err, notarize.ErrBadSignature) {
				t.Fatalf("forged signature: %v, want ErrBadSignature", err)
			}
		}
	}
	if keys.Len() != 1 {
		t.Fatalf("%d refused entries with fresh keys: %d keys held, want the admitted one only", 3*size, keys.Len())
	}
	// The admitted key is held: a later entry of it needs no Remember.
	e, err = notarize.ParseEntry(marshal(t, notarizetest.Entry(t, signer, digestB, notarize.StatusTrusted, t0)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.VerifyWith(keys); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyLoggedWith(marshal(t, first), keys); err != nil {
		t.Fatal(err)
	}
	if keys.Len() != 1 {
		t.Fatalf("%d keys held, want 1", keys.Len())
	}
}

// TestKeyCacheTablesBounded: at most 64 keys of a cache hold a table, a
// key dropped from the cache gives its place back, and keys past the bound
// are verified as before.
func TestKeyCacheTablesBounded(t *testing.T) {
	keys := notarize.NewKeyCache(66)
	var entries [][]byte
	for range 66 {
		entries = append(entries, marshal(t, notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0)))
	}
	for _, b := range entries {
		verifyTimes(t, keys, b, 17)
	}
	if got := keys.Tables(); got != 64 {
		t.Fatalf("66 keys that signed 17 entries each: %d tables, want 64", got)
	}
	// A 67th key pushes out the least recently used, which held a table.
	b := marshal(t, notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0))
	if _, err := verifyLoggedWith(b, keys); err != nil {
		t.Fatal(err)
	}
	if got := keys.Tables(); got != 63 {
		t.Fatalf("a key with a table was dropped: %d tables, want 63", got)
	}
	verifyTimes(t, keys, b, 16)
	if got := keys.Tables(); got != 64 {
		t.Fatalf("after a key with a table was dropped and another used 17 times: %d tables, want 64", got)
	}
}

// TestKeyCacheTablesBoundSet: a cache made with NewKeyCacheTables holds
// as many tables as its bound, above DefaultKeyCacheTables or below it, never
// more than it holds keys, and verifies the keys past the bound as before.
func TestKeyCacheTablesBoundSet(t *testing.T) {
	var entries [][]byte
	for range notarize.DefaultKeyCacheTables + 8 {
		entries = append(entries, marshal(t, notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0)))
	}
	for _, c := range []struct{ size, tables, want int }{
		{size: 200, tables: notarize.DefaultKeyCacheTables + 4, want: notarize.DefaultKeyCacheTables + 4},
		{size: 200, tables: 3, want: 3},
		{size: 5, tables: 64, want: 5}, // the bound is at most the keys held
		{size: 200, tables: 0, want: notarize.DefaultKeyCacheTables},
	} {
		keys := notarize.NewKeyCacheTables(c.size, c.tables)
		if keys.TablesBound() != c.want {
			t.Fatalf("NewKeyCacheTables(%d, %d): bound %d, want %d", c.size, c.tables, keys.TablesBound(), c.want)
		}
		signers := entries[:min(len(entries), c.size)] // all held
		for _, b := range signers {
			verifyTimes(t, keys, b, 17)
		}
		if got := keys.Tables(); got != c.want {
			t.Fatalf("NewKeyCacheTables(%d, %d), %d keys that signed 17 entries each: %d tables, want %d", c.size, c.tables, len(signers), got, c.want)
		}
	}
}

// TestKeyCacheTableEarnedBySignatures: only signatures that verified
// count towards a key's table, so entries a stranger forged under a key
// never build one.
func TestKeyCacheTableEarnedBySignatures(t *testing.T) {
	honest := notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0)
	sig, err := base64.StdEncoding.DecodeString(honest.Envelope.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	r, s := parseSig(t, sig)
	forged := *honest
	forged.Envelope.Signatures = append(honest.Envelope.Signatures[:0:0], honest.Envelope.Signatures...)
	forged.Envelope.Signatures[0].Sig = base64.StdEncoding.EncodeToString(derSig(r, new(big.Int).Add(s, big.NewInt(1))))
	keys := notarize.NewKeyCache(0)
	for range 200 {
		if _, err := verifyLoggedWith(marshal(t, &forged), keys); !errors.Is(err, notarize.ErrBadSignature) {
			t.Fatalf("forged: %v, want ErrBadSignature", err)
		}
	}
	if keys.Tables() != 0 {
		t.Fatal("200 signatures that did not verify built a table")
	}
	for range 16 {
		if _, err := verifyLoggedWith(marshal(t, honest), keys); err != nil {
			t.Fatal(err)
		}
	}
	if keys.Tables() != 1 {
		t.Fatal("16 signatures that verified built no table")
	}
}

// TestKeyCacheEvictionGivesPlaceBack: a key dropped from the cache gives
// its table's place back at once, and a key earns a table with its 16th
// accepted entry, not before.
func TestKeyCacheEvictionGivesPlaceBack(t *testing.T) {
	keys := notarize.NewKeyCache(64)
	use := func(b []byte, times int) { verifyTimes(t, keys, b, times) }
	for i := range 64 {
		b := marshal(t, notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0))
		use(b, 15)
		if got := keys.Tables(); got != i {
			t.Fatalf("after 15 signatures of key %d: %d tables, want %d", i, got, i)
		}
		use(b, 1)
		if got := keys.Tables(); got != i+1 {
			t.Fatalf("after 16 signatures of key %d: %d tables, want %d", i, got, i+1)
		}
	}
	b := marshal(t, notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0))
	use(b, 1) // the 65th key pushes out the first, which held a table
	if got := keys.Tables(); got != 63 {
		t.Fatalf("a key with a table was dropped: %d tables, want 63", got)
	}
	use(b, 15)
	if got := keys.Tables(); got != 64 {
		t.Fatalf("the new key's 16th signature: %d tables, want 64", got)
	}
}

// TestKeyCacheNoTableForRefusedEntries: an entry whose signature verifies
// but whose payload is no statement is refused, and counts for nothing
// (review: 16 of them built a table).
func TestKeyCacheNoTableForRefusedEntries(t *testing.T) {
	e := notarizetest.Envelope(t, notarizetest.NewSigner(t), notarize.PayloadType, []byte(`{}`))
	b := marshal(t, e)
	keys := notarize.NewKeyCache(0)
	for range 16 {
		if _, err := verifyLoggedWith(b, keys); err == nil {
			t.Fatal("an entry whose payload is no statement was accepted")
		}
	}
	if got := keys.Tables(); got != 0 {
		t.Errorf("16 refused entries built %d table(s)", got)
	}
}

// TestKeyCacheTableTriedAgain: a key whose 16th entry came while every
// place was taken tries again 16 entries later, and gets one once places
// are free (review: it never did while it stayed in the cache).
func TestKeyCacheTableTriedAgain(t *testing.T) {
	keys := notarize.NewKeyCache(65)
	use := func(b []byte, times int) { verifyTimes(t, keys, b, times) }
	newEntry := func() []byte {
		return marshal(t, notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0))
	}
	for range 64 {
		use(newEntry(), 16)
	}
	honest := newEntry()
	use(honest, 16) // no place: refused
	if got := keys.Tables(); got != 64 {
		t.Fatalf("%d tables, want 64", got)
	}
	use(newEntry(), 1) // pushes out the least recently used key, which held one
	if got := keys.Tables(); got != 63 {
		t.Fatalf("%d tables, want 63", got)
	}
	use(honest, 15)
	if got := keys.Tables(); got != 63 {
		t.Fatalf("the refused key took a place before 16 more entries: %d tables", got)
	}
	use(honest, 1)
	if got := keys.Tables(); got != 64 {
		t.Fatalf("the refused key's 16th entry since, with a place free: %d tables, want 64", got)
	}
}

// TestKeyCacheConcurrent verifies entries of a few keys from many
// goroutines with one cache (run with -race).
func TestKeyCacheConcurrent(t *testing.T) {
	var good, bad [][]byte
	for range 3 {
		sv := notarizetest.NewSigner(t)
		e := notarizetest.Entry(t, sv, digestA, notarize.StatusTrusted, t0)
		good = append(good, marshal(t, e))
		m := *e
		m.Envelope.Payload = base64.StdEncoding.EncodeToString([]byte(`{}`))
		bad = append(bad, marshal(t, &m))
	}
	keys := notarize.NewKeyCache(2)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				b := good[(g+i)%len(good)]
				if _, err := verifyLoggedWith(b, keys); err != nil {
					t.Error(err)
				}
				if _, err := verifyLoggedWith(bad[(g+i)%len(bad)], keys); err == nil {
					t.Error("an entry whose payload its signature does not cover was accepted")
				}
			}
		})
	}
	wg.Wait()
}

// verifyTimes verifies the logged entry b n times with keys, failing t on
// any error.
func verifyTimes(t testing.TB, keys *notarize.KeyCache, b []byte, n int) {
	t.Helper()
	for range n {
		if _, err := verifyLoggedWith(b, keys); err != nil {
			t.Fatal(err)
		}
	}
}

// parseSig returns an ECDSA signature's numbers.
func parseSig(t testing.TB, sig []byte) (r, s *big.Int) {
	t.Helper()
	r, s = new(big.Int), new(big.Int)
	in, seq := cryptobyte.String(sig), cryptobyte.String(nil)
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Integer(r) || !seq.ReadASN1Integer(s) {
		t.Fatalf("not an ASN.1 ECDSA signature: %x", sig)
	}
	return r, s
}

// derSig encodes an ECDSA signature's numbers in ASN.1 DER.
func derSig(r, s *big.Int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.BytesOrPanic()
}

func marshal(t testing.TB, e *notarize.Entry) []byte {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
