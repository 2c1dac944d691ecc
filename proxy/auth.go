package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/gorilla/mux"

	// The access controllers notarize-proxy offers register themselves.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
)

// DefaultRealm is the realm of the htpasswd Basic challenge when none is configured.
const DefaultRealm = "notarize-proxy"

// AuthConfig is client authentication, in the shape of distribution's
// configuration (auth: {htpasswd: {...}} or auth: {token: {...}}). At most
// one is set; none serves clients anonymously. The checks are
// distribution's access controllers (registry/auth/htpasswd and
// registry/auth/token); the access rules of the policy apply on top.
type AuthConfig struct {
	// Htpasswd authenticates Basic credentials against an htpasswd file
	// of bcrypt hashes (htpasswd -B), re-read when it changes. Accepted
	// credentials are remembered (as a keyed hash) while the file is
	// unchanged and they are used at least every 12 hours, so the requests
	// of a pull do not each pay bcrypt and active users never queue behind
	// guesses; refused logins are limited per client (and IPv6 /56 and
	// /48), and concurrent bcrypt checks bounded, with a bounded queue per
	// client (auth_cache.go, auth_slots.go).
	Htpasswd *HtpasswdAuth `yaml:"htpasswd,omitempty"`
	// Token accepts bearer tokens of the Docker token specification
	// (https://distribution.github.io/distribution/spec/auth/token/) issued
	// by a token server the proxy trusts.
	Token *TokenAuth `yaml:"token,omitempty"`
}

// HtpasswdAuth configures distribution's htpasswd access controller.
type HtpasswdAuth struct {
	// Realm is the realm of the Basic challenge; default DefaultRealm.
	Realm string `yaml:"realm,omitempty"`
	// Path is the htpasswd file; required, and it must exist (distribution
	// would create one with a random password and log it).
	Path string `yaml:"path"`
}

// TokenAuth configures distribution's token access controller. A token is
// accepted when its signature chains to RootCertBundle (or its key is in
// JWKS), its issuer is Issuer, its audience is Service, it is within its
// validity, and its access claims grant "pull" on the repository the
// request names ("repository:NAME:pull"): NAME as the client sent it in
// the path (e.g. "library/alpine", or "ghcr/acme/app" in the prefix form
// /v2/UPSTREAM/REPO), except when containerd's ?ns= routes the request
// elsewhere than that name routes without it; then NAME is the resolved
// "UPSTREAM/REPO" (see scopeName), and the Bearer challenge names it.
type TokenAuth struct {
	// Realm is the token server's URL, sent in the Bearer challenge.
	Realm string `yaml:"realm"`
	// Service is the proxy's name at the token server (the tokens' audience).
	Service string `yaml:"service"`
	// Issuer is the token server's name (the tokens' "iss").
	Issuer string `yaml:"issuer"`
	// RootCertBundle is a PEM file of the certificates token signing
	// chains must verify to.
	RootCertBundle string `yaml:"rootcertbundle,omitempty"`
	// JWKS is a JSON Web Key Set file of trusted token keys.
	JWKS string `yaml:"jwks,omitempty"`
	// SigningAlgorithms limits the accepted JWS algorithms; default
	// distribution's list.
	SigningAlgorithms []string `yaml:"signingalgorithms,omitempty"`
}

// Enabled reports whether clients must authenticate.
func (a AuthConfig) Enabled() bool { return a.Htpasswd != nil || a.Token != nil }

// Validate checks that at most one method is set and that it names what it needs.
func (a AuthConfig) Validate() error {
	switch {
	case a.Htpasswd != nil && a.Token != nil:
		return errors.New("auth: htpasswd and token are exclusive: configure one")
	case a.Htpasswd != nil:
		if a.Htpasswd.Path == "" {
			return errors.New("auth: htpasswd: path is required")
		}
	case a.Token != nil:
		t := a.Token
		if t.Realm == "" || t.Service == "" || t.Issuer == "" {
			return errors.New("auth: token: realm, service and issuer are required")
		}
		if t.RootCertBundle == "" && t.JWKS == "" {
			return errors.New("auth: token: rootcertbundle or jwks is required (the keys tokens are checked against)")
		}
	}
	return nil
}

