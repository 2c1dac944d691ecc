package plugin

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/plugin/kmswire"
)

// Providers of keys held outside the key store: the value of
// KeyReference.Provider, and the scheme of the key's URI.
const (
	ProviderAWSKMS     = "awskms"
	ProviderGCPKMS     = "gcpkms"
	ProviderAzureKMS   = "azurekms"
	ProviderHashiVault = "hashivault"
	ProviderPKCS11     = "pkcs11"
)

// kmsProviders are the KMS schemes the plugin accepts; the KMS helper
// (notarize-kms, kms_helper.go) serves them. Any other scheme is
// refused before anything is run.
var kmsProviders = []string{ProviderAWSKMS, ProviderGCPKMS, ProviderAzureKMS, ProviderHashiVault}

// ErrKeyProviderMismatch is returned when a key's provider now holds another
// public key than the one the key store recorded for it (for example a KMS
// alias re-pointed to another key): nothing is signed with it.
var ErrKeyProviderMismatch = errors.New("the provider's key is not the one recorded in the key store")

// ErrPublicOnly is returned when signing with a key of which the store holds
// only the public half (an imported teammate's key).
var ErrPublicOnly = errors.New("only the public key is in the key store (imported): it verifies, it cannot sign")

// KeyProviderError is a key held by a KMS or an HSM that cannot be used: it
// names the key, the provider and the reason.
type KeyProviderError struct {
	// Key is the key store name.
	Key string
	// Provider is the provider (awskms, pkcs11, …).
	Provider string
	// URI is the key's URI, without any secret.
	URI string
	// Op is what was being done: "open", "generate", "sign".
	Op string
	// Err is the reason.
	Err error
}

// Error implements error.
func (e *KeyProviderError) Error() string {
	return fmt.Sprintf("key %s (%s %s): %s: %v", e.Key, e.Provider, e.URI, e.Op, e.Err)
}

// Unwrap returns the reason.
func (e *KeyProviderError) Unwrap() error { return e.Err }

// providerOf returns the provider named by a key URI's scheme, or an error
// for a scheme that is not a supported provider.
func providerOf(uri string) (string, error) {
	scheme, _, ok := strings.Cut(uri, ":")
	if !ok || scheme == "" {
		return "", fmt.Errorf("key URI %q: no scheme (want %s://… or pkcs11:…)", keyURIHead(uri), strings.Join(kmsProviders, "://…, "))
	}
	scheme = strings.ToLower(scheme)
	if scheme == ProviderPKCS11 {
		return scheme, nil
	}
	if slices.Contains(kmsProviders, scheme) {
		if !strings.HasPrefix(uri[len(scheme)+1:], "//") {
			return "", fmt.Errorf("key URI %q: want %s://…", keyURIHead(uri), scheme)
		}
		return scheme, nil
	}
	return "", fmt.Errorf("key URI %q: unsupported provider %q (supported: %s, %s)", keyURIHead(uri), scheme, strings.Join(kmsProviders, ", "), ProviderPKCS11)
}

// keyURIHead returns uri up to its first attribute separator (';', '?' or
// '&'), for an error about a URI that did not parse: the attributes after it
// may hold a PKCS#11 pin-value, which is never printed.
func keyURIHead(uri string) string {
	if i := strings.IndexAny(uri, ";?&"); i >= 0 {
		return uri[:i] + "…"
	}
	return uri
}

// probeMessage is what a new KMS or HSM key signs once, to show it can.
const probeMessage = "docker-notarize key check"

// probeSigner signs a fixed message with s and checks the signature under pub
// with notarize's verifier: a key that cannot sign, or signs in a scheme the
// ledger would refuse, fails here rather than at the first release.
func probeSigner(ctx context.Context, s signature.Signer, pub crypto.PublicKey) error {
	if _, err := publicKeyPEM(pub); err != nil {
		return err
	}
	sig, err := s.SignMessage(strings.NewReader(probeMessage), options.WithContext(ctx))
	if err != nil {
		return err
	}
	v, err := signature.LoadVerifier(pub, notarize.HashFor(pub))
	if err != nil {
		return err
	}
	if err := v.VerifySignature(bytes.NewReader(sig), strings.NewReader(probeMessage), options.WithContext(ctx)); err != nil {
		return fmt.Errorf("its signature does not verify under its public key: %w", err)
	}
	return nil
}

// publicKeyPEM encodes pub as PEM and checks it is a kind of key notarize
// accepts.
func publicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, err
	}
	if _, err := notarize.ParsePublicKey(b); err != nil {
		return nil, err
	}
	return b, nil
}

// boundSigner signs with a key held by a provider, and checks every
// signature against the public key the key store recorded for it before
// returning it. A provider whose key changed underneath (a re-pointed alias,
// a replaced HSM object) thus cannot sign in the name of the stored key, nor
// sign unnoticed as another one.
type boundSigner struct {
	inner    signature.Signer
	pub      crypto.PublicKey
	verifier signature.Verifier
	fail     func(op string, err error) error
	timeout  time.Duration // of each signature; 0: none
}

var _ signature.Signer = (*boundSigner)(nil)

func newBoundSigner(inner signature.Signer, pub crypto.PublicKey, timeout time.Duration, fail func(string, error) error) (*boundSigner, error) {
	v, err := signature.LoadVerifier(pub, notarize.HashFor(pub))
	if err != nil {
		return nil, fail("open", err)
	}
	return &boundSigner{inner: inner, pub: pub, verifier: v, fail: fail, timeout: timeout}, nil
}

