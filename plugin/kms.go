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
	sigkms "github.com/sigstore/sigstore/pkg/signature/kms"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/notarize/docker-notarize/notarize"
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

// kmsProviders are the sigstore KMS schemes the plugin accepts. Any other
// scheme is refused before sigstore is asked: sigstore's kms.Get would
// otherwise look for an executable "sigstore-kms-SCHEME" on PATH and run it.
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

// kmsBuiltIn reports whether this binary has the sigstore provider for the
// KMS scheme provider (registered by its package's init).
func kmsBuiltIn(provider string) bool {
	return slices.Contains(sigkms.SupportedProviders(), provider+"://")
}

// openKMS returns the sigstore signer-verifier of a KMS key URI. Only the
// providers built into this binary are asked; sigstore's executable plugins
// are never run.
func openKMS(ctx context.Context, provider, uri string, hash crypto.Hash) (sigkms.SignerVerifier, error) {
	if !slices.Contains(kmsProviders, provider) {
		return nil, fmt.Errorf("unsupported KMS provider %q", provider)
	}
	if !kmsBuiltIn(provider) {
		return nil, fmt.Errorf("the %s provider is not built into this binary (built in: %s)", provider, strings.Join(builtInKMSProviders(), ", "))
	}
	sv, err := sigkms.Get(ctx, uri, hash)
	if err != nil {
		return nil, err
	}
	return sv, nil
}

func builtInKMSProviders() []string {
	var out []string
	for _, p := range kmsProviders {
		if kmsBuiltIn(p) {
			out = append(out, p)
		}
	}
	return out
}

// generateKMS creates the key uri names in its KMS, or adopts it when it
// exists, and returns its public key. It proves the key can sign before
// anything is recorded.
func generateKMS(ctx context.Context, name, provider, uri string, timeout time.Duration) (crypto.PublicKey, error) {
	fail := func(op string, err error) error {
		return &KeyProviderError{Key: name, Provider: provider, URI: uri, Op: op, Err: timedOut(ctx, err, timeout)}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sv, err := openKMS(ctx, provider, uri, crypto.SHA256)
	if err != nil {
		return nil, fail("open", err)
	}
	pub, createErr := sv.CreateKey(ctx, sv.DefaultAlgorithm())
	if createErr != nil {
		// A key named by ID or ARN rather than by alias cannot be created,
		// only adopted.
		var err error
		if pub, err = sv.PublicKey(options.WithContext(ctx)); err != nil {
			return nil, fail("generate", fmt.Errorf("%w; adopting it as an existing key: %w", createErr, err))
		}
	}
	if err := probeSigner(ctx, sv, pub); err != nil {
		return nil, fail("test signature", err)
	}
	return pub, nil
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
// the recorded one.
func openReferenced(ctx context.Context, name string, ref KeyReference, recorded Key, lookupEnv func(string) (string, bool)) (signature.Signer, error) {
	fail := func(op string, err error) error {
		return &KeyProviderError{Key: name, Provider: ref.Provider, URI: ref.URI, Op: op, Err: err}
	}
	timeout, err := keyTimeout(lookupEnv)
	if err != nil {
		return nil, fail("open", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	failOpen := func(err error) error { return fail("open", timedOut(openCtx, err, timeout)) }
	provider, err := providerOf(ref.URI)
	if err != nil {
		return nil, fail("open", err)
	}
	if provider != ref.Provider {
		return nil, fail("open", fmt.Errorf("the store's reference names provider %q for a %s URI", ref.Provider, provider))
	}
	var inner signature.Signer
	var pub crypto.PublicKey
	switch provider {
	case ProviderPKCS11:
		s, err := openPKCS11Signer(ctx, ref.URI, lookupEnv)
		if err != nil {
			return nil, fail("open", err)
		}
		inner, pub = s, s.Public()
	default:
		sv, err := openKMS(openCtx, provider, ref.URI, notarize.HashFor(recorded.PublicKey))
		if err != nil {
			return nil, failOpen(err)
		}
		if pub, err = sv.PublicKey(options.WithContext(openCtx)); err != nil {
			return nil, failOpen(err)
		}
		inner = sv
	}
	id, err := notarize.KeyID(pub)
	if err != nil {
		return nil, fail("open", err)
	}
	if id != recorded.KeyID {
		return nil, fail("open", fmt.Errorf("%w: it holds key ID %s, the store recorded %s (was the alias or object replaced?)", ErrKeyProviderMismatch, id, recorded.KeyID))
	}
	return newBoundSigner(inner, recorded.PublicKey, timeout, fail)
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

// timedOut says so when err came from ctx's deadline.
func timedOut(ctx context.Context, err error, timeout time.Duration) error {
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s (%s): %w", timeout, EnvKeyTimeout, err)
	}
	return err
}

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
