package ledgerclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/sigstore/sigstore/pkg/signature"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// pinnedClient returns a fake ledger of n leaves, a client that pinned its key
// and has stored the checkpoint of size n, and the client's home.
func pinnedClient(t *testing.T, n int) (*fakeOps, *Client, string) {
	t.Helper()
	s, vkey := newNoteKey(t, testOrigin)
	f := newFakeOps(t, newFakeLog(s, vkey))
	f.grow(n)
	home := t.TempDir()
	c := testClient(t, f, home, "")
	if got := c.VerifierKey(); got != vkey {
		t.Fatalf("VerifierKey = %q, want %q", got, vkey)
	}
	if _, err := c.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}
	return f, c, home
}

func TestSubmitLookupRoundTrip(t *testing.T) {
	f, c, home := pinnedClient(t, 3)
	signer := newEntrySigner(t)
	e1 := signEntry(t, signer, digestA, notarize.StatusTrusted, t0)
	e2 := signEntry(t, signer, digestB, notarize.StatusTrusted, t0)
	e3 := signEntry(t, signer, digestA, notarize.StatusUntrusted, t0.Add(time.Hour))
	var idx []uint64
	for _, e := range []*notarize.Entry{e1, e2, e3} {
		res, err := c.Submit(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		if res.Duplicate || res.Record.Index != res.Index || res.Checkpoint.Size != res.Index+1 {
			t.Fatalf("result %+v", res)
		}
		if !bytes.Equal(stateBytes(t, home, testOrigin), res.Checkpoint.Raw) {
			t.Fatal("state did not advance to the receipt's checkpoint")
		}
		idx = append(idx, res.Index)
	}
	dup, err := c.Submit(t.Context(), e1)
	if err != nil {
		t.Fatal(err)
	}
	if !dup.Duplicate || dup.Index != idx[0] {
		t.Fatalf("duplicate: %+v", dup)
	}
	res, err := c.Lookup(t.Context(), digestA)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 2 || res.Records[0].Index != idx[0] || res.Records[1].Index != idx[2] {
		t.Fatalf("records %+v", res.Records)
	}
	if res.Records[1].Status() != notarize.StatusUntrusted || res.Checkpoint.Size != f.log.size() {
		t.Fatalf("lookup %+v", res)
	}
	none, err := c.Lookup(t.Context(), notarize.DigestOf([]byte("never signed")))
	if err != nil || len(none.Records) != 0 {
		t.Fatalf("lookup of unknown digest: %v, %+v", err, none)
	}
	if _, err := c.Lookup(t.Context(), "sha256:nothex"); !errors.Is(err, notarize.ErrBadDigest) {
		t.Fatalf("bad digest: %v", err)
	}
}

func TestConsistencyAcrossSizes(t *testing.T) {
	f, c, home := pinnedClient(t, 0)
	for _, step := range []int{1, 1, 2, 251, 1, 255, 256, 257, 1, 700, 65536 - 1500, 3} {
		f.grow(step)
		cp, err := c.Latest(t.Context())
		if err != nil {
			t.Fatalf("after growing by %d: %v", step, err)
		}
		if cp.Size != f.log.size() || !bytes.Equal(stateBytes(t, home, testOrigin), cp.Raw) {
			t.Fatalf("state not advanced to %d", f.log.size())
		}
	}
	// An unchanged ledger is fine and fetches no tiles.
	calls := f.tileCalls
	if _, err := c.Latest(t.Context()); err != nil || f.tileCalls != calls {
		t.Fatalf("unchanged ledger: %v, %d tile fetches", err, f.tileCalls-calls)
	}
}

func TestTrustOnFirstUse(t *testing.T) {
	f, c, home := pinnedClient(t, 4)
	pins, err := os.ReadFile(filepath.Join(home, "ledgers", "pins.json"))
	if err != nil || !strings.Contains(string(pins), f.log.vkey) || !strings.Contains(string(pins), "https://ledger.test") {
		t.Fatalf("pins.json: %s, %v", pins, err)
	}
	if c.Origin() != testOrigin {
		t.Fatalf("Origin = %q", c.Origin())
	}
	// A second client uses the pin and asks nothing.
	f.infoCalls = 0
	c2 := testClient(t, f, home, "")
	if c2.VerifierKey() != f.log.vkey || f.infoCalls != 0 {
		t.Fatalf("second client: key %q, %d info calls", c2.VerifierKey(), f.infoCalls)
	}

	t.Run("refuses a key its checkpoint does not verify under", func(t *testing.T) {
		s, _ := newNoteKey(t, testOrigin)
		_, otherVkey := newNoteKey(t, testOrigin)
		f := newFakeOps(t, newFakeLog(s, otherVkey)) // announces a key it does not sign with
		f.grow(2)
		home := t.TempDir()
		if _, err := newTestClient(t, f, home, ""); !errors.Is(err, ErrBadCheckpoint) {
			t.Fatalf("err = %v, want ErrBadCheckpoint", err)
		}
		if _, err := os.Stat(filepath.Join(home, "ledgers", "pins.json")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a key was pinned: %v", err)
		}
	})
	t.Run("refuses a key when the origin's state was signed by another", func(t *testing.T) {
		f, _, home := pinnedClient(t, 3)
		if err := os.Remove(filepath.Join(home, "ledgers", "pins.json")); err != nil {
			t.Fatal(err)
		}
		s, vkey := newNoteKey(t, testOrigin) // a new ledger with the same name
		g := newFakeOps(t, newFakeLog(s, vkey))
		g.grow(1)
		if _, err := newTestClient(t, g, home, ""); !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("err = %v, want ErrKeyMismatch", err)
		}
		if _, err := os.Stat(filepath.Join(home, "ledgers", "pins.json")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a key was pinned: %v", err)
		}
		_ = f
	})
	t.Run("refuses an origin that is not the key's name", func(t *testing.T) {
		s, vkey := newNoteKey(t, testOrigin)
		l := newFakeLog(s, vkey)
		l.origin = "other.test/log"
		f := newFakeOps(t, l)
		if _, err := newTestClient(t, f, t.TempDir(), ""); err == nil || !strings.Contains(err.Error(), "origin") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("refuses a malformed key", func(t *testing.T) {
		s, vkey := newNoteKey(t, testOrigin)
		f := newFakeOps(t, newFakeLog(s, vkey))
		f.infoKey = "not a key"
		if _, err := newTestClient(t, f, t.TempDir(), ""); err == nil {
			t.Fatal("no error")
		}
	})
}

// TestTrustOnFirstUseOverPlainHTTPWarns: a key pinned on first use over
// plain http to a remote host could be a stranger's; say so.
func TestTrustOnFirstUseOverPlainHTTPWarns(t *testing.T) {
	for _, tc := range []struct {
		url  string
		warn bool
	}{
		{"http://ledger.example:7070", true},
		{"http://10.0.0.7", true},
		{"http://127.0.0.1:7070", false},
		{"http://localhost:7070", false},
		{"http://[::1]:7070", false},
		{"https://ledger.example", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			s, vkey := newNoteKey(t, testOrigin)
			f := newFakeOps(t, newFakeLog(s, vkey))
			f.grow(1)
			var logs bytes.Buffer
			cfg := Config{URL: tc.url, Home: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			u, err := parseLedgerURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := newClient(t.Context(), cfg.withDefaults(), u.String(), f); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), "pinned ledger key on first use") {
				t.Fatalf("no pin record: %s", logs.String())
			}
			if got := strings.Contains(logs.String(), "level=WARN"); got != tc.warn {
				t.Fatalf("warned %v, want %v: %s", got, tc.warn, logs.String())
			}
		})
	}
}

func TestKeyMismatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		// lie makes the ledger at f (pinned by the client) sign with another key.
		lie          func(t *testing.T, f *fakeOps)
		wantMismatch bool
	}{
		{"ledger now signs with a new key and announces it", func(t *testing.T, f *fakeOps) {
			s, vkey := newNoteKey(t, testOrigin)
			l := newFakeLog(s, vkey)
			l.add(f.log.leaves...)
			f.setLog(l)
		}, true},
		{"ledger signs with a new key and still announces the old one", func(t *testing.T, f *fakeOps) {
			s, _ := newNoteKey(t, testOrigin)
			l := newFakeLog(s, f.log.vkey)
			l.add(f.log.leaves...)
			f.setLog(l)
		}, true},
		{"checkpoint signed by a key of another name", func(t *testing.T, f *fakeOps) {
			s, _ := newNoteKey(t, "someone.else/log")
			f.checkpointHook = func([]byte) []byte {
				return signNote(t, s, testOrigin, f.log.size(), f.log.tree.Hash())
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c, home := pinnedClient(t, 5)
			stored := stateBytes(t, home, testOrigin)
			pinnedKey := c.VerifierKey()
			tc.lie(t, f)
			_, err := c.Latest(t.Context())
			if !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("err = %v, want ErrBadCheckpoint", err)
			}
			if got := errors.Is(err, ErrKeyMismatch); got != tc.wantMismatch {
				t.Fatalf("errors.Is(err, ErrKeyMismatch) = %v, want %v: %v", got, tc.wantMismatch, err)
			}
			if tc.wantMismatch && !strings.Contains(err.Error(), pinnedKey) {
				t.Fatalf("error does not name the pinned key: %v", err)
			}
			signer := newEntrySigner(t)
			if _, err := c.Submit(t.Context(), signEntry(t, signer, digestA, notarize.StatusTrusted, t0)); !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("submit: %v", err)
			}
			if _, err := c.Lookup(t.Context(), digestA); !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("lookup: %v", err)
			}
			if !bytes.Equal(stateBytes(t, home, testOrigin), stored) {
				t.Fatal("state changed")
			}
		})
	}

	t.Run("configured key wins over the pin", func(t *testing.T) {
		f, _, home := pinnedClient(t, 5)
		_, otherVkey := newNoteKey(t, testOrigin)
		// New makes no request when a key is configured; the state is kept
		// per (origin, key), so the ledger's checkpoint is what is refused,
		// and the state stored under the pinned key stays.
		stored := stateBytes(t, home, testOrigin)
		c := testClient(t, f, home, otherVkey)
		if _, err := c.Latest(t.Context()); !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), otherVkey) || !strings.Contains(err.Error(), f.log.vkey) {
			t.Fatalf("latest: %v", err)
		}
		if !bytes.Equal(stateBytes(t, home, testOrigin), stored) {
			t.Fatal("stored state changed")
		}
		c, err := newTestClient(t, f, t.TempDir(), otherVkey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Latest(t.Context()); !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), otherVkey) || !strings.Contains(err.Error(), f.log.vkey) {
			t.Fatalf("latest: %v", err)
		}
	})
}

