package ledgerclient

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// TestFollowParallelCheckRefusesAtTheIndex: the entries of a batch are
// checked by several workers, with the signers' keys cached after their
// first entry; each bad entry (a signature its cached key did not make,
// another key's keyid, a thief's signature under a victim's key, a leaf
// that is no entry, a map root) is refused at its own index and every good
// one is kept at its own, whichever worker checked it and however many
// there are.
func TestFollowParallelCheckRefusesAtTheIndex(t *testing.T) {
	t.Parallel()
	const n = 2100 // several bundles and batches, a partial last bundle
	victim, other, thief := newEntrySigner(t), newEntrySigner(t), newEntrySigner(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	digest := func(i int) notarize.Digest { return notarize.DigestOf(fmt.Appendf(nil, "%d", i)) }
	good := func(i int) *notarize.Entry {
		sv := victim
		if i%3 == 1 {
			sv = other
		}
		return signEntry(t, sv, digest(i), notarize.StatusTrusted, at.Add(time.Duration(i)*time.Second))
	}
	victimEntry, otherEntry := good(0), good(1)
	type badLeaf struct {
		leaf func(i int) []byte
		want error
	}
	bad := map[int]badLeaf{}
	badSig := func(i int) []byte { // the victim's key and keyid, a signature of another statement
		e := good(i)
		e.Envelope.Payload = signEntry(t, victim, digestB, notarize.StatusUntrusted, at).Envelope.Payload
		return marshal(t, e)
	}
	otherKeyID := func(i int) []byte {
		e := good(i)
		e.Envelope.Signatures[0].KeyID = otherEntry.Envelope.Signatures[0].KeyID
		if e.PublicKey == otherEntry.PublicKey {
			e.Envelope.Signatures[0].KeyID = victimEntry.Envelope.Signatures[0].KeyID
		}
		return marshal(t, e)
	}
	thiefUnderVictim := func(i int) []byte {
		e := signEntry(t, thief, digest(i), notarize.StatusTrusted, at)
		e.PublicKey = victimEntry.PublicKey
		e.Envelope.Signatures[0].KeyID = victimEntry.Envelope.Signatures[0].KeyID
		return marshal(t, e)
	}
	notEntry := func(int) []byte { return []byte(`{"envelope":`) }
	mapRoot := func(int) []byte { return []byte(notarize.MapRootHeader + "not signed\n") }
	for _, i := range []int{2, 3, 4, 255, 256, 700, 1023, 1024, 1025, 2099} {
		bad[i] = badLeaf{badSig, notarize.ErrBadSignature}
	}
	for _, i := range []int{5, 6, 1500} {
		bad[i] = badLeaf{otherKeyID, notarize.ErrBadSignature}
	}
	for _, i := range []int{7, 1026, 2098} {
		bad[i] = badLeaf{thiefUnderVictim, notarize.ErrBadSignature}
	}
	for _, i := range []int{8, 1501} {
		bad[i] = badLeaf{notEntry, notarize.ErrBadEntry}
	}
	bad[9] = badLeaf{mapRoot, notarize.ErrBadEntry}

	leaves := make([][]byte, n)
	for i := range leaves {
		if b, ok := bad[i]; ok {
			leaves[i] = b.leaf(i)
		} else {
			leaves[i] = marshal(t, good(i))
		}
	}
	keyID := func(i int) string { // of good(i)'s signer
		if i%3 == 1 {
			return otherEntry.Envelope.Signatures[0].KeyID
		}
		return victimEntry.Envelope.Signatures[0].KeyID
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 2, 3, 8} {
		for _, batch := range []uint64{256, 0} {
			t.Run(fmt.Sprintf("GOMAXPROCS=%d/batch=%d", procs, batch), func(t *testing.T) {
				runtime.GOMAXPROCS(procs)
				_, c := followLogOf(t, leaves)
				entries, st := catchUp(t, NewFollower(c, batch), FollowState{})
				if len(entries) != n || st.Size != n {
					t.Fatalf("got %d entries, size %d; want %d", len(entries), st.Size, n)
				}
				for i, e := range entries {
					if e.Index != uint64(i) {
						t.Fatalf("entry %d has index %d", i, e.Index)
					}
					if b, ok := bad[i]; ok {
						if !errors.Is(e.Err, b.want) || e.Record.Statement != nil {
							t.Fatalf("entry %d: err %v, record %+v; want %v and no record", i, e.Err, e.Record, b.want)
						}
						continue
					}
					if e.Err != nil || e.Record.Index != uint64(i) || e.Record.Statement.Digest() != digest(i) || e.Record.KeyID != keyID(i) {
						t.Fatalf("entry %d: %+v, want a record of %s by %s", i, e, digest(i), keyID(i))
					}
				}
			})
		}
	}
}
