package ledgerclient

import (
	"errors"
	"os"
	"testing"
)

func TestPinUnpin(t *testing.T) {
	_, c, home := pinnedClient(t, 3)
	url := "https://ledger.test"
	_, other := newNoteKey(t, testOrigin)

	// Another key is not pinned over the first without replace.
	var pe *PinConflictError
	if _, err := Pin(t.Context(), home, url, other, false); !errors.As(err, &pe) || pe.Pinned != c.VerifierKey() || pe.Key != other {
		t.Fatalf("pin over a pin: %v", err)
	}
	if _, err := Pin(t.Context(), home, url+"/", c.VerifierKey(), false); err != nil {
		t.Fatalf("the same key again (URL spelled another way): %v", err)
	}
	for _, bad := range []struct{ url, key string }{{"ftp://x", other}, {url, "not a key"}} {
		if _, err := Pin(t.Context(), home, bad.url, bad.key, true); err == nil {
			t.Fatalf("Pin(%q, %q): no error", bad.url, bad.key)
		}
	}
	pins, err := ListPins(home)
	if err != nil || len(pins) != 1 || pins[0].Checkpoint == nil || pins[0].Checkpoint.Size != 3 || pins[0].Origin != testOrigin {
		t.Fatalf("ListPins: %+v %v", pins, err)
	}
	statePath := pins[0].Checkpoint.Path

	// The same key pinned for a second URL: purge keeps the shared state.
	if _, err := Pin(t.Context(), home, "https://mirror.test", c.VerifierKey(), false); err != nil {
		t.Fatal(err)
	}
	if _, purged, err := Unpin(t.Context(), home, "https://mirror.test", true); err != nil || len(purged) != 0 {
		t.Fatalf("purge of a shared key's state: %v %v", purged, err)
	}
	if prev, err := Pin(t.Context(), home, url, other, true); err != nil || prev != c.VerifierKey() {
		t.Fatalf("replace: %q %v", prev, err)
	}
	if _, err := os.Stat(statePath); err != nil {
		t.Fatalf("replacing the pin removed the old key's state: %v", err)
	}
	if _, _, err := Unpin(t.Context(), home, "https://nope.test", false); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("unpin of an unknown URL: %v", err)
	}
	if _, err := Pin(t.Context(), home, url, c.VerifierKey(), true); err != nil {
		t.Fatal(err)
	}
	if p, purged, err := Unpin(t.Context(), home, url, true); err != nil || len(purged) != 1 || p.VerifierKey != c.VerifierKey() {
		t.Fatalf("purge: %+v %v %v", p, purged, err)
	}
	if _, err := os.Stat(statePath); !os.IsNotExist(err) {
		t.Fatalf("purged state still there: %v", err)
	}
}