func TestClientFork(t *testing.T) {
	type setup struct {
		f     *fakeOps
		other func(n int, sharedPrefix int) *fakeLog // a log with the same key and another history
	}
	for _, tc := range []struct {
		name string
		lie  func(t *testing.T, s setup)
		op   string // latest, submit or lookup
		// wantGot is the tree size of the checkpoint in the ForkError.
		wantGot  uint64
		rollback bool
	}{
		{"same size other root", func(t *testing.T, s setup) { s.f.setLog(s.other(10, 0)) }, "latest", 10, false},
		{"same size other last entry", func(t *testing.T, s setup) { s.f.setLog(s.other(10, 9)) }, "latest", 10, false},
		{"larger tree other history", func(t *testing.T, s setup) { s.f.setLog(s.other(300, 0)) }, "latest", 300, false},
		{"larger tree diverging after a shared prefix", func(t *testing.T, s setup) { s.f.setLog(s.other(40, 7)) }, "latest", 40, false},
		{"rollback", func(t *testing.T, s setup) { size := uint64(6); s.f.serveSize = &size }, "latest", 6, true},
		{"rollback to the empty tree", func(t *testing.T, s setup) { size := uint64(0); s.f.serveSize = &size }, "latest", 0, true},
		{"fork in a receipt", func(t *testing.T, s setup) { s.f.setLog(s.other(12, 4)) }, "submit", 13, false},
		{"fork in a lookup", func(t *testing.T, s setup) { s.f.setLog(s.other(12, 4)) }, "lookup", 12, false},
		{"rollback in a lookup", func(t *testing.T, s setup) { size := uint64(9); s.f.serveSize = &size }, "lookup", 9, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c, home := pinnedClient(t, 10)
			stored := stateBytes(t, home, testOrigin)
			other := func(n, shared int) *fakeLog {
				l := newFakeLog(f.log.signer, f.log.vkey)
				l.add(f.log.leaves[:shared]...)
				for i := shared; i < n; i++ {
					l.add(fmt.Appendf(nil, "forked leaf %d", i))
				}
				return l
			}
			tc.lie(t, setup{f: f, other: other})
			var err error
			switch tc.op {
			case "latest":
				_, err = c.Latest(t.Context())
			case "submit":
				_, err = c.Submit(t.Context(), signEntry(t, newEntrySigner(t), digestA, notarize.StatusTrusted, t0))
			case "lookup":
				_, err = c.Lookup(t.Context(), digestA)
			}
			var fe *ForkError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *ForkError", err)
			}
			if !bytes.Equal(fe.Stored.Raw, stored) || fe.Stored.Size != 10 || fe.Got.Size != tc.wantGot {
				t.Fatalf("fork error carries stored size %d, got size %d: %v", fe.Stored.Size, fe.Got.Size, fe)
			}
			if _, err := verifyCheckpoint(fe.Got.Raw, testOrigin, c.verifier); err != nil {
				t.Fatalf("Got is not the signed evidence: %v", err)
			}
			if errors.Is(err, errRollback) != tc.rollback {
				t.Fatalf("rollback = %v: %v", !tc.rollback, err)
			}
			if !strings.Contains(err.Error(), "SECURITY ERROR") {
				t.Fatalf("message: %v", err)
			}
			if !bytes.Equal(stateBytes(t, home, testOrigin), stored) {
				t.Fatal("stored state changed")
			}
			// It stays caught: the fork is not forgotten on the next call.
			if _, err := c.Latest(t.Context()); !errors.As(err, &fe) {
				t.Fatalf("second call: %v", err)
			}
		})
	}
}

