package ledgerclient

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/notarize"
)

// fuzzNoteKey is a fixed note key, so that seeds stay valid across runs.
func fuzzNoteKey(t testing.TB) (note.Signer, string) {
	t.Helper()
	return noteKeyFrom(t, rand.NewChaCha8([32]byte{1, 2, 3}), testOrigin)
}

// FuzzCheckpoint feeds arbitrary bytes to checkpoint verification, both as
// an answer of the ledger and as the stored state. It must not panic, and it
// must accept only the trees the key really signed.
func FuzzCheckpoint(f *testing.F) {
	s, vkey := fuzzNoteKey(f)
	other, _ := newNoteKey(f, testOrigin)
	l := newFakeLog(s, vkey)
	signed := map[string]bool{} // "size root" of every tree signed with s
	for i := range 5 {
		l.add([]byte{byte(i)})
		cp := l.checkpointAt(f, l.size())
		signed[string(l.checkpointText(l.size()))] = true
		f.Add(cp)
		f.Add(signNote(f, other, testOrigin, l.size(), l.tree.Hash()))
	}
	f.Add([]byte(testOrigin + "\n1\n" + testB64(l.tree.HashAt(1)) + "\n"))
	f.Add([]byte(testOrigin + "\n1\n" + testB64(l.tree.HashAt(1)) + "\n\n\u2014 " + testOrigin + " AAAAAAAA\n"))
	f.Add(signNote(f, s, testOrigin, 0, hasher.EmptyRoot()))
	signed[string(l.checkpointText(0))] = true
	v := mustVerifier(f, vkey)
	home := f.TempDir()
	c := testClient(f, newFakeOps(f, l), home, vkey)
	path := newStore(home).checkpointPath(vkey)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cp, err := verifyCheckpoint(raw, testOrigin, v)
		if err == nil {
			text := l.checkpointTextOf(cp.Size, cp.Hash)
			if !signed[string(text)] {
				t.Fatalf("accepted a checkpoint the key never signed: %q", raw)
			}
			if !bytes.Equal(cp.Raw, raw) {
				t.Fatal("Raw is not the input")
			}
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := c.stored()
		if err == nil && st != nil && !signed[string(l.checkpointTextOf(st.Size, st.Hash))] {
			t.Fatalf("accepted a stored checkpoint the key never signed: %q", raw)
		}
	})
}

// FuzzReceipt feeds arbitrary bytes to Submit as the ledger's receipt. It
// must not panic, and a success must be the genuine receipt's content.
func FuzzReceipt(f *testing.F) {
	s, vkey := fuzzNoteKey(f)
	l := newFakeLog(s, vkey)
	l.add([]byte("a"), []byte("b"))
	e := signEntry(f, newEntrySigner(f), digestA, notarize.StatusTrusted, t0)
	l.add(marshal(f, e))
	l.add([]byte("c"))
	good, err := json.Marshal(l.receipt(f, 2, false))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"index":2`), []byte(`"index":3`), 1))
	f.Add([]byte(`{"index":0,"entry":"","checkpoint":"x","inclusionProof":null}`))
	f.Add([]byte(`null`))
	ops := newFakeOps(f, l)
	c := testClient(f, ops, f.TempDir(), vkey)
	f.Fuzz(func(t *testing.T, raw []byte) {
		ops.rawSubmit = raw
		res, err := c.Submit(t.Context(), e)
		if err != nil {
			return
		}
		if res.Index != 2 || res.Record.Statement.Digest() != digestA || res.Checkpoint.Size < 3 {
			t.Fatalf("accepted a false receipt: %+v", res)
		}
	})
}

// FuzzLookup feeds arbitrary bytes to Lookup as the ledger's answer. It must
// not panic, and every record returned must be genuinely in the log and
// about the digest asked for.
func FuzzLookup(f *testing.F) {
	s, vkey := fuzzNoteKey(f)
	l := newFakeLog(s, vkey)
	signer := newEntrySigner(f)
	for _, d := range []notarize.Digest{digestA, digestB, digestA} {
		l.add(marshal(f, signEntry(f, signer, d, notarize.StatusTrusted, t0)))
	}
	ops := newFakeOps(f, l)
	good, err := ops.Lookup(f.Context(), digestA, lookupQuery{limit: PageLimit})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"digest":"` + digestA.String() + `","checkpoint":"","entries":[]}`))
	c := testClient(f, ops, f.TempDir(), vkey)
	f.Fuzz(func(t *testing.T, raw []byte) {
		ops.rawLookup = raw
		res, err := c.Lookup(t.Context(), digestA)
		if err != nil {
			return
		}
		for _, r := range res.Records {
			if r.Index >= l.size() || (r.Index != 0 && r.Index != 2) || r.Statement.Digest() != digestA {
				t.Fatalf("accepted a false record: %+v", r)
			}
		}
	})
}
