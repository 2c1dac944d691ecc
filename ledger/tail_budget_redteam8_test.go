package ledger

import (
	"fmt"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
)

// rt8ClientName is the name the lookup gate and the tail budget charge for
// a request from addr.
func rt8ClientName(t *testing.T, addr string) string {
	t.Helper()
	lc, _ := clientCtx(t, addr).Value(lookupClientKey{}).(lookupClient)
	return lc.name
}

// Red team 8: the tail budget charges only a client's /64. Many /64s of
// one /48 (one party's delegation) still never hold more than the whole
// budget: the memory pinned by stalled readers stays bounded however many
// /64s ask. The test fails ("DoS:") if the total bound is not applied.
func TestRedteam8TailBudgetManySlash64sBounded(t *testing.T) {
	b := &heldBudget{total: maxHeldTailBytes, client: clientHeldTailBytes}
	var taken int64
	for i := range 4096 {
		name := rt8ClientName(t, fmt.Sprintf("2001:db8:77:%x::1", i))
		for b.take(name, api.MaxInlineTailBytes) {
			taken += api.MaxInlineTailBytes
		}
	}
	if taken > maxHeldTailBytes {
		t.Fatalf("DoS: 4096 /64s of one /48 hold %d bytes of inline tails, more than the whole budget %d", taken, maxHeldTailBytes)
	}
	if held, _ := b.inUse(""); held != taken {
		t.Fatalf("budget says %d held, %d taken", held, taken)
	}
}

// Red team 8, F2: the /64s of one /48 (one party's delegation), each
// holding stalled answers, took the whole budget, and every other client's
// answers went without their inline tails. The /56 and /48 are charged
// too, as the lookup gate charges them, so another client still gets a
// tail.
func TestRedteam8TailBudgetOneSlash48DeniesOthers(t *testing.T) {
	b := &heldBudget{total: maxHeldTailBytes, client: clientHeldTailBytes}
	for i := range 16 {
		shares := sharesOf(clientCtx(t, fmt.Sprintf("2001:db8:77:%x::1", i)).Value(lookupClientKey{}).(lookupClient))
		for b.takeShares(shares, api.MaxInlineTailBytes) {
		}
	}
	if !b.take(rt8ClientName(t, "192.0.2.50"), api.MaxInlineTailBytes) {
		held, _ := b.inUse("")
		t.Fatalf("DoS: one /48 holds %d of %d bytes; an honest client gets no inline tail", held, maxHeldTailBytes)
	}
}