// accessController builds the configured distribution access controller,
// or nil when authentication is off.
func (a AuthConfig) accessController() (auth.AccessController, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	switch {
	case a.Htpasswd != nil:
		// distribution creates a missing file with a generated password it
		// logs; a missing file is a configuration error here.
		st, err := os.Stat(a.Htpasswd.Path)
		if err != nil {
			return nil, fmt.Errorf("auth: htpasswd: %w", err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("auth: htpasswd: %s is not a regular file", a.Htpasswd.Path)
		}
		realm := a.Htpasswd.Realm
		if realm == "" {
			realm = DefaultRealm
		}
		fresh := func() (auth.AccessController, error) {
			// never let distribution provision a file that went missing,
			// nor open one that is not a regular file (a FIFO would block
			// every request behind the reload; red team 8)
			st, err := os.Stat(a.Htpasswd.Path)
			if err != nil {
				return nil, err
			}
			if !st.Mode().IsRegular() {
				return nil, fmt.Errorf("%s is not a regular file", a.Htpasswd.Path)
			}
			return auth.GetAccessController("htpasswd", map[string]any{"realm": realm, "path": a.Htpasswd.Path})
		}
		ac, err := fresh()
		if err != nil {
			return nil, fmt.Errorf("auth: htpasswd: %w", err)
		}
		return newCredentialCache(ac, a.Htpasswd.Path, fresh), nil
	case a.Token != nil:
		t := a.Token
		opts := map[string]any{"realm": t.Realm, "service": t.Service, "issuer": t.Issuer,
			"rootcertbundle": t.RootCertBundle, "jwks": t.JWKS}
		if len(t.SigningAlgorithms) > 0 {
			algs := make([]any, len(t.SigningAlgorithms))
			for i, s := range t.SigningAlgorithms {
				algs[i] = s
			}
			opts["signingalgorithms"] = algs
		}
		ac, err := auth.GetAccessController("token", opts)
		if err != nil {
			return nil, fmt.Errorf("auth: token: %w", err)
		}
		return newTokenCache(ac), nil
	}
	return nil, nil
}

// authorize is the middleware in front of every matched route but
// /healthz. It authenticates the client (when auth is configured) and, for
// a repository route, resolves the target and applies the policy's access
// rules — all before the handler, so a client not allowed a repository
// causes no upstream request and learns nothing about it:
//
//   - no or bad credentials: 401 UNAUTHORIZED with the challenge
//     (WWW-Authenticate), as distribution answers; with a token that does
//     not grant pull on the repository, 401 insufficient_scope;
//   - authenticated but not allowed by the access rules, or a name that
//     routes to no upstream: 403 DENIED, the same answer whether the
//     repository exists or not.
//
// /metrics and /notarize/v1/stats need an authenticated client (they name
// digests); the unsupported routes answer as before once authenticated.
func (s *Server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		name, isRepo := mux.Vars(r)["name"]
		user := ""
		if ac := s.cfg.access; ac != nil {
			var access []auth.Access
			if isRepo {
				access = []auth.Access{{Resource: auth.Resource{Type: "repository", Name: s.scopeName(r, name)}, Action: "pull"}}
			}
			grant, err := ac.Authorized(r, access...)
			if err != nil {
				s.refuseAuth(w, r, err)
				return
			}
			user = grant.User.Name
		}
		if isRepo && !s.mayPull(r, user) {
			s.logRefusal(r.Context(), "access "+user+" "+clip(name, 300), "access denied", // refusal_log.go: once per interval
				slog.String("user", user), slog.String("name", clip(name, 300)), slog.String("method", r.Method))
			who := "anonymous clients"
			if user != "" {
				who = "user " + clip(user, 80)
			}
			writeOCIError(w, ociError{status: http.StatusForbidden, code: errcode.ErrorCodeDenied,
				msg: fmt.Sprintf("notarize-proxy: %s may not pull %s (access rules of the policy)", who, clip(name, 300))})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// scopeName is the repository name whose pull a token must grant for a
// request that names name: the name under which the request's target is
// reached without ?ns=, so that a token server, which grants by name,
// grants one target per name.
//
//   - without ns: name as sent (the default upstream's "team/app" or
//     "alpine", or the prefix form "UPSTREAM/REPO");
//   - ns selecting the default upstream: the name less containerd's
//     upstream prefix, when that reaches the same repository without ns
//     (so "library/alpine?ns=docker.io" asks what "library/alpine" asks);
//   - otherwise the resolved "UPSTREAM/REPO": with ?ns=local, "team/app"
//     is local/team/app, not the default upstream's team/app, and a token
//     for "team/app" must not read it; nor may a token for another
//     upstream's "local/team/app" read the default upstream's repository
//     of that name through ?ns=DEFAULT.
//
// A request whose ns routes nowhere is checked for the name as sent; the
// handler then refuses it (NAME_UNKNOWN) whatever the token grants.
func (s *Server) scopeName(r *http.Request, name string) string {
	ns := r.URL.Query().Get("ns")
	if ns == "" {
		return name
	}
	t, err := s.router.resolve(name, ns)
	if err != nil {
		return name
	}
	if t.up == s.router.def {
		bare := name
		if first, rest, ok := strings.Cut(name, "/"); ok && first == t.up.Name() {
			bare = rest
		}
		if plain, err := s.router.resolve(bare, ""); err == nil && plain.up == t.up && plain.repo == t.repo {
			return bare
		}
	}
	return t.String()
}

// mayPull applies the access rules to the request's target. A name that
// routes to no upstream matches no rule: denied like any other, so the
// answer tells nothing about the proxy's upstreams either.
func (s *Server) mayPull(r *http.Request, user string) bool {
	pol := s.policy.Load().Policy()
	if len(pol.Access) == 0 {
		return true
	}
	t, err := s.target(r)
	if err != nil {
		return false
	}
	return pol.MayPull(user, t.String()).Allow
}

// refuseAuth answers a request the access controller did not authorize:
// 401 with the controller's challenge, 429 with Retry-After to a client
// past its budget of refused logins (auth_cache.go), or 503 when it could
// not decide (htpasswd file unreadable): failing closed.
func (s *Server) refuseAuth(w http.ResponseWriter, r *http.Request, err error) {
	var limited *loginRateError
	if errors.As(err, &limited) {
		s.logRefusal(r.Context(), "rate "+loginClient(r.RemoteAddr), "client login rate limited", slog.String("client", loginClient(r.RemoteAddr)), slog.String("path", clip(r.URL.Path, 300)))
		w.Header().Set("Retry-After", limited.retryAfterHeader())
		writeOCIError(w, ociError{status: http.StatusTooManyRequests, code: errcode.ErrorCodeTooManyRequests, msg: "notarize-proxy: " + limited.Error()})
		return
	}
	var ch auth.Challenge
	if !errors.As(err, &ch) {
		s.log.LogAttrs(r.Context(), slog.LevelError, "client authentication failed", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		writeOCIError(w, ociError{status: http.StatusServiceUnavailable, code: errcode.ErrorCodeUnavailable, msg: "notarize-proxy: client authentication is unavailable"})
		return
	}
	attrs := []slog.Attr{slog.String("path", clip(r.URL.Path, 300)), slog.String("reason", clip(authReason(err), 200))}
	if r.Header.Get("Authorization") != "" { // wrong credentials: once per client and reason per interval
		s.logRefusal(r.Context(), "auth "+loginClient(r.RemoteAddr)+" "+clip(authReason(err), 200), "client not authenticated",
			append(attrs, slog.String("client", loginClient(r.RemoteAddr)))...)
	} else { // clients ask without credentials first
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "client not authenticated", attrs...)
	}
	ch.SetHeaders(r, w)
	writeOCIError(w, ociError{status: http.StatusUnauthorized, code: errcode.ErrorCodeUnauthorized, msg: "authentication required"})
}

// authReason is the controller's reason without the realm prefix that the
// htpasswd challenge adds.
func authReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "basic authentication challenge") {
		return msg[i+2:]
	}
	return msg
}
