package ledger

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// Review of b373b0f (round twenty-one): the fold's tap misses are checked
// with the index's KeyCache (mapStatementWith) where vindex.Batch.Add, the
// replica's auditor and mapStatement check without one. These tests hold
// the two to the same verdict on crafted entries, with the key cached and
// tabled, cached without a table, and not cached.

// entry returns a statement by s about a fresh digest, as
// notarizetest.Entry builds it.
func (s *testSigner) entry(t testing.TB) *notarize.Entry {
	t.Helper()
	return notarizetest.Entry(t, s.sv, randomDigest(t), notarize.StatusTrusted, time.Now())
}

// withSig returns e's bytes with its signature replaced by DER (r, s).
func rt21WithSig(t testing.TB, e *notarize.Entry, r, s *big.Int) []byte {
	t.Helper()
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		t.Fatal(err)
	}
	m := *e
	m.Envelope.Signatures = []ssldsse.Signature{{KeyID: e.Envelope.Signatures[0].KeyID, Sig: base64.StdEncoding.EncodeToString(der)}}
	return mustMarshal(t, &m)
}

func rt21RS(t testing.TB, e *notarize.Entry) (r, s *big.Int) {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(e.Envelope.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &v); err != nil {
		t.Fatal(err)
	}
	return v.R, v.S
}

// variants returns crafted spellings and forgeries of a fresh entry of s.
func (s *testSigner) variants(t testing.TB, other *testSigner) map[string][]byte {
	t.Helper()
	n := elliptic.P256().Params().N
	e := s.entry(t)
	r, sv := rt21RS(t, e)
	out := map[string][]byte{"valid": mustMarshal(t, e)}
	for _, re := range notarizetest.ReEncodings(t, e) {
		out["re-encoding: "+re.Name] = re.Body
	}
	add := func(name string, r, s *big.Int) { out[name] = rt21WithSig(t, e, r, s) }
	add("high-S twin", r, new(big.Int).Sub(n, sv))
	add("r+1", new(big.Int).Add(r, big.NewInt(1)), sv)
	add("s+1", r, new(big.Int).Add(sv, big.NewInt(1)))
	add("n-r", new(big.Int).Sub(n, r), sv)
	add("r,s swapped", sv, r)
	add("r+n", new(big.Int).Add(r, n), sv)
	add("s+n", r, new(big.Int).Add(sv, n))
	add("r=0", big.NewInt(0), sv)
	add("s=n", r, new(big.Int).Set(n))
	add("s=-s", r, new(big.Int).Neg(sv))
	// e + r·d = 0: (e/s)·G + (r/s)·Q is the point at infinity.
	payload, _ := base64.StdEncoding.DecodeString(e.Envelope.Payload)
	h := sha256.Sum256(ssldsse.PAE(notarize.PayloadType, payload))
	ev := new(big.Int).SetBytes(h[:])
	rInf := new(big.Int).Mul(new(big.Int).Neg(ev), new(big.Int).ModInverse(s.priv.D, n))
	rInf.Mod(rInf, n)
	add("sum at infinity", rInf, big.NewInt(12345))
	// another key's valid signature over the same envelope, under s's PEM
	oe := other.entry(t)
	or, os := rt21RS(t, oe)
	add("another key's signature", or, os)
	m := *e
	m.Envelope.Payload = oe.Envelope.Payload
	out["another payload"] = mustMarshal(t, &m)
	m = *e
	kid := e.Envelope.Signatures[0].KeyID
	wrong := "00" + kid[2:]
	if wrong == kid { // one key in 256 has an ID starting 00
		wrong = "11" + kid[2:]
	}
	m.Envelope.Signatures = []ssldsse.Signature{{KeyID: wrong, Sig: e.Envelope.Signatures[0].Sig}}
	out["wrong keyid"] = mustMarshal(t, &m)
	m = *e
	m.PublicKey = oe.PublicKey // other's key, s's keyid and signature
	out["other's PEM"] = mustMarshal(t, &m)
	return out
}

// rt21Valid: the variants a log's check accepts, the signature's high-S
// twin among them (VerifyLogged).
func rt21Valid(name string) bool {
	return name == "valid" || name == "high-S twin" || name == "re-encoding: signature's high-S twin"
}

func rt21Verdict(data []byte, keys *notarize.KeyCache) string {
	v, ok := mapStatementWith(data, keys)
	if !ok {
		return "refused"
	}
	return fmt.Sprintf("%s %s %d", v.Statement.Digest(), v.KeyID, v.Statement.Predicate.Timestamp.UnixNano())
}

