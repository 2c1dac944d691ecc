package plugin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// plainFallbackDelay is how long an https attempt at a registry that may
// also be reached over plain http (loopback, --insecure-registry) runs
// alone before the http attempt starts beside it: go-containerregistry's
// ping waits as long (its fallbackDelay, from Go's dialer).
const plainFallbackDelay = 300 * time.Millisecond

// firstManifest fetches repo's manifest identifier and returns it with a
// transport and URL scheme for repo's further pulls (an index's manifests).
//
// Without credentials for the registry (issue 14), the manifest is asked
// for at once, as containerd's resolver asks for it: a registry that serves
// it to anyone answers in one round trip, without go-containerregistry's
// ping (GET /v2/) before it. A registry that wants a token answers 401 with
// the challenge its ping would have carried; that answer is handed to
// go-containerregistry as its ping's answer (pingReplay), and its transport
// does the rest exactly as after a ping of its own (the realm's checks, the
// token for the pull scope, its refresh), then the manifest is asked for
// again: the same three round trips as ping, token, manifest. Anything else
// takes the ping's path from the start (r.transportFor) and ends as it
// always did: credentials, which are sent only after a ping said where;
// any other status (a 404 among them, which may be how a registry hides a
// private repository from anonymous clients). An error reaching the
// registry is returned as it is: the ping's path would only wait for it
// again.
//
// Where go-containerregistry would also try plain http, https is tried
// first and http beside it once https failed or r.plainFallback passed,
// as its ping does; the first to answer sets the scheme. The guard
// (plainHTTPGuard) still refuses http to any host it does not allow.
func (r *Resolver) firstManifest(ctx context.Context, repo name.Repository, identifier string) (*manifest, http.RoundTripper, string, error) {
	auth, err := r.credentials(ctx, repo)
	if err != nil {
		return nil, nil, "", err
	}
	viaPing := func(base http.RoundTripper) (*manifest, http.RoundTripper, string, error) {
		tr, err := r.transportFor(ctx, repo, auth, base)
		if err != nil {
			return nil, nil, "", err
		}
		m, err := r.fetchManifest(ctx, tr, repo.Scheme(), repo, identifier)
		return m, tr, repo.Scheme(), err
	}
	if auth != authn.Anonymous {
		return viaPing(r.guard)
	}
	base := transport.NewUserAgent(r.guard, "")
	resp, scheme, err := r.anonymousGet(ctx, base, repo, identifier)
	if err != nil {
		return nil, nil, "", err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		m, err := readManifest(resp)
		if err != nil {
			return nil, nil, "", err
		}
		return m, base, scheme, nil
	case http.StatusUnauthorized:
		if u := resp.Request.URL; u.Host != repo.RegistryStr() || u.Scheme != scheme {
			// Redirected elsewhere: that host's challenge is not the
			// registry's; its own ping says what the registry wants.
			drainClose(resp)
			return viaPing(r.guard)
		}
		replay := &pingReplay{next: r.guard, host: repo.RegistryStr(), scheme: scheme, header: resp.Header.Clone()}
		drainClose(resp)
		return viaPing(replay)
	default:
		drainClose(resp)
		return viaPing(r.guard)
	}
}

// pingReplay answers go-containerregistry's ping of host with the 401 the
// registry gave the manifest request (its WWW-Authenticate challenges), as
// if the registry had answered the ping over the scheme that answered then:
// a ping over the other scheme fails, as it would have. It answers one
// ping; every other request goes to next (the guard).
type pingReplay struct {
	next   http.RoundTripper
	host   string
	scheme string
	header http.Header
	used   atomic.Bool
}

// RoundTrip implements http.RoundTripper.
func (p *pingReplay) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && req.URL.Path == "/v2/" && req.URL.Host == p.host && !p.used.Load() {
		if req.URL.Scheme != p.scheme {
			return nil, fmt.Errorf("%s: the registry answered over %s", req.URL.Scheme, p.scheme)
		}
		if p.used.CompareAndSwap(false, true) {
			return &http.Response{
				Status: "401 Unauthorized", StatusCode: http.StatusUnauthorized,
				Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: p.header, Body: http.NoBody, ContentLength: 0, Request: req,
			}, nil
		}
	}
	return p.next.RoundTrip(req)
}

// anonymousGet asks for the manifest without credentials, within the
// registry timeout for its answer's headers; the body is the caller's to
// read (within the same limit, readManifest) and close. It returns the
// scheme that answered.
func (r *Resolver) anonymousGet(ctx context.Context, base http.RoundTripper, repo name.Repository, identifier string) (*http.Response, string, error) {
	// As go-containerregistry's ping: http too where its Registry.Scheme
	// says http (loopback, private addresses, and what parseReference
	// marked insecure because the guard allows it), so that a private
	// registry the guard refuses is reported as ErrPlainHTTP, which names
	// --insecure-registry, and not as a failed TLS handshake.
	schemes := []string{"https"}
	if repo.Registry.Scheme() == "http" {
		schemes = append(schemes, "http")
	}
	type answer struct {
		resp   *http.Response
		scheme string
		err    error
	}
	// Each attempt has its own context, so that the loser's is cancelled
	// without the winner's body being cut; the winner's ends with the
	// registry timeout, as every exchange's does.
	answers := make(chan answer, len(schemes))
	cancels := make([]context.CancelFunc, 0, len(schemes))
	start := func(scheme string) {
		actx, cancel := context.WithTimeout(ctx, r.timeout)
		cancels = append(cancels, cancel)
		go func() {
			resp, err := sendManifestRequest(actx, base, scheme, repo, identifier)
			if resp != nil {
				resp.Body = cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
			}
			answers <- answer{resp: resp, scheme: scheme, err: err}
		}()
	}
	start(schemes[0])
	var fallback <-chan time.Time
	if len(schemes) > 1 {
		t := time.NewTimer(r.plainFallback)
		defer t.Stop()
		fallback = t.C
	}
	var errs []error
	for {
		select {
		case <-fallback:
			fallback = nil
			start(schemes[1])
		case a := <-answers:
			if a.err == nil {
				// The other attempt, if any, is stopped and its answer,
				// if it comes, closed.
				pending := len(cancels) - len(errs) - 1
				for i, s := range schemes[:len(cancels)] {
					if s != a.scheme {
						cancels[i]()
					}
				}
				if pending > 0 {
					go func() {
						for range pending {
							if o := <-answers; o.resp != nil {
								drainClose(o.resp)
							}
						}
					}()
				}
				return a.resp, a.scheme, nil
			}
			if len(schemes) == 1 {
				cancels[0]()
				return nil, "", a.err
			}
			errs = append(errs, fmt.Errorf("%s: %w", a.scheme, a.err))
			if len(errs) == len(schemes) {
				for _, c := range cancels {
					c()
				}
				// On one line, as go-containerregistry's ping joins them;
				// errors.Is sees both (ErrPlainHTTP).
				return nil, "", fmt.Errorf("%w; %w", errs[0], errs[1])
			}
			if fallback != nil { // https failed first: http at once
				fallback = nil
				start(schemes[1])
			}
		}
	}
}

// cancelOnClose ends an attempt's context once its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

// Close closes the body and releases the context.
func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// drainClose reads an unused body that says it is small, so that its
// connection can be reused (the token's retry of a 401 goes over it), and
// closes it; a longer or unsized body is closed unread.
func drainClose(resp *http.Response) {
	if resp.ContentLength >= 0 && resp.ContentLength <= 64<<10 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	}
	_ = resp.Body.Close()
}