// PublicKey returns the recorded public key.
func (b *boundSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return b.pub, nil
}

// SignMessage signs with the provider and verifies the signature under the
// recorded key.
func (b *boundSigner) SignMessage(message io.Reader, opts ...signature.SignOption) ([]byte, error) {
	msg, err := io.ReadAll(message)
	if err != nil {
		return nil, b.fail("sign", err)
	}
	ctx := context.Background()
	for _, o := range opts {
		o.ApplyContext(&ctx)
	}
	if b.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.timeout)
		defer cancel()
		// The last WithContext wins in sigstore's options.
		opts = append(slices.Clone(opts), options.WithContext(ctx))
	}
	sig, err := b.inner.SignMessage(bytes.NewReader(msg), opts...)
	if err != nil {
		return nil, b.fail("sign", timedOut(ctx, err, b.timeout))
	}
	if err := b.verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
		return nil, b.fail("sign", fmt.Errorf("%w: its signature does not verify under the recorded public key", ErrKeyProviderMismatch))
	}
	return sig, nil
}

// openReferenced opens the signer of the store entry name, held by the
// provider its reference names, and checks that the provider's public key is
// the recorded one: when opening a PKCS#11 key, with every signature of a KMS
// key (the helper returns the key with the signature).
func openReferenced(ctx context.Context, name string, ref KeyReference, recorded Key, lookupEnv func(string) (string, bool)) (signature.Signer, error) {
	fail := func(op string, err error) error {
		return &KeyProviderError{Key: name, Provider: ref.Provider, URI: ref.URI, Op: op, Err: err}
	}
	timeout, err := keyTimeout(lookupEnv)
	if err != nil {
		return nil, fail("open", err)
	}
	provider, err := providerOf(ref.URI)
	if err != nil {
		return nil, fail("open", err)
	}
	if provider != ref.Provider {
		return nil, fail("open", fmt.Errorf("the store's reference names provider %q for a %s URI", ref.Provider, provider))
	}
	if provider != ProviderPKCS11 {
		// A KMS key signs through the helper, which answers each signature
		// with the public key that made it: helperSigner checks its key
		// ID, boundSigner the signature, on every call.
		hs, err := openHelperSigner(provider, ref.URI, recorded)
		if err != nil {
			return nil, fail("open", err)
		}
		return newBoundSigner(hs, recorded.PublicKey, timeout, fail)
	}
	s, err := openPKCS11Signer(ctx, ref.URI, lookupEnv)
	if err != nil {
		return nil, fail("open", err)
	}
	pub := s.Public()
	id, err := notarize.KeyID(pub)
	if err != nil {
		return nil, fail("open", err)
	}
	if id != recorded.KeyID {
		return nil, fail("open", fmt.Errorf("%w: it holds key ID %s, the store recorded %s (was the alias or object replaced?)", ErrKeyProviderMismatch, id, recorded.KeyID))
	}
	return newBoundSigner(s, recorded.PublicKey, timeout, fail)
}

// EnvKeyTimeout bounds each call to a KMS (open, create, sign): a Go
// duration, default DefaultKeyTimeout. A provider that does not answer in
// time is an error naming the key, not a hang.
const EnvKeyTimeout = "NOTARIZE_KEY_TIMEOUT"

// DefaultKeyTimeout is the KMS call timeout without NOTARIZE_KEY_TIMEOUT.
const DefaultKeyTimeout = time.Minute

// keyTimeout returns NOTARIZE_KEY_TIMEOUT, or DefaultKeyTimeout.
func keyTimeout(lookupEnv func(string) (string, bool)) (time.Duration, error) {
	v, ok := lookupEnv(EnvKeyTimeout)
	if !ok || v == "" {
		return DefaultKeyTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 30s", EnvKeyTimeout, v)
	}
	return d, nil
}

// timedOut says so, once, when err came from ctx's deadline or the KMS
// helper's.
func timedOut(ctx context.Context, err error, timeout time.Duration) error {
	var te *keyTimeoutError
	if err == nil || errors.As(err, &te) {
		return err
	}
	var he *kmswire.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.As(err, &he) && he.Code == kmswire.CodeTimeout {
		return &keyTimeoutError{timeout: timeout, err: err}
	}
	return err
}

// keyTimeoutError is a provider call that did not end within
// NOTARIZE_KEY_TIMEOUT.
type keyTimeoutError struct {
	timeout time.Duration
	err     error
}

func (e *keyTimeoutError) Error() string {
	return fmt.Sprintf("no answer within %s (%s): %v", e.timeout, EnvKeyTimeout, e.err)
}

func (e *keyTimeoutError) Unwrap() error { return e.err }

// redactKeyURI returns uri without the query attributes that carry secrets
// (an RFC 7512 pin-value); other URIs are returned as they are.
func redactKeyURI(uri string) string {
	if !strings.HasPrefix(strings.ToLower(uri), ProviderPKCS11+":") {
		return uri
	}
	path, query, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	var kept []string
	for _, attr := range strings.Split(query, "&") {
		k, _, _ := strings.Cut(attr, "=")
		if dk, err := url.PathUnescape(k); err == nil && strings.EqualFold(dk, "pin-value") {
			continue
		}
		kept = append(kept, attr)
	}
	if len(kept) == 0 {
		return path
	}
	return path + "?" + strings.Join(kept, "&")
}
