package notarize

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Digest is a content digest in OCI form, "sha256:" followed by 64 lowercase
// hex characters. It is the identity of what a statement is about: a manifest,
// an index, or any file. Only SHA-256 is accepted.
type Digest string

// ErrBadDigest is returned (wrapped) for a string that is not a well-formed
// sha256 digest.
var ErrBadDigest = errors.New("bad digest")

// ParseDigest checks s is "sha256:<64 lowercase hex>" and returns it as a Digest.
func ParseDigest(s string) (Digest, error) {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return "", fmt.Errorf("%w %q: want sha256:<64 hex characters>", ErrBadDigest, truncate(s, 80))
	}
	if err := checkHex(hexPart); err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrBadDigest, truncate(s, 80), err)
	}
	return Digest(s), nil
}

// DigestOf returns the SHA-256 digest of b.
func DigestOf(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// Hex returns the 64 hex characters after "sha256:".
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), "sha256:") }

// String returns d in "sha256:…" form.
func (d Digest) String() string { return string(d) }

func checkHex(h string) error {
	if len(h) != 64 {
		return fmt.Errorf("want 64 hex characters, got %d", len(h))
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return errors.New("want lowercase hex")
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
