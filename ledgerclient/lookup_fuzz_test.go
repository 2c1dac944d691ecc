package ledgerclient

import (
	"testing"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// FuzzCurrent feeds arbitrary bytes to Current as the ledger's answer. It
// must not panic, and what it returns must be genuinely in the log, about
// the digest, by the key asked for, at most one record.
func FuzzCurrent(f *testing.F) {
	s, vkey := fuzzNoteKey(f)
	l := newFakeLog(s, vkey)
	alice, bob := newEntrySigner(f), newEntrySigner(f)
	l.add(marshal(f, signEntry(f, alice, digestA, notarize.StatusTrusted, t0)))
	l.add(marshal(f, signEntry(f, bob, digestA, notarize.StatusUntrusted, t0)))
	l.add(marshal(f, signEntry(f, alice, digestB, notarize.StatusTrusted, t0)))
	l.add(marshal(f, signEntry(f, alice, digestA, notarize.StatusUntrusted, t0)))
	ops := newFakeOps(f, l)
	aliceID := notarizetest.KeyID(f, alice)
	good, err := ops.Current(f.Context(), digestA, []string{aliceID})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	both, err := ops.Current(f.Context(), digestA, []string{aliceID, notarizetest.KeyID(f, bob)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(both)
	f.Add([]byte(`{"digest":"` + digestA.String() + `","checkpoint":"","entries":[]}`))
	c := testClient(f, ops, f.TempDir(), vkey)
	f.Fuzz(func(t *testing.T, raw []byte) {
		ops.rawCurrent = raw
		res, err := c.Current(t.Context(), digestA, aliceID)
		if err != nil {
			return
		}
		if len(res.Records) > 1 {
			t.Fatalf("%d records for one key", len(res.Records))
		}
		for _, r := range res.Records {
			if (r.Index != 0 && r.Index != 3) || r.KeyID != aliceID || r.Statement.Digest() != digestA {
				t.Fatalf("accepted a false record: %+v", r)
			}
		}
	})
}
