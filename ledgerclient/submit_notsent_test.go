package ledgerclient_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestSubmitNotSent: a submission matches ErrNotSent only when nothing
// carrying it was written to any connection. A front that forwards it and
// answers 502, or that answers with a same-host redirect to an address that
// refuses the connection after forwarding it (red team 13, F-B: the dial
// error of the redirect read as "never sent"), leaves the outcome unknown.
func TestSubmitNotSent(t *testing.T) {
	srv := ledgertest.Start(t)
	s := notarizetest.NewSigner(t)
	entry := func(content string) *notarize.Entry {
		t.Helper()
		st := notarize.NewStatement(notarize.DigestOf([]byte(content)), content, notarize.Predicate{
			Status: notarize.StatusTrusted, Kind: notarize.KindFile, Timestamp: time.Now().UTC().Truncate(time.Second),
		})
		e, err := notarize.Sign(t.Context(), s, st)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	client := func(u string) *ledgerclient.Client {
		t.Helper()
		c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: u, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	up, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	next := httputil.NewSingleHostReverseProxy(up)

	// A front that closes its listener once the client pinned the ledger:
	// the submission's dial is refused.
	gone := httptest.NewServer(next)
	down := client(gone.URL)
	gone.Close()
	if _, err := down.Submit(t.Context(), entry("never sent")); !errors.Is(err, ledgerclient.ErrNotSent) {
		t.Errorf("submission to a closed port: %v, want ErrNotSent", err)
	}

	// Forwarded, then 502.
	lost := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			next.ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(lost.Close)
	if _, err := client(lost.URL).Submit(t.Context(), entry("forwarded, then 502")); err == nil || errors.Is(err, ledgerclient.ErrNotSent) {
		t.Errorf("submission forwarded and answered 502: %v, want a failure that is not ErrNotSent", err)
	}

	// Forwarded, then a redirect to itself with Connection: close, and the
	// listener closed: the redirect's dial is refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			next.ServeHTTP(httptest.NewRecorder(), r)
			_ = l.Close()
			w.Header().Set("Connection", "close")
			w.Header().Set("Location", base+api.PathEntries)
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		next.ServeHTTP(w, r)
	})}
	go func() { _ = front.Serve(l) }()
	t.Cleanup(func() { _ = front.Close() })
	redirected := client(base)
	_, err = redirected.Submit(t.Context(), entry("forwarded, then redirected"))
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "dial" {
		t.Fatalf("submission forwarded and redirected to a closed listener: %v, want the redirect's dial refused (the case under test)", err)
	}
	if errors.Is(err, ledgerclient.ErrNotSent) {
		t.Errorf("submission forwarded and redirected to a closed listener: %v, want a failure that is not ErrNotSent", err)
	}
}
