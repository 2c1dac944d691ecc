package ledgerclient

import (
	"encoding/json"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// FuzzKeyMapProof: any map proof a ledger (or a front) sends is refused or
// proves what the map holds, never panics; a proof against the empty map's
// root proves absence only.
func FuzzKeyMapProof(f *testing.F) {
	m := vindex.NewMemStore()
	d := notarize.DigestOf([]byte("fuzz"))
	k := "0000000000000000000000000000000000000000000000000000000000000001"
	f.Add([]byte(`{"keyID":"x","depth":0}`))
	f.Add([]byte(`{"keyID":"x","depth":9,"bitmap":"gA==","siblings":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var kp api.KeyMapProof
		if json.Unmarshal(b, &kp) != nil {
			return
		}
		root, _ := vindex.Root(m)
		e, err := verifyKeyMapProof(kp, &notarize.MapRoot{Size: 10, Root: root}, d, k)
		if err == nil && e.found {
			t.Fatalf("a key proven present in the empty map: %+v", kp)
		}
	})
}
