//go:build !cgo || notarize_verifyonly

package plugin

import (
	"context"
	"crypto"
	"errors"
	"io"

	"github.com/sigstore/sigstore/pkg/signature"
)

// pkcs11Supported reports whether this binary can use PKCS#11 modules: not
// without cgo, and not in the verify-only build, which signs nothing (the
// full CLI behind it signs).
const pkcs11Supported = false

// errNoPKCS11 is every PKCS#11 operation's error in a build without cgo.
var errNoPKCS11 = errors.New("this docker-notarize was built without cgo, so without PKCS#11 support: rebuild with CGO_ENABLED=1")

// pkcs11Signer is not available without cgo.
type pkcs11Signer struct{}

func openPKCS11Signer(context.Context, string, func(string) (string, bool)) (*pkcs11Signer, error) {
	return nil, errNoPKCS11
}

func generatePKCS11(context.Context, string, func(string) (string, bool)) (*pkcs11Signer, string, error) {
	return nil, "", errNoPKCS11
}

// Public is never reached without cgo.
func (*pkcs11Signer) Public() crypto.PublicKey { return nil }

// PublicKey implements signature.Signer.
func (*pkcs11Signer) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return nil, errNoPKCS11
}

// SignMessage implements signature.Signer.
func (*pkcs11Signer) SignMessage(io.Reader, ...signature.SignOption) ([]byte, error) {
	return nil, errNoPKCS11
}

// Close implements io.Closer.
func (*pkcs11Signer) Close() error { return nil }
