package notarize_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
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

	for name, e := range map[string]*notarize.Entry{
		"another key's signature under the cached key":      &thiefUnderVictim,
		"the cached key's signature with a bit flipped":     withSig(honest, flipped),
		"the cached key's signature of the other statement": withSig(honest, sig(other)),
	} {
		t.Run(name, func(t *testing.T) {
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

func marshal(t testing.TB, e *notarize.Entry) []byte {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
