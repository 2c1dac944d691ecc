package notarize_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// BenchmarkEntryCheck is the per-entry check of a replica's catch-up and a
// ledger's submission: ParseEntry then VerifyLogged, on an ECDSA P-256
// entry. Its sub-benchmarks split the cost.
func BenchmarkEntryCheck(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s, err := signature.LoadECDSASignerVerifier(k, notarize.HashFor(k.Public()))
	if err != nil {
		b.Fatal(err)
	}
	e := sign(b, s, statement(digestA, notarize.StatusTrusted, t0))
	raw, err := e.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parse+verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, err := notarize.ParseEntry(raw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.VerifyLogged(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse+verify/key-cached", func(b *testing.B) {
		keys := notarize.NewKeyCache(0)
		parseVerifyLoop(b, raw, keys)
	})
	// A signer's new key after the cache's 64 table places went to keys
	// that signed earlier and then retired (a rotation): the new key's
	// entries earn one of their places once those keys have gone unused
	// for a while, and verify with its table from then on.
	b.Run("parse+verify/key-cached/after-rotation", func(b *testing.B) {
		keys := notarize.NewKeyCache(0)
		for range 64 {
			old := notarizetest.Entry(b, notarizetest.NewSigner(b), digestA, notarize.StatusTrusted, t0)
			for range 16 {
				if _, err := old.VerifyLoggedWith(keys); err != nil {
					b.Fatal(err)
				}
			}
		}
		if keys.Tables() != 64 {
			b.Fatalf("%d tables after warm-up, want 64", keys.Tables())
		}
		parseVerifyLoop(b, raw, keys)
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := notarize.ParseEntry(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	v, err := e.VerifyLogged()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("statement", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := notarize.ParseStatement(v.Payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pub, err := notarize.ParsePublicKey([]byte(e.PublicKey))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := notarize.KeyID(pub); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// parseVerifyLoop is the benchmark's loop: raw parsed and checked with
// keys, as a replica's catch-up does with each entry.
func parseVerifyLoop(b *testing.B, raw []byte, keys *notarize.KeyCache) {
	b.ReportAllocs()
	for b.Loop() {
		e, err := notarize.ParseEntry(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.VerifyLoggedWith(keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkManySigners: entries of K signers, in turn, parsed and checked
// with one cache (a ledger's ingest under many keys), when the cache's
// tables bound is DefaultKeyCacheTables and when it covers every signer. Each
// key signed 32 entries before the clock starts, so that every key that
// can have a table has it. What is measured is per entry.
func BenchmarkManySigners(b *testing.B) {
	for _, signers := range []int{64, 256, 1024} {
		raws := make([][]byte, signers)
		for i := range raws {
			raws[i] = marshalEntry(b, notarizetest.Entry(b, notarizetest.NewSigner(b), digestA, notarize.StatusTrusted, t0))
		}
		for _, tables := range slices.Compact([]int{notarize.DefaultKeyCacheTables, signers}) {
			b.Run(fmt.Sprintf("signers=%d/tables=%d", signers, tables), func(b *testing.B) {
				keys := notarize.NewKeyCacheTables(0, tables)
				for range 32 {
					for _, raw := range raws {
						parseVerify(b, raw, keys)
					}
				}
				if want := min(signers, tables); keys.Tables() != want {
					b.Fatalf("%d tables after warm-up, want %d", keys.Tables(), want)
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					parseVerify(b, raws[i%signers], keys)
					i++
				}
			})
		}
	}
}

// parseVerify parses raw and checks it with keys.
func parseVerify(b *testing.B, raw []byte, keys *notarize.KeyCache) {
	e, err := notarize.ParseEntry(raw)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.VerifyLoggedWith(keys); err != nil {
		b.Fatal(err)
	}
}

// marshalEntry returns e's bytes.
func marshalEntry(b *testing.B, e *notarize.Entry) []byte {
	raw, err := e.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return raw
}
