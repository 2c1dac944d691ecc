package ledgerclient

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// toLegacy moves the keyed state of vkey to where earlier versions kept it
// (per origin only) and returns its content.
func toLegacy(t *testing.T, home, vkey string) []byte {
	t.Helper()
	s := newStore(home)
	raw, err := os.ReadFile(s.checkpointPath(vkey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Dir(s.checkpointPath(vkey))); err != nil {
		t.Fatal(err)
	}
	legacy := s.legacyPath(keyOrigin(vkey))
	if err := os.MkdirAll(filepath.Dir(legacy), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(legacy, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestLegacyStateMigratesOnlyUnderItsKey: a state stored per origin by an
// earlier version is taken over by the key that signed it (keeping the
// rollback protection it gives) and by no other key.
func TestLegacyStateMigratesOnlyUnderItsKey(t *testing.T) {
	t.Run("same key: moved", func(t *testing.T) {
		f, c, home := pinnedClient(t, 3)
		raw := toLegacy(t, home, c.VerifierKey())
		c2 := testClient(t, f, home, "")
		if b, err := c2.store.readCheckpoint(c2.vkey); err != nil || !bytes.Equal(b, raw) {
			t.Fatalf("migrated state %q, %v", b, err)
		}
		if _, err := os.Stat(newStore(home).legacyPath(testOrigin)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("legacy state left behind: %v", err)
		}
		if _, err := c2.Latest(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("other key: left alone, first use refused, explicit key works", func(t *testing.T) {
		_, c, home := pinnedClient(t, 3)
		raw := toLegacy(t, home, c.VerifierKey())
		if err := os.Remove(filepath.Join(home, "ledgers", "pins.json")); err != nil {
			t.Fatal(err)
		}
		s, vkey := newNoteKey(t, testOrigin) // the same origin, another key
		g := newFakeOps(t, newFakeLog(s, vkey))
		g.grow(2)
		if _, err := newTestClient(t, g, home, ""); !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("first use of another key for a known origin: %v, want ErrKeyMismatch", err)
		}
		legacy := newStore(home).legacyPath(testOrigin)
		if b, err := os.ReadFile(legacy); err != nil || !bytes.Equal(b, raw) {
			t.Fatalf("legacy state changed: %q %v", b, err)
		}
		c2 := testClient(t, g, home, vkey) // the user trusted the new key
		if _, err := c2.Latest(t.Context()); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(legacy); err != nil || !bytes.Equal(b, raw) {
			t.Fatalf("legacy state changed: %q %v", b, err)
		}
	})
}

// TestStateKeyedByOriginAndKey: two keys of one origin keep two states; a
// rollback of one is still caught after the other was used.
func TestStateKeyedByOriginAndKey(t *testing.T) {
	f, c, home := pinnedClient(t, 5)
	s, vkey := newNoteKey(t, testOrigin)
	g := newFakeOps(t, newFakeLog(s, vkey))
	g.grow(2)
	c2 := testClient(t, g, home, vkey)
	if _, err := c2.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := newStore(home)
	if st.checkpointPath(vkey) == st.checkpointPath(c.VerifierKey()) {
		t.Fatal("two keys share a state path")
	}
	// The first log rolled back to 3 entries: still refused.
	h := newFakeOps(t, newFakeLog(f.log.signer, f.log.vkey))
	h.grow(3)
	var fe *ForkError
	if _, err := testClient(t, h, home, c.VerifierKey()).Latest(t.Context()); !errors.As(err, &fe) {
		t.Fatalf("rollback after another key was used: %v, want *ForkError", err)
	}
}