func TestClientBadTiles(t *testing.T) {
	// Find the tiles an honest update from 100 to 1000 entries reads.
	f, c, home := pinnedClient(t, 100)
	stored := stateBytes(t, home, testOrigin)
	f.grow(900)
	type tileID struct {
		level, index uint64
	}
	used := map[tileID]bool{}
	f.tileHook = func(level, index uint64, p uint8, b []byte) []byte {
		used[tileID{level, index}] = true
		return b
	}
	// fresh returns a client whose home holds the checkpoint of size 100.
	fresh := func(t *testing.T) (*Client, string) {
		home := t.TempDir()
		if err := newStore(home).writeCheckpoint(c.VerifierKey(), stored); err != nil {
			t.Fatal(err)
		}
		return testClient(t, f, home, c.VerifierKey()), home
	}
	c0, _ := fresh(t)
	if _, err := c0.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(used) < 3 {
		t.Fatalf("only %d tiles read", len(used))
	}
	for bad := range used {
		for _, mode := range []string{"flip one bit in every hash", "truncate", "empty"} {
			t.Run(fmt.Sprintf("tile %d/%d %s", bad.level, bad.index, mode), func(t *testing.T) {
				f.tileHook = func(level, index uint64, p uint8, b []byte) []byte {
					if (tileID{level, index}) != bad {
						return b
					}
					b = bytes.Clone(b)
					switch mode {
					case "truncate":
						return b[:len(b)-1]
					case "empty":
						return nil
					}
					for i := 0; i < len(b); i += 32 {
						b[i+rand.IntN(32)] ^= 1 << rand.IntN(8)
					}
					return b
				}
				c, home := fresh(t)
				_, err := c.Latest(t.Context())
				var fe *ForkError
				if err == nil || mode == "flip one bit in every hash" && !errors.Is(err, ErrBadProof) && !errors.As(err, &fe) {
					t.Fatalf("err = %v", err)
				}
				if !bytes.Equal(stateBytes(t, home, testOrigin), stored) {
					t.Fatal("stored state changed")
				}
			})
		}
	}
	t.Run("every tile flipped", func(t *testing.T) {
		f.tileHook = func(_, _ uint64, _ uint8, b []byte) []byte {
			b = bytes.Clone(b)
			b[len(b)/2] ^= 0x40
			return b
		}
		if _, err := c.Latest(t.Context()); !errors.Is(err, ErrBadProof) {
			t.Fatalf("err = %v, want ErrBadProof", err)
		}
		if !bytes.Equal(stateBytes(t, home, testOrigin), stored) {
			t.Fatal("stored state changed")
		}
	})
}

