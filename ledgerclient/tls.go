package ledgerclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"github.com/notarize/docker-notarize/internal/boundedfile"
)

// maxCAFileSize bounds a CA bundle read by NewHTTPClient.
const maxCAFileSize = 1 << 20

// NewHTTPClient returns an HTTP client for Config.HTTPClient that trusts,
// for an https ledger, the system's root certificates and, when caFile is
// not empty, the PEM certificates in caFile (a private CA). A CA file that
// is missing, too large or holds no certificate is an error here, before
// any request, never silently the system roots only.
//
// Loading the system's roots takes milliseconds of CPU (13–19 ms on the
// benchmark machine), so with a CA file it starts in the background and the
// client's first request waits for it: a verify resolves the image at the
// registry meanwhile. Every connection is verified against both sets; none
// is made before they are loaded.
func NewHTTPClient(caFile string) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile == "" {
		return &http.Client{Transport: t}, nil
	}
	b, err := boundedfile.Read(caFile, maxCAFileSize)
	if err != nil {
		return nil, fmt.Errorf("ledger CA: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("ledger CA %s: %w", caFile, errNoCertificate)
	}
	rt := &rootsTransport{base: t, ready: make(chan struct{})}
	go func() {
		defer close(rt.ready)
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pool.AppendCertsFromPEM(b) // holds a certificate: checked above
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}()
	return &http.Client{Transport: rt}, nil
}

var errNoCertificate = errors.New("no PEM certificate found")

// rootsTransport is an *http.Transport whose TLS configuration is written
// once, in the background, before ready is closed: RoundTrip waits for it
// (or for the request's context), so no request goes out before the roots
// it must be verified against are in place.
type rootsTransport struct {
	base  *http.Transport // TLSClientConfig written before ready is closed
	ready chan struct{}
}

// RoundTrip sends req once the roots are loaded.
func (r *rootsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case <-r.ready:
	case <-req.Context().Done():
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, also on error
		}
		return nil, fmt.Errorf("ledger CA: waiting for the system roots: %w", context.Cause(req.Context()))
	}
	return r.base.RoundTrip(req)
}

// CloseIdleConnections closes the transport's idle connections (for
// http.Client.CloseIdleConnections); none exist before the roots are loaded.
func (r *rootsTransport) CloseIdleConnections() {
	select {
	case <-r.ready:
		r.base.CloseIdleConnections()
	default:
	}
}
