package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/docker/distribution/registry/client/auth/challenge"
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
// ping (GET /v2/) before it. A registry that wants a token says so in its
// 401, with a Bearer challenge as the ping's 401 would have carried it; the
// token is fetched from it with go-containerregistry's transport.Exchange,
// which validates the realm as the ping's path does, and the manifest is
// asked for again with it: the same three round trips as ping, token,
// manifest. Anything else takes the ping's path from the start
// (r.transport) and ends as it always did: credentials, which are sent
// only after a ping said where; a 401 without a Bearer challenge; any
// other status (a 404 among them, which may be how a registry hides a
// private repository from anonymous clients). An error reaching the
// registry is returned as it is: the ping's path would only wait for it
// again.
//
// Where go-containerregistry would also try plain http, https is tried
// first and http beside it once https failed or plainFallbackDelay passed,
// as its ping does; the first to answer sets the scheme. The guard
// (plainHTTPGuard) still refuses http to any host it does not allow.
func (r *Resolver) firstManifest(ctx context.Context, repo name.Repository, identifier string) (*manifest, http.RoundTripper, string, error) {
	auth, err := r.credentials(ctx, repo)
	if err != nil {
		return nil, nil, "", err
	}
	pingFirst := func() (*manifest, http.RoundTripper, string, error) {
		tr, err := r.transportFor(ctx, repo, auth)
		if err != nil {
			return nil, nil, "", err
		}
		m, err := r.fetchManifest(ctx, tr, repo.Scheme(), repo, identifier)
		return m, tr, repo.Scheme(), err
	}
	if auth != authn.Anonymous {
		return pingFirst()
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
		ch, ok := bearerChallenge(resp)
		drainClose(resp)
		if !ok {
			return pingFirst()
		}
		ch.Insecure = scheme == "http"
		tr, err := r.tokenTransport(ctx, repo, base, ch)
		if err != nil {
			return nil, nil, "", err
		}
		m, err := r.fetchManifest(ctx, tr, scheme, repo, identifier)
		return m, tr, scheme, err
	default:
		drainClose(resp)
		return pingFirst()
	}
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
				return nil, "", errors.Join(errs...)
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

// bearerChallenge returns the Bearer challenge of a 401, as
// go-containerregistry's ping reads one (the same parser, from
// docker/distribution, which the docker CLI uses too).
func bearerChallenge(resp *http.Response) (*transport.Challenge, bool) {
	for _, c := range challenge.ResponseChallenges(resp) {
		if strings.EqualFold(c.Scheme, "bearer") {
			return &transport.Challenge{Scheme: c.Scheme, Parameters: c.Parameters}, true
		}
	}
	return nil, false
}

// tokenTransport fetches an anonymous pull token for repo as ch asks
// (transport.Exchange validates its realm) within the registry timeout, and
// returns a transport that sends it to the registry and refreshes it on a
// 401, as the ping's path would have.
func (r *Resolver) tokenTransport(ctx context.Context, repo name.Repository, base http.RoundTripper, ch *transport.Challenge) (http.RoundTripper, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	scopes := []string{repo.Scope(transport.PullScope)}
	tok, err := transport.Exchange(ctx, repo.Registry, authn.Anonymous, base, scopes, ch)
	if err != nil {
		return nil, fmt.Errorf("token for %s: %w", repo.RegistryStr(), err)
	}
	if tok.Token == "" { // an OAuth2 server's access_token, which the ping's path takes too (Exchange refuses neither)
		tok.Token = tok.AccessToken
	}
	return transport.FromToken(repo.Registry, authn.Anonymous, base, ch, tok)
}

// drainClose reads a little of an unused body, so that its connection can
// be reused, and closes it.
func drainClose(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}
