package ledgerclient

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/internal/witnesstest"
)

// forgetAccepted empties the process's memory of accepted signatures.
func forgetAccepted() {
	accepted.mu.Lock()
	accepted.sigs = nil
	accepted.mu.Unlock()
}

// countingVerifier counts the checks that reach the real verifier.
type countingVerifier struct {
	note.Verifier
	calls int
}

func (c *countingVerifier) Verify(msg, sig []byte) bool {
	c.calls++
	return c.Verifier.Verify(msg, sig)
}

func newSignedNote(t *testing.T, s note.Signer, text string) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMemoVerifierRemembersOnlyAcceptances: a note checked again is not
// verified again; a forged signature is refused every time, also on the
// text of a note it remembers, and the same signature on another text is
// checked again.
func TestMemoVerifierRemembersOnlyAcceptances(t *testing.T) {
	s, vkey := newNoteKey(t, "example.com/memo")
	inner := &countingVerifier{Verifier: mustVerifier(t, vkey)}
	m := newMemoVerifier(inner, noteVerifier+vkey)
	good := newSignedNote(t, s, "example.com/memo\n1\nAAAA\n")
	for i := range 3 {
		if _, err := note.Open(good, note.VerifierList(m)); err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	if inner.calls != 1 {
		t.Fatalf("the same note was verified %d times, want once", inner.calls)
	}

	// The remembered note's text with a byte of its signature changed
	// (a base64 character well inside it, not the padding's spare bits).
	forged := bytes.Clone(good)
	i := len(forged) - 20
	if forged[i] == 'A' {
		forged[i] = 'B'
	} else {
		forged[i] = 'A'
	}
	for i := range 2 {
		if _, err := note.Open(forged, note.VerifierList(m)); err == nil {
			t.Fatalf("a forged signature was accepted (attempt %d)", i)
		}
	}
	// Another text under the remembered signature.
	other := bytes.Replace(good, []byte("\n1\n"), []byte("\n2\n"), 1)
	if _, err := note.Open(other, note.VerifierList(m)); err == nil {
		t.Fatal("a remembered signature was accepted on another text")
	}
	if inner.calls != 4 {
		t.Fatalf("the refusals reached the real verifier %d times, want 3 (after 1)", inner.calls-1)
	}
}

// acceptOnly accepts exactly one (msg, sig) pair.
type acceptOnly struct {
	note.Verifier
	msg, sig []byte
}

func (a acceptOnly) Verify(msg, sig []byte) bool {
	return bytes.Equal(msg, a.msg) && bytes.Equal(sig, a.sig)
}

// TestMemoVerifierKeysAreUnambiguous: a remembered (msg, sig) must not
// answer for another pair whose bytes run together the same way.
func TestMemoVerifierKeysAreUnambiguous(t *testing.T) {
	m := newMemoVerifier(acceptOnly{msg: []byte("BCD"), sig: []byte("A")}, "unambiguous")
	if !m.Verify([]byte("BCD"), []byte("A")) {
		t.Fatal("the accepted pair was refused")
	}
	if m.Verify([]byte("CD"), []byte("AB")) {
		t.Fatal(`("CD", "AB") was accepted as the remembered ("BCD", "A")`)
	}
	// What one key accepted is not what another key accepts: the memory is
	// the process's, shared by every client.
	other := newMemoVerifier(acceptOnly{}, "another key")
	if other.Verify([]byte("BCD"), []byte("A")) {
		t.Fatal("a pair remembered for one key was accepted for another")
	}
	prefix := newMemoVerifier(acceptOnly{}, "unambiguou")
	if prefix.Verify([]byte("BCD"), []byte("sA")) {
		t.Fatal("a pair remembered for one key was accepted for a key that is its prefix")
	}
}

// TestMemoVerifierIsBounded: however many notes a long-lived client sees,
// it remembers at most maxRememberedSigs of them.
func TestMemoVerifierIsBounded(t *testing.T) {
	s, vkey := newNoteKey(t, "example.com/memo")
	m := newMemoVerifier(mustVerifier(t, vkey), noteVerifier+vkey)
	for i := range 3 * maxRememberedSigs {
		n := newSignedNote(t, s, fmt.Sprintf("example.com/memo\n%d\nAAAA\n", i))
		if _, err := note.Open(n, note.VerifierList(m)); err != nil {
			t.Fatal(err)
		}
		accepted.mu.Lock()
		held := len(accepted.sigs)
		accepted.mu.Unlock()
		if held > maxRememberedSigs {
			t.Fatalf("%d signatures remembered, at most %d", held, maxRememberedSigs)
		}
	}
}

// TestWitnessMemoRemembersOnlyAcceptances: every cosignature check of a
// policy, Tessera's quorum included, goes through the memory, and a
// witness's cosignature remembered for one checkpoint does not count for
// another: a quorum of two with one cosignature moved from an earlier
// checkpoint is refused, with the moved one named as forged.
func TestWitnessMemoRemembersOnlyAcceptances(t *testing.T) {
	w1, w2, w3 := witnesstest.Three(t)
	p, err := ParseWitnessPolicy(witnesstest.Policy(2, w1, w2, w3))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.group.Components {
		w, ok := c.(tessera.Witness)
		if !ok {
			t.Fatalf("component %T, want a witness", c)
		}
		if _, ok := w.Key.(*memoVerifier); !ok {
			t.Errorf("Tessera's quorum checks %s without the memory", w.Key.Name())
		}
	}
	for _, w := range p.witnesses {
		if _, ok := w.key.(*memoVerifier); !ok {
			t.Errorf("the client checks %s without the memory", w.name())
		}
	}

	s, vkey := newNoteKey(t, testOrigin)
	l := newFakeLog(s, vkey)
	l.add([]byte("leaf 0"))
	now := time.Now()
	first := w2.Cosign(w1.Cosign(l.checkpointAt(t, 1), now), now)
	for range 2 {
		if _, err := p.Witnessed(Checkpoint{Raw: first}); err != nil {
			t.Fatalf("the quorum of the first checkpoint: %v", err)
		}
	}
	l.add([]byte("leaf 1"))
	second := w1.Cosign(l.checkpointAt(t, 2), now)
	i := bytes.Index(first, []byte("— witness2.test "))
	j := bytes.IndexByte(first[i:], '\n')
	moved := append(bytes.Clone(second), first[i:i+j+1]...)
	_, err = p.Witnessed(Checkpoint{Raw: moved})
	qe, ok := errors.AsType[*WitnessQuorumError](err)
	if !ok {
		t.Fatalf("a quorum with w2's cosignature of another checkpoint: %v, want a WitnessQuorumError", err)
	}
	if !slices.Equal(qe.Forged, []string{"w2 (witness2.test)"}) {
		t.Fatalf("forged %q, want w2", qe.Forged)
	}
}

// TestWitnessMemoWrapsOnce: every witness of a nested quorum, at every
// depth, is checked through the memory, and wrapped once. (A group reached
// along two paths, which Tessera's copies share, is refused now:
// TestParseWitnessPolicy.)
func TestWitnessMemoWrapsOnce(t *testing.T) {
	w1, w2, w3 := witnesstest.Three(t)
	var policy bytes.Buffer
	for _, w := range []*witnesstest.Witness{w1, w2, w3} {
		fmt.Fprintf(&policy, "witness %s %s https://%s.test/\n", w.Label, w.VKey, w.Label)
	}
	policy.WriteString("group g1 1 w1 w2\ngroup q 2 g1 w3\nquorum q\n")
	p, err := ParseWitnessPolicy(policy.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	wrapped := 0
	var walk func(c any)
	walk = func(c any) {
		switch c := c.(type) {
		case tessera.Witness:
			m, ok := c.Key.(*memoVerifier)
			if !ok {
				t.Errorf("%s is not wrapped", c.Key.Name())
			} else if _, twice := m.Verifier.(*memoVerifier); twice {
				t.Errorf("%s is wrapped twice", c.Key.Name())
			}
			wrapped++
		case tessera.WitnessGroup:
			for _, m := range c.Components {
				walk(m)
			}
		}
	}
	walk(p.group)
	if wrapped != 3 {
		t.Errorf("%d witnesses in the quorum, want 3", wrapped)
	}
}
