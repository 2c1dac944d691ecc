package ledger

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/notarize/docker-notarize/ledger/storage"
)

// TestSelfDigestKeysBounded: the follower's record of the keys that wrote
// about their own revocation digest names exactly those keys (rows about
// another digest, or by another key, are not counted), and past
// selfRevokedKeys of them says every key may have, so that no kept
// "never wrote" answer is used once it cannot tell (and drops the keys).
func TestSelfDigestKeysBounded(t *testing.T) {
	var w selfDigestKeys
	k, other := make([]byte, 32), make([]byte, 32)
	rand.Read(k)
	rand.Read(other)
	w.add([]storage.Row{{Digest: other, KeyID: k}, {Digest: k, KeyID: other}, {ID: k}})
	if w.may(hex.EncodeToString(k)) || w.may(hex.EncodeToString(other)) {
		t.Fatal("rows about another digest, or by another key, counted as a key's own revocation digest")
	}
	w.add([]storage.Row{{Digest: k, KeyID: k}})
	if !w.may(hex.EncodeToString(k)) || w.may(hex.EncodeToString(other)) {
		t.Fatalf("after k's row about sha256:<k>: may(k) %v, may(other) %v; want true, false", w.may(hex.EncodeToString(k)), w.may(hex.EncodeToString(other)))
	}
	batch := make([]storage.Row, selfRevokedKeys)
	for i := range batch {
		id := make([]byte, 32)
		binary.BigEndian.PutUint64(id, uint64(i)+1)
		batch[i] = storage.Row{Digest: id, KeyID: id}
	}
	w.add(batch)
	if !w.may(hex.EncodeToString(other)) {
		t.Fatalf("%d keys wrote about their revocation digest: a key not recorded is still said to have written none", selfRevokedKeys+1)
	}
	if w.keys != nil { // helper-106: the full map was kept, never read again
		t.Fatalf("past the bound, the record still holds %d keys", len(w.keys))
	}
}
