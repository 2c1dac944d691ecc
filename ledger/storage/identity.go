package storage

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// Identity is the log's checkpoint signing identity: a sumdb/note Ed25519
// key whose name is the log's origin.
type Identity struct {
	Signer   note.Signer
	Verifier note.Verifier
	// VerifierKey is the verifier key string, the one clients pin.
	VerifierKey string
}

// Origin returns the checkpoint origin, the log's name.
func (id *Identity) Origin() string { return id.Signer.Name() }

// NewIdentity opens the note signer key skey and checks that its name is
// origin (when origin is not empty): ErrIdentityMismatch otherwise.
func NewIdentity(skey, origin string) (*Identity, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("note signer key: %w", err)
	}
	if origin != "" && origin != signer.Name() {
		return nil, fmt.Errorf("%w: configured origin %q, but the note key is named %q", ErrIdentityMismatch, origin, signer.Name())
	}
	vkey, err := verifierKeyOf(skey)
	if err != nil {
		return nil, err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("note verifier key: %w", err)
	}
	if verifier.KeyHash() != signer.KeyHash() {
		return nil, errors.New("note signer key: key hash does not match the key")
	}
	return &Identity{Signer: signer, Verifier: verifier, VerifierKey: vkey}, nil
}

// CheckCheckpoint reports ErrIdentityMismatch unless the log's published
// checkpoint cp (read from where) verifies under this identity: a log
// signed by another key or under another origin would hand clients a
// checkpoint they cannot chain to.
func (id *Identity) CheckCheckpoint(cp []byte, where string) error {
	if _, _, _, err := log.ParseCheckpoint(cp, id.Origin(), id.Verifier); err != nil {
		return fmt.Errorf("%w: the existing checkpoint %s does not verify under key %q: %v", ErrIdentityMismatch, where, id.VerifierKey, err)
	}
	return nil
}

// ValidOrigin reports whether s can be a signed-note key name and so a
// checkpoint origin: non-empty UTF-8 with no Unicode space and no '+'.
func ValidOrigin(s string) bool {
	return s != "" && utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsSpace) < 0 && !strings.Contains(s, "+")
}

// verifierKeyOf derives the verifier key string from an Ed25519 note signer
// key "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>".
func verifierKeyOf(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5) // base64 key data may hold "+"
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("note signer key: malformed")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("note signer key: not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(parts[2], pub)
	if err != nil {
		return "", fmt.Errorf("note verifier key: %w", err)
	}
	return vkey, nil
}

// GenerateSignerKey generates a note signer key named origin or, when
// origin is empty, named after its own public key
// ("<hostname>/notarize-ledger/<first 8 hex digits of the SHA-256 of the
// key>"): every ledger started without an origin gets one of its own, so
// that a reset or a second ledger on the same host is a different log to
// its clients, not the same log under another key.
func GenerateSignerKey(origin string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate note key: %w", err)
	}
	if origin == "" {
		origin = defaultOrigin(pub)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return "", fmt.Errorf("generate note key: %w", err)
	}
	// vkey is "<name>+<hash>+<key>": the signer key shares its name and hash.
	parts := strings.SplitN(vkey, "+", 3) // base64 key data may hold "+"
	if len(parts) != 3 {
		return "", fmt.Errorf("generate note key: unexpected verifier key %q", vkey)
	}
	seed := append([]byte{1}, priv.Seed()...) // 1: the Ed25519 algorithm
	return "PRIVATE+KEY+" + origin + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(seed), nil
}

// defaultOrigin is the origin of a key generated without one, with
// "localhost" when the host name is unknown or not usable in an origin.
func defaultOrigin(pub ed25519.PublicKey) string {
	h, err := os.Hostname()
	if err != nil || !ValidOrigin(h) || strings.Contains(h, "/") {
		h = "localhost"
	}
	sum := sha256.Sum256(pub)
	return h + "/notarize-ledger/" + hex.EncodeToString(sum[:4])
}