// TestRedteam21CachedCheckMatchesUncached: for a P-256 key with a table in
// the cache, one held without a table and one not held, and for keys of
// other kinds, mapStatementWith folds exactly what mapStatement folds.
func TestRedteam21CachedCheckMatchesUncached(t *testing.T) {
	tabled, other := newTestSigner(t), newTestSigner(t)
	keys := notarize.NewKeyCache(0)
	for range 20 {
		if _, ok := mapStatementWith(mustMarshal(t, tabled.entry(t)), keys); !ok {
			t.Fatal("a valid entry refused")
		}
	}
	if keys.Tables() != 1 {
		t.Fatalf("%d tables, want the key's", keys.Tables())
	}
	held := newTestSigner(t)
	if _, ok := mapStatementWith(mustMarshal(t, held.entry(t)), keys); !ok {
		t.Fatal("a valid entry refused")
	}
	for name, s := range map[string]*testSigner{"tabled": tabled, "held": held, "not held": newTestSigner(t)} {
		for v, data := range s.variants(t, other) {
			want := rt21Verdict(data, nil)
			for c, kc := range map[string]*notarize.KeyCache{"index cache": keys, "fresh cache": notarize.NewKeyCache(0)} {
				if got := rt21Verdict(data, kc); got != want {
					t.Errorf("%s key, %s, %s: cached %q, uncached %q", name, v, c, got, want)
				}
			}
			if rt21Valid(v) {
				if want == "refused" {
					t.Errorf("%s key, %s: refused", name, v)
				}
			} else if want != "refused" {
				t.Errorf("%s key, %s: folded", name, v)
			}
		}
	}
	if keys.Tables() != 1 {
		t.Fatalf("%d tables after the variants, want 1", keys.Tables())
	}
	// Ed25519 and P-384 keys: no table, same verdicts.
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, priv := range []crypto.Signer{edPriv, p384} {
		sv, err := signature.LoadSignerVerifier(priv, notarize.HashFor(priv.Public()))
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			data := mustMarshal(t, notarizetest.Entry(t, sv, randomDigest(t), notarize.StatusTrusted, time.Now()))
			if got, want := rt21Verdict(data, keys), rt21Verdict(data, nil); got != want || want == "refused" {
				t.Fatalf("%T: cached %q, uncached %q", priv, got, want)
			}
		}
	}
}

// TestRedteam21RefusedEntriesTakeNoPlace: entries the fold refuses, a
// valid signature with the key spelled otherwise among them, leave no key
// in the cache; a logged entry that verifies does (as the index
// follower's check does already).
func TestRedteam21RefusedEntriesTakeNoPlace(t *testing.T) {
	keys := notarize.NewKeyCache(0)
	s, other := newTestSigner(t), newTestSigner(t)
	for v, data := range s.variants(t, other) {
		if rt21Valid(v) {
			continue
		}
		mapStatementWith(data, keys)
	}
	if n := keys.Len(); n != 0 {
		t.Fatalf("refused entries left %d keys in the cache", n)
	}
	mapStatementWith(mustMarshal(t, s.entry(t)), keys)
	if n := keys.Len(); n != 1 {
		t.Fatalf("a valid entry left %d keys, want 1", n)
	}
}

// TestRedteam21SharedCacheConcurrent: the index follower's and the map
// follower's checks share one cache (run it with -race); each verdict is
// the uncached one while the key earns and uses its table.
func TestRedteam21SharedCacheConcurrent(t *testing.T) {
	keys := notarize.NewKeyCache(0)
	signers := []*testSigner{newTestSigner(t), newTestSigner(t), newTestSigner(t)}
	other := newTestSigner(t)
	var entries [][]byte
	var want []string
	for _, s := range signers {
		for range 12 {
			for _, data := range s.variants(t, other) {
				entries = append(entries, data)
				want = append(want, rt21Verdict(data, nil))
			}
		}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range entries {
				j := (i*7 + w*31) % len(entries)
				if got := rt21Verdict(entries[j], keys); got != want[j] {
					t.Errorf("entry %d: cached %q, uncached %q", j, got, want[j])
					return
				}
			}
		})
	}
	wg.Wait()
	if keys.Tables() == 0 {
		t.Log("no key earned a table")
	}
}

// TestRedteam21TapMemory measures the heap a full tap holds (foldRowsMax
// rows), and what stays once it forgot them all: a Go map does not shrink.
func TestRedteam21TapMemory(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	tap := &rowTap{rows: make(map[uint64]keptRow)}
	const batch = 1000
	for next := 0; next < foldRowsMax; next += batch {
		rows := make([]storage.Row, min(batch, foldRowsMax-next))
		for i := range rows {
			j := next + i
			rows[i] = storage.Row{
				Digest: sha256Of(fmt.Sprint("d", j)), KeyID: sha256Of(fmt.Sprint("k", j)),
				Stamp: storage.StampOf(time.Unix(int64(j), 0)), Data: fmt.Appendf(nil, "entry %d", j),
			}
		}
		tap.keep(uint64(next), rows)
	}
	if len(tap.rows) != foldRowsMax {
		t.Fatalf("%d rows kept, want %d", len(tap.rows), foldRowsMax)
	}
	full := heap()
	tap.forget(foldRowsMax)
	empty := heap()
	runtime.KeepAlive(tap)
	t.Logf("keptRow %d bytes; %d rows: heap +%.1f MiB (%.0f B/row); after forget: +%.1f MiB",
		sizeofKeptRow(), foldRowsMax, float64(full-before)/(1<<20), float64(full-before)/foldRowsMax, float64(empty-before)/(1<<20))
	if full-before > 20<<20 { // foldRowsMax's comment: ~16 MiB

		t.Errorf("a full tap holds %d MiB", (full-before)>>20)
	}
}

func sha256Of(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func sizeofKeptRow() uintptr { return unsafe.Sizeof(keptRow{}) }
