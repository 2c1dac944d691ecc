package ledger

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// TestReceiptCheckpoint: a receipt is proved against the newest checkpoint
// the ledger has checked when that covers the entry and is no older than
// the one its append was answered with, and never against an older one, an
// unchecked one, or one that does not cover the entry.
func TestReceiptCheckpoint(t *testing.T) {
	l := startLedger(t, Config{})
	s := newTestSigner(t)
	ctx := t.Context()
	ra, err := l.Submit(ctx, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := l.Submit(ctx, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	cpa, err := l.parseCheckpoint([]byte(ra.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	cpb, err := l.parseCheckpoint([]byte(rb.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	if cpb.Size <= cpa.Size || rb.Index < cpa.Size {
		t.Fatalf("want the second entry outside the first receipt's checkpoint: sizes %d, %d, index %d", cpa.Size, cpb.Size, rb.Index)
	}

	// The newest checked checkpoint (b's) answers for a's entry.
	l.lastCP.Store(&parsedCheckpoint{raw: []byte(rb.Checkpoint), cp: cpb})
	cp, raw, err := l.receiptCheckpoint([]byte(ra.Checkpoint), ra.Index)
	if err != nil || cp.Size != cpb.Size || !bytes.Equal(raw, []byte(rb.Checkpoint)) {
		t.Fatalf("receiptCheckpoint(a) with b newest = size %v, %v; want b's size %d", sizeOf(cp), err, cpb.Size)
	}
	// An older checkpoint, although checked, never replaces a newer one;
	// one that does not cover the entry is never used.
	l.lastCP.Store(&parsedCheckpoint{raw: []byte(ra.Checkpoint), cp: cpa})
	cp, raw, err = l.receiptCheckpoint([]byte(rb.Checkpoint), rb.Index)
	if err != nil || cp.Size != cpb.Size || !bytes.Equal(raw, []byte(rb.Checkpoint)) {
		t.Fatalf("receiptCheckpoint(b) with a newest = size %v, %v; want b's own, size %d", sizeOf(cp), err, cpb.Size)
	}
	l.lastCP.Store(&parsedCheckpoint{raw: []byte(ra.Checkpoint), cp: cpa})
	cp, _, err = l.receiptCheckpoint([]byte(rb.Checkpoint), ra.Index)
	if err != nil || cp.Size != cpb.Size {
		t.Fatalf("receiptCheckpoint(a's entry, b's checkpoint) with a newest = size %v, %v; want b's, size %d", sizeOf(cp), err, cpb.Size)
	}
	// A checkpoint that does not verify is refused, however large it says
	// it is and whatever the ledger holds.
	forged := bytes.Replace([]byte(rb.Checkpoint), []byte("\n"+itoa(cpb.Size)+"\n"), []byte("\n"+itoa(cpb.Size+1000)+"\n"), 1)
	l.lastCP.Store(&parsedCheckpoint{raw: []byte(ra.Checkpoint), cp: cpa})
	if _, _, err := l.receiptCheckpoint(forged, rb.Index); err == nil {
		t.Fatal("receiptCheckpoint accepted a checkpoint whose signature does not verify")
	}
	// A checked checkpoint that does not cover the entry is refused.
	l.lastCP.Store(&parsedCheckpoint{raw: []byte(ra.Checkpoint), cp: cpa})
	if _, _, err := l.receiptCheckpoint([]byte(ra.Checkpoint), rb.Index); err == nil {
		t.Fatalf("receiptCheckpoint gave a checkpoint of size %d for entry %d", cpa.Size, rb.Index)
	}

	// Through Submit: a replay of a's statement after b is proved against
	// b's checkpoint (the newest), and the proof verifies.
	l.lastCP.Store(&parsedCheckpoint{raw: []byte(rb.Checkpoint), cp: cpb})
	e, err := notarize.ParseEntry(ra.Entry)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := l.Submit(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	cpr, err := l.parseCheckpoint([]byte(rr.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	if cpr.Size < cpb.Size || cpr.Size <= rr.Index {
		t.Fatalf("replay receipt: checkpoint size %d, index %d; want at least %d", cpr.Size, rr.Index, cpb.Size)
	}
	h := rfc6962.DefaultHasher
	if err := proof.VerifyInclusion(h, rr.Index, cpr.Size, h.HashLeaf(rr.Entry), rr.InclusionProof, cpr.Hash); err != nil {
		t.Fatalf("replay receipt's proof: %v", err)
	}
}

func sizeOf(cp *log.Checkpoint) any {
	if cp == nil {
		return nil
	}
	return cp.Size
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
