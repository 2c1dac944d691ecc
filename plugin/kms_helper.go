package plugin

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/plugin/kmswire"
)

// Keys held by a cloud KMS are used through the KMS helper,
// notarize-kms (cmd/notarize-kms, package plugin/kmshelper):
// the KMS SDKs are not linked into the plugin, whose every run (a verify,
// the docker CLI's metadata query) would otherwise pay for their package
// initialisation. The helper is run by absolute path, from the directory of
// this executable with symlinks resolved, never from PATH; and it is not
// trusted with the outcome: every public key and signature it returns is
// checked here (helperSigner, boundSigner, generateKMS).

// ErrKMSHelperMissing is returned for a KMS key when notarize-kms is
// not installed next to the plugin.
var ErrKMSHelperMissing = errors.New("the KMS helper " + kmswire.HelperName + " is not installed next to the plugin (`make install` installs both; keys held by a KMS need it)")

// kmsHelperPath returns the absolute path of the KMS helper: next to this
// executable, symlinks resolved.
func kmsHelperPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locating %s: %w", kmswire.HelperName, err)
	}
	return helperNextTo(exe)
}

// helperNextTo returns the KMS helper in the directory of exe's target, if
// it is there and may be run (checkHelper).
func helperNextTo(exe string) (string, error) {
	return executableNextTo(exe, kmswire.HelperName, "KMS helper", ErrKMSHelperMissing)
}

// helperEnv is the helper's environment: this process's, without the
// plugin's own variables (NOTARIZE_PASSWORD, NOTARIZE_PKCS11_PIN, …), which
// the helper has no use for. The KMS SDKs read their credentials from it.
func helperEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTARIZE_") {
			out = append(out, kv)
		}
	}
	return out
}

// hashName is h as kmswire names it.
func hashName(h crypto.Hash) string {
	switch h {
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	default:
		return "sha256"
	}
}

// helperSigner signs with a KMS key through the helper, one helper process
// per signature. It returns a signature only when the helper says the key
// that made it is the recorded one; boundSigner, around it, verifies the
// signature under the recorded key.
type helperSigner struct {
	path     string
	uri      string
	hash     crypto.Hash
	recorded Key
	env      []string
}

var _ signature.Signer = (*helperSigner)(nil)

// openHelperSigner finds the helper for a KMS key. Nothing is run yet: the
// first signature asks the provider.
func openHelperSigner(provider, uri string, recorded Key) (*helperSigner, error) {
	path, err := kmsHelperPath()
	if err != nil {
		return nil, err
	}
	return newHelperSigner(path, provider, uri, recorded)
}

func newHelperSigner(path, provider, uri string, recorded Key) (*helperSigner, error) {
	if !strings.EqualFold(strings.SplitN(uri, ":", 2)[0], provider) {
		return nil, fmt.Errorf("a %s key with a URI of another scheme", provider)
	}
	return &helperSigner{path: path, uri: uri, hash: notarize.HashFor(recorded.PublicKey), recorded: recorded, env: helperEnv()}, nil
}

// PublicKey returns the recorded public key.
func (h *helperSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return h.recorded.PublicKey, nil
}

// SignMessage asks the helper to sign message and checks that the key it
// reports is the recorded one.
func (h *helperSigner) SignMessage(message io.Reader, opts ...signature.SignOption) ([]byte, error) {
	msg, err := io.ReadAll(io.LimitReader(message, kmswire.MaxMessage+1))
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	for _, o := range opts {
		o.ApplyContext(&ctx)
	}
	resp, err := kmswire.Call(ctx, h.path, kmswire.Request{Op: kmswire.OpSign, URI: h.uri, Hash: hashName(h.hash), Message: msg}, h.env)
	if err != nil {
		return nil, err
	}
	pub, err := notarize.ParsePublicKey([]byte(resp.PublicKeyPEM))
	if err != nil {
		return nil, fmt.Errorf("the key's public key: %w", err)
	}
	id, err := notarize.KeyID(pub)
	if err != nil {
		return nil, err
	}
	if id != h.recorded.KeyID {
		return nil, fmt.Errorf("%w: it holds key ID %s, the store recorded %s (was the alias or object replaced?)", ErrKeyProviderMismatch, id, h.recorded.KeyID)
	}
	if len(resp.Signature) == 0 {
		return nil, fmt.Errorf("%w: no signature", kmswire.ErrProtocol)
	}
	return resp.Signature, nil
}

// generateKMS creates the key uri names in its KMS, or adopts it when it
// exists, and returns its public key. The helper signs a test message with
// it, checked here under the key it reports, before anything is recorded.
func generateKMS(ctx context.Context, name, provider, uri string, timeout time.Duration) (crypto.PublicKey, error) {
	fail := func(op string, err error) error {
		return &KeyProviderError{Key: name, Provider: provider, URI: uri, Op: op, Err: err}
	}
	path, err := kmsHelperPath()
	if err != nil {
		return nil, fail("open", err)
	}
	return generateWithHelper(ctx, path, provider, uri, timeout, fail)
}

// generateWithHelper is generateKMS with the helper at path.
func generateWithHelper(ctx context.Context, path, provider, uri string, timeout time.Duration, fail func(string, error) error) (crypto.PublicKey, error) {
	if !strings.EqualFold(strings.SplitN(uri, ":", 2)[0], provider) {
		return nil, fail("open", fmt.Errorf("a %s key with a URI of another scheme", provider))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := kmswire.Call(ctx, path, kmswire.Request{Op: kmswire.OpGenerate, URI: uri, Hash: hashName(crypto.SHA256), Message: []byte(probeMessage)}, helperEnv())
	if err != nil {
		return nil, fail("generate", timedOut(ctx, err, timeout))
	}
	pub, err := notarize.ParsePublicKey([]byte(resp.PublicKeyPEM))
	if err != nil {
		return nil, fail("generate", fmt.Errorf("the key's public key: %w", err))
	}
	if err := verifyUnder(pub, []byte(probeMessage), resp.Signature); err != nil {
		return nil, fail("test signature", fmt.Errorf("its signature does not verify under its public key: %w", err))
	}
	return pub, nil
}

// verifyUnder checks sig over msg under pub, in notarize's scheme for pub.
func verifyUnder(pub crypto.PublicKey, msg, sig []byte) error {
	v, err := signature.LoadVerifier(pub, notarize.HashFor(pub))
	if err != nil {
		return err
	}
	return v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg), options.WithContext(context.Background()))
}
