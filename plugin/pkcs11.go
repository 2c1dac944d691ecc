//go:build cgo && !notarize_verifyonly

package plugin

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
)

// pkcs11Supported reports whether this binary can use PKCS#11 modules (it
// needs cgo).
const pkcs11Supported = true

// pkcs11Signer signs with a private key object in a PKCS#11 token, through
// crypto11. The key never leaves the token (crypto11 generates keys
// sensitive and not extractable). Close logs out and releases the module.
type pkcs11Signer struct {
	mu   sync.Mutex
	ctx  *crypto11.Context
	key  crypto11.Signer
	hash crypto.Hash
}

var _ signature.Signer = (*pkcs11Signer)(nil)

// openPKCS11 configures crypto11 for the token uri names and logs in.
func openPKCS11(u *pkcs11URI, lookupEnv func(string) (string, bool)) (*crypto11.Context, string, error) {
	module, err := u.module(lookupEnv)
	if err != nil {
		return nil, "", err
	}
	pin, err := u.pin(lookupEnv)
	if err != nil {
		return nil, module, err
	}
	cfg := &crypto11.Config{Path: module, Pin: pin}
	switch {
	case u.serial != "":
		cfg.TokenSerial = u.serial
	case u.token != "":
		cfg.TokenLabel = u.token
	default:
		cfg.SlotNumber = u.slotID
	}
	c, err := crypto11.Configure(cfg)
	if err != nil {
		return nil, module, fmt.Errorf("module %s: %w", module, explainPKCS11(err))
	}
	return c, module, nil
}

// explainPKCS11 adds the reason in words to the PKCS#11 errors a user can
// act on.
func explainPKCS11(err error) error {
	var perr pkcs11.Error
	if !errors.As(err, &perr) {
		return err
	}
	switch perr {
	case pkcs11.CKR_PIN_INCORRECT:
		return fmt.Errorf("wrong PIN: %w", err)
	case pkcs11.CKR_PIN_LOCKED:
		return fmt.Errorf("PIN locked (too many wrong PINs; the security officer must reset it): %w", err)
	case pkcs11.CKR_PIN_EXPIRED:
		return fmt.Errorf("PIN expired: %w", err)
	case pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_SLOT_ID_INVALID:
		return fmt.Errorf("no such token: %w", err)
	}
	return err
}

// openPKCS11Signer opens the private key object raw (a pkcs11: URI) names.
func openPKCS11Signer(_ context.Context, raw string, lookupEnv func(string) (string, bool)) (*pkcs11Signer, error) {
	u, err := parsePKCS11URI(raw)
	if err != nil {
		return nil, err
	}
	c, module, err := openPKCS11(u, lookupEnv)
	if err != nil {
		return nil, err
	}
	key, err := findPKCS11Key(c, u)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("module %s: %w", module, err)
	}
	if key == nil {
		_ = c.Close()
		return nil, fmt.Errorf("module %s: no private key object %s in the token", module, describeObject(u))
	}
	return newPKCS11Signer(c, key)
}

func newPKCS11Signer(c *crypto11.Context, key crypto11.Signer) (*pkcs11Signer, error) {
	if _, err := publicKeyPEM(key.Public()); err != nil {
		_ = c.Close()
		return nil, err
	}
	return &pkcs11Signer{ctx: c, key: key, hash: notarize.HashFor(key.Public())}, nil
}

func findPKCS11Key(c *crypto11.Context, u *pkcs11URI) (crypto11.Signer, error) {
	var label []byte
	if u.object != "" {
		label = []byte(u.object)
	}
	keys, err := c.FindKeyPairs(u.id, label)
	if err != nil {
		return nil, err
	}
	switch len(keys) {
	case 0:
		return nil, nil
	case 1:
		return keys[0], nil
	default:
		return nil, fmt.Errorf("%d private key objects match %s: add id=… to the URI", len(keys), describeObject(u))
	}
}

func describeObject(u *pkcs11URI) string {
	switch {
	case u.object != "" && len(u.id) > 0:
		return fmt.Sprintf("labelled %q with id %x", u.object, u.id)
	case u.object != "":
		return fmt.Sprintf("labelled %q", u.object)
	default:
		return fmt.Sprintf("with id %x", u.id)
	}
}

// generatePKCS11 adopts the key object raw names, or generates an ECDSA P-256
// key pair in the token under that label (and id, random when not given). It
// returns the signer and the URI to record (without pin-value, with the id).
func generatePKCS11(_ context.Context, raw string, lookupEnv func(string) (string, bool)) (*pkcs11Signer, string, error) {
	u, err := parsePKCS11URI(raw)
	if err != nil {
		return nil, "", err
	}
	c, module, err := openPKCS11(u, lookupEnv)
	if err != nil {
		return nil, "", err
	}
	key, err := findPKCS11Key(c, u)
	if err != nil {
		_ = c.Close()
		return nil, "", fmt.Errorf("module %s: %w", module, err)
	}
	if key == nil {
		if u.object == "" {
			_ = c.Close()
			return nil, "", fmt.Errorf("module %s: no key object %s, and a new one needs object=LABEL", module, describeObject(u))
		}
		if len(u.id) == 0 {
			id := make([]byte, 16)
			if _, err := io.ReadFull(rand.Reader, id); err != nil {
				_ = c.Close()
				return nil, "", err
			}
			u.id = []byte(hex.EncodeToString(id))
		}
		if key, err = c.GenerateECDSAKeyPairWithLabel(u.id, []byte(u.object), elliptic.P256()); err != nil {
			_ = c.Close()
			return nil, "", fmt.Errorf("module %s: generate: %w", module, explainPKCS11(err))
		}
	}
	s, err := newPKCS11Signer(c, key)
	if err != nil {
		return nil, "", err
	}
	return s, u.String(), nil
}

// Public returns the key's public key.
func (s *pkcs11Signer) Public() crypto.PublicKey { return s.key.Public() }

// PublicKey implements signature.Signer.
func (s *pkcs11Signer) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return s.key.Public(), nil
}

// SignMessage hashes message (or takes options.WithDigest) and signs the
// digest in the token.
func (s *pkcs11Signer) SignMessage(message io.Reader, opts ...signature.SignOption) ([]byte, error) {
	digest, hash, err := signature.ComputeDigestForSigning(message, s.hash, []crypto.Hash{s.hash}, opts...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sig, err := s.key.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, explainPKCS11(err)
	}
	return sig, nil
}

// Close releases the token session and the module.
func (s *pkcs11Signer) Close() error { return s.ctx.Close() }
