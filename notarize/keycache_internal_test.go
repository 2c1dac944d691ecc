package notarize

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"sync"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// newPEM returns a new P-256 public key's PEM.
func newPEM(t *testing.T) string {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkTables: c.tables is the number of held keys that took a place.
func checkTables(t *testing.T, c *KeyCache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	held := 0
	for el := c.lru.Front(); el != nil; el = el.Next() {
		if el.Value.(*cachedKey).tabled {
			held++
		}
	}
	if c.tables != held || c.tables < 0 || c.tables > maxTables {
		t.Fatalf("tables = %d, held keys with a place = %d (max %d)", c.tables, held, maxTables)
	}
}

// TestKeyCacheUnheldKeyTakesNoPlace: a key the cache does not (or no
// longer) hold never takes a table's place.
func TestKeyCacheUnheldKeyTakesNoPlace(t *testing.T) {
	c := NewKeyCache(4)
	pem := newPEM(t)
	k1, err := c.signerKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	dup, err := parseSignerKey(pem) // what a concurrent parse of the same text returns
	if err != nil {
		t.Fatal(err)
	}
	c.add(dup) // already held: dup is not kept
	loose, err := parseSignerKey(newPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	for range tableAfter {
		c.verified(dup)
		c.verified(loose)
	}
	if got := c.Tables(); got != 0 || dup.table.Load() != nil || loose.table.Load() != nil {
		t.Fatalf("keys the cache does not hold took %d places", got)
	}
	for range tableAfter {
		c.verified(k1)
	}
	if c.Tables() != 1 || k1.table.Load() == nil {
		t.Fatal("the held key has no table")
	}
	checkTables(t, c)
}

// TestKeyCacheTablesCountUnderChurn: under churn from many goroutines the
// count of places stays that of the held keys holding one (review: a
// mutation that never gave a place back passed every other test).
func TestKeyCacheTablesCountUnderChurn(t *testing.T) {
	var pems []string
	for range 90 {
		pems = append(pems, newPEM(t))
	}
	for _, size := range []int{3, 70, 200} {
		c := NewKeyCache(size)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 3000 {
					k, err := c.signerKey(pems[(g*7+i/5)%len(pems)])
					if err != nil {
						t.Error(err)
						return
					}
					c.verified(k)
				}
			})
		}
		wg.Wait()
		checkTables(t, c)
		t.Logf("size %d: %d keys, %d tables", size, c.Len(), c.Tables())
	}
}
