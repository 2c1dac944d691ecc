package ledgerclient

import (
	"encoding/base64"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func testB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mustVerifier(t testing.TB, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func noteOpen(b []byte, vkey string) (*note.Note, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return note.Open(b, note.VerifierList(v))
}

func signWith(n *note.Note, signers ...note.Signer) ([]byte, error) {
	return note.Sign(n, signers...)
}