func TestBadCheckpoint(t *testing.T) {
	s, vkey := newNoteKey(t, testOrigin)
	f := newFakeOps(t, newFakeLog(s, vkey))
	f.grow(3)
	root := f.log.tree.Hash()
	other, _ := newNoteKey(t, testOrigin)
	witness, _ := newNoteKey(t, "witness.test/w1")
	good := signNote(t, s, testOrigin, 3, root)
	for _, tc := range []struct {
		name     string
		raw      []byte
		ok       bool
		mismatch bool // an *errUnverifiedNote: well formed, not signed by the key
	}{
		{"good", good, true, false},
		{"cosigned by a witness", func() []byte {
			n, err := noteOpen(good, vkey)
			if err != nil {
				t.Fatal(err)
			}
			b, err := signWith(n, s, witness)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}(), true, false},
		{"empty tree", signNote(t, s, testOrigin, 0, hasher.EmptyRoot()), true, false},
		{"unsigned", []byte(testOrigin + "\n3\n" + testB64(root) + "\n"), false, false},
		{"signed by another key", signNote(t, other, testOrigin, 3, root), false, true},
		{"signature corrupted", append(good[:len(good)-6:len(good)-6], "AAAA=\n"...), false, false},
		{"body changed after signing", bytes.Replace(good, []byte("\n3\n"), []byte("\n4\n"), 1), false, false},
		{"other origin", signNote(t, s, "other.test/log", 3, root), false, false},
		{"short root hash", signNote(t, s, testOrigin, 3, root[:31]), false, false},
		{"empty tree with a root", signNote(t, s, testOrigin, 0, root), false, false},
		{"too large", append(bytes.Repeat([]byte("x"), MaxCheckpointSize), good...), false, false},
		{"garbage", []byte("\x00\xff"), false, false},
		{"empty", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := mustVerifier(t, vkey)
			cp, err := verifyCheckpoint(tc.raw, testOrigin, v)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(cp.Raw, tc.raw) || cp.Origin != testOrigin {
					t.Fatalf("checkpoint %+v", cp)
				}
				return
			}
			if !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("err = %v, want ErrBadCheckpoint", err)
			}
			var un *errUnverifiedNote
			if errors.As(err, &un) != tc.mismatch {
				t.Fatalf("unverified note = %v: %v", !tc.mismatch, err)
			}
			// The same checkpoint served by the ledger fails every call.
			f.checkpointHook = func([]byte) []byte { return tc.raw }
			c := testClient(t, f, t.TempDir(), vkey)
			if _, err := c.Latest(t.Context()); !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("latest: %v", err)
			}
			if _, err := c.Lookup(t.Context(), digestA); !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("lookup: %v", err)
			}
			f.checkpointHook = nil
		})
	}
}

