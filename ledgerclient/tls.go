package ledgerclient

import (
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
// holds no certificate is an error, never silently the system roots only.
func NewHTTPClient(caFile string) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		b, err := boundedfile.Read(caFile, maxCAFileSize)
		if err != nil {
			return nil, fmt.Errorf("ledger CA: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("ledger CA %s: %w", caFile, errNoCertificate)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t}, nil
}

var errNoCertificate = errors.New("no PEM certificate found")
