package ledgerclient

import (
	"testing"
	"time"
)

// TestCosignatures: per witness of the policy, the time of its verified
// cosignature, nothing for a missing one, and Forged for a line under its
// key that does not verify — which is never reported as a cosignature.
func TestCosignatures(t *testing.T) {
	ws, p := threeWitnesses(t)
	s, vkey := newNoteKey(t, testOrigin)
	l := newFakeLog(s, vkey)
	l.add([]byte("leaf"))
	t1 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	raw := ws[0].Cosign(l.checkpointAt(t, 1), t1)
	raw = ws[1].Forge(raw, t1)
	got := p.Cosignatures(raw)
	if len(got) != 3 {
		t.Fatalf("%d witnesses reported, want 3", len(got))
	}
	if got[0].Name != "w1 (witness1.test)" || !got[0].CosignedAt.Equal(t1) || got[0].Forged {
		t.Errorf("w1: %+v, want cosigned at %s", got[0], t1)
	}
	if !got[1].CosignedAt.IsZero() || !got[1].Forged {
		t.Errorf("w2: %+v, want a forged line and no cosignature", got[1])
	}
	if !got[2].CosignedAt.IsZero() || got[2].Forged {
		t.Errorf("w3: %+v, want missing", got[2])
	}
	if n, of := p.Quorum(); n != 2 || of != 3 {
		t.Errorf("quorum %d of %d, want 2 of 3", n, of)
	}
}