func TestSubmitBadReceipt(t *testing.T) {
	signer := newEntrySigner(t)
	for _, tc := range []struct {
		name string
		lie  func(t *testing.T, f *fakeOps, r *api.Receipt)
		want error
	}{
		{"inclusion proof flipped", func(t *testing.T, f *fakeOps, r *api.Receipt) { r.InclusionProof[0][3] ^= 1 }, ErrBadProof},
		{"inclusion proof shortened", func(t *testing.T, f *fakeOps, r *api.Receipt) { r.InclusionProof = r.InclusionProof[1:] }, ErrBadProof},
		{"inclusion proof missing", func(t *testing.T, f *fakeOps, r *api.Receipt) { r.InclusionProof = nil }, ErrBadProof},
		{"wrong index", func(t *testing.T, f *fakeOps, r *api.Receipt) { r.Index-- }, ErrBadProof},
		{"index outside the tree", func(t *testing.T, f *fakeOps, r *api.Receipt) { r.Index += 100 }, ErrBadProof},
		{"receipt for another entry", func(t *testing.T, f *fakeOps, r *api.Receipt) {
			*r = f.log.receipt(t, 2, false) // entry 2 is a "leaf" of the fake
		}, ErrBadProof},
		{"receipt for another signed entry, genuinely in the log", func(t *testing.T, f *fakeOps, r *api.Receipt) {
			f.log.add(marshal(t, signEntry(t, signer, digestB, notarize.StatusTrusted, t0)))
			*r = f.log.receipt(t, f.log.size()-1, false)
		}, ErrBadProof},
		{"entry bytes changed", func(t *testing.T, f *fakeOps, r *api.Receipt) {
			r.Entry = bytes.Replace(r.Entry, []byte(`"publicKey"`), []byte(` "publicKey"`), 1)
		}, ErrBadProof},
		{"checkpoint unsigned", func(t *testing.T, f *fakeOps, r *api.Receipt) {
			r.Checkpoint = r.Checkpoint[:strings.Index(r.Checkpoint, "\n\n")+1]
		}, ErrBadCheckpoint},
		{"no checkpoint", func(t *testing.T, f *fakeOps, r *api.Receipt) { r.Checkpoint = "" }, ErrBadProof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c, home := pinnedClient(t, 5)
			f.receiptHook = func(r *api.Receipt) { tc.lie(t, f, r) }
			_, err := c.Submit(t.Context(), signEntry(t, signer, digestA, notarize.StatusTrusted, t0))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			_ = home
		})
	}

	t.Run("tampered envelope is not sent", func(t *testing.T) {
		f, c, _ := pinnedClient(t, 5)
		e := signEntry(t, signer, digestA, notarize.StatusTrusted, t0)
		e.Envelope.Signatures = append(e.Envelope.Signatures[:0:0], e.Envelope.Signatures...)
		sig := []byte(e.Envelope.Signatures[0].Sig)
		sig[10] ^= 1
		e.Envelope.Signatures[0].Sig = string(sig)
		f.submitErr = errors.New("sent")
		if _, err := c.Submit(t.Context(), e); !errors.Is(err, notarize.ErrBadSignature) {
			t.Fatalf("err = %v, want a bad signature", err)
		}
	})

	t.Run("refusal", func(t *testing.T) {
		f, c, _ := pinnedClient(t, 1)
		f.submitErr = &APIError{StatusCode: 400, Code: api.CodeBadSignature, Message: "no"}
		_, err := c.Submit(t.Context(), signEntry(t, signer, digestA, notarize.StatusTrusted, t0))
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != api.CodeBadSignature {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLookupLies(t *testing.T) {
	signer := newEntrySigner(t)
	for _, tc := range []struct {
		name string
		lie  func(t *testing.T, f *fakeOps, r *api.LookupResponse)
		want error
	}{
		{"inclusion proof flipped", func(t *testing.T, f *fakeOps, r *api.LookupResponse) { r.Entries[1].InclusionProof[1][0] ^= 0x80 }, ErrBadProof},
		{"wrong index", func(t *testing.T, f *fakeOps, r *api.LookupResponse) { r.Entries[0].Index++ }, ErrBadProof},
		{"entry bytes changed", func(t *testing.T, f *fakeOps, r *api.LookupResponse) {
			r.Entries[0].Entry = append(r.Entries[0].Entry, ' ')
		}, ErrBadProof},
		{"entry about another digest", func(t *testing.T, f *fakeOps, r *api.LookupResponse) {
			// Entry 4 is genuinely in the log, and proven, but about digest B.
			p, err := f.log.tree.InclusionProof(4, f.log.size())
			if err != nil {
				t.Fatal(err)
			}
			r.Entries = []api.LookupEntry{r.Entries[0], {Index: 4, Entry: f.log.leaves[4], InclusionProof: p}, r.Entries[1]}
		}, ErrBadProof},
		{"answer about another digest", func(t *testing.T, f *fakeOps, r *api.LookupResponse) { r.Digest = digestB.String() }, ErrBadProof},
		{"entry listed twice", func(t *testing.T, f *fakeOps, r *api.LookupResponse) { r.Entries = append(r.Entries, r.Entries[0]) }, ErrBadProof},
		{"tampered envelope in the log", func(t *testing.T, f *fakeOps, r *api.LookupResponse) {
			e, err := notarize.ParseEntry(f.log.leaves[4])
			if err != nil {
				t.Fatal(err)
			}
			e.Envelope.Payload = e.Envelope.Payload[:len(e.Envelope.Payload)-4] + "AAA="
			b := marshal(t, e)
			// A lying log that holds the tampered entry and proves it.
			l := newFakeLog(f.log.signer, f.log.vkey)
			l.add(f.log.leaves...)
			l.add(b)
			f.log = l
			p, err := l.tree.InclusionProof(l.size()-1, l.size())
			if err != nil {
				t.Fatal(err)
			}
			r.Checkpoint = string(l.checkpointAt(t, l.size()))
			r.Entries = append(r.Entries, api.LookupEntry{Index: l.size() - 1, Entry: b, InclusionProof: p})
			for i := range r.Entries {
				if r.Entries[i].InclusionProof, err = l.tree.InclusionProof(r.Entries[i].Index, l.size()); err != nil {
					t.Fatal(err)
				}
			}
		}, notarize.ErrBadSignature},
		{"entry not an entry", func(t *testing.T, f *fakeOps, r *api.LookupResponse) {
			p, err := f.log.tree.InclusionProof(0, f.log.size())
			if err != nil {
				t.Fatal(err)
			}
			// In log order, so that only the entry itself is wrong.
			r.Entries = append([]api.LookupEntry{{Index: 0, Entry: f.log.leaves[0], InclusionProof: p}}, r.Entries...)
		}, notarize.ErrBadEntry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c, _ := pinnedClient(t, 3)
			for _, d := range []notarize.Digest{digestA, digestB, digestA} {
				if _, err := c.Submit(t.Context(), signEntry(t, signer, d, notarize.StatusTrusted, t0)); err != nil {
					t.Fatal(err)
				}
			}
			f.lookupHook = func(r *api.LookupResponse) { tc.lie(t, f, r) }
			res, err := c.Lookup(t.Context(), digestA)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if res != nil {
				t.Fatalf("a result with an error: %+v", res)
			}
		})
	}
}

func TestStaleCheckpointFromAnotherClient(t *testing.T) {
	// Client A read the state at 5 and fetched 6, while client B stored 8.
	f, a, home := pinnedClient(t, 5)
	before, err := a.stored()
	if err != nil {
		t.Fatal(err)
	}
	f.grow(1)
	got, err := a.fetchCheckpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.grow(2)
	b := testClient(t, f, home, "")
	if _, err := b.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}
	at8 := stateBytes(t, home, testOrigin)
	if err := a.advance(t.Context(), got, before); err != nil {
		t.Fatalf("stale but consistent: %v", err)
	}
	if !bytes.Equal(stateBytes(t, home, testOrigin), at8) {
		t.Fatal("state moved backwards")
	}
	// A stale checkpoint from another history is still a fork.
	l := newFakeLog(f.log.signer, f.log.vkey)
	l.add(f.log.leaves[:5]...)
	l.add([]byte("forked"))
	forked, err := verifyCheckpoint(l.checkpointAt(t, 6), testOrigin, a.verifier)
	if err != nil {
		t.Fatal(err)
	}
	var fe *ForkError
	if err := a.advance(t.Context(), forked, before); !errors.As(err, &fe) || fe.Stored.Size != 8 || fe.Got.Size != 6 {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(stateBytes(t, home, testOrigin), at8) {
		t.Fatal("state changed")
	}
}

func TestConcurrentClientsNeverMoveBackwards(t *testing.T) {
	f, _, home := pinnedClient(t, 1)
	const clients, rounds = 4, 25
	var wg sync.WaitGroup
	errc := make(chan error, clients*rounds)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var sizes []uint64
	watchDone := make(chan struct{})
	go func() { // watch the state file as another process would
		defer close(watchDone)
		v := mustVerifier(t, f.log.vkey)
		for ctx.Err() == nil {
			if raw := stateBytes(t, home, testOrigin); raw != nil {
				cp, err := verifyCheckpoint(raw, testOrigin, v)
				if err != nil {
					errc <- fmt.Errorf("state file: %w", err)
					return
				}
				sizes = append(sizes, cp.Size)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for i := range clients {
		c := testClient(t, f, home, "") // one client per "process", all sharing home
		wg.Go(func() {
			for r := range rounds {
				if (r+i)%3 == 0 {
					f.grow(1 + rand.IntN(300))
				}
				if _, err := c.Latest(ctx); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	cancel()
	<-watchDone
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] < sizes[i-1] {
			t.Fatalf("state moved backwards from %d to %d", sizes[i-1], sizes[i])
		}
	}
	if len(sizes) == 0 {
		t.Fatal("watcher saw nothing")
	}
}

func TestSubmitReceiptWithOlderCheckpoint(t *testing.T) {
	f, c, home := pinnedClient(t, 5)
	e := signEntry(t, newEntrySigner(t), digestA, notarize.StatusTrusted, t0)
	first, err := c.Submit(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	f.grow(4)
	if _, err := c.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}
	stored := stateBytes(t, home, testOrigin)
	// receiptAt makes the receipt for entry 5 carry the checkpoint of size 6 of l.
	receiptAt := func(l *fakeLog) func(*api.Receipt) {
		return func(r *api.Receipt) {
			p, err := l.tree.InclusionProof(5, 6)
			if err != nil {
				t.Fatal(err)
			}
			*r = api.Receipt{Index: 5, Duplicate: true, Entry: l.leaves[5], Checkpoint: string(l.checkpointAt(t, 6)), InclusionProof: p}
		}
	}
	f.receiptHook = receiptAt(f.log)
	res, err := c.Submit(t.Context(), e)
	if err != nil {
		t.Fatalf("older but consistent checkpoint: %v", err)
	}
	if res.Index != first.Index || res.Checkpoint.Size != 6 || !bytes.Equal(stateBytes(t, home, testOrigin), stored) {
		t.Fatalf("result %+v; state moved", res)
	}
	forked := newFakeLog(f.log.signer, f.log.vkey)
	forked.add([]byte("x"))
	forked.add(f.log.leaves[1:]...)
	f.receiptHook = receiptAt(forked)
	var fe *ForkError
	if _, err := c.Submit(t.Context(), e); !errors.As(err, &fe) || fe.Got.Size != 6 || fe.Stored.Size != 10 {
		t.Fatalf("older checkpoint of another history: %v", err)
	}
	if !bytes.Equal(stateBytes(t, home, testOrigin), stored) {
		t.Fatal("state changed")
	}
}

// TestLookupByKeyIDs: a verifier asks only for the signers it accepts; the
// answer holds only their entries, and an entry by any other key in the
// answer is a lie.
func TestLookupByKeyIDs(t *testing.T) {
	f, c, _ := pinnedClient(t, 3)
	alice, mallory := newEntrySigner(t), newEntrySigner(t)
	keyID := func(s signature.SignerVerifier) string {
		pub, err := s.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		id, err := notarize.KeyID(pub)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if _, err := c.Submit(t.Context(), signEntry(t, alice, digestA, notarize.StatusTrusted, t0)); err != nil {
		t.Fatal(err)
	}
	var malloryIdx []uint64
	for i := range 5 {
		r, err := c.Submit(t.Context(), signEntry(t, mallory, digestA, notarize.StatusUntrusted, t0.Add(time.Duration(i)*time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		malloryIdx = append(malloryIdx, r.Index)
	}
	all, err := c.Lookup(t.Context(), digestA)
	if err != nil || len(all.Records) != 6 {
		t.Fatalf("lookup without key IDs: %v, %d records, want 6", err, len(all.Records))
	}
	res, err := c.Lookup(t.Context(), digestA, keyID(alice))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 1 || res.Records[0].KeyID != keyID(alice) {
		t.Fatalf("lookup by alice's key: %+v", res.Records)
	}

	f.lookupHook = func(r *api.LookupResponse) {
		// The ledger slips in mallory's entries although only alice's were asked for.
		for _, i := range malloryIdx {
			p, err := f.log.tree.InclusionProof(i, f.log.size())
			if err != nil {
				t.Fatal(err)
			}
			r.Entries = append(r.Entries, api.LookupEntry{Index: i, Entry: f.log.leaves[i], InclusionProof: p})
		}
	}
	if _, err := c.Lookup(t.Context(), digestA, keyID(alice)); !errors.Is(err, ErrBadProof) {
		t.Fatalf("entries by keys not asked for: err = %v, want ErrBadProof", err)
	}
	f.lookupHook = nil
	if _, err := c.Lookup(t.Context(), digestA, make([]string, api.MaxLookupKeyIDs+1)...); err == nil {
		t.Fatal("a lookup naming too many key IDs was sent")
	}
}
