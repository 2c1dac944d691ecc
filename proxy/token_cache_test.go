package proxy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
)

// bearerCounter grants a request whose bearer token is good and
// counts how often it was asked.
type bearerCounter struct {
	calls int
	good  string
}

func (c *bearerCounter) Authorized(r *http.Request, access ...auth.Access) (*auth.Grant, error) {
	c.calls++
	if r.Header.Get("Authorization") != "Bearer "+c.good {
		return nil, errors.New("refused")
	}
	return &auth.Grant{User: auth.UserInfo{Name: "alice"}}, nil
}

// jwtWithExp is a token shaped like a JWT whose payload has only "exp".
func jwtWithExp(exp time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d}`, exp.Unix()))
	return "e30." + payload + ".c2ln"
}

// TestTokenCache: a verified token is remembered for the access it was
// checked for, until its expiry or a minute; another access, a refused
// token or an expired one go to the token controller again.
func TestTokenCache(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	token := jwtWithExp(now.Add(30 * time.Second))
	inner := &bearerCounter{good: token}
	c := newTokenCache(inner)
	c.now = func() time.Time { return now }
	repoA := auth.Access{Resource: auth.Resource{Type: "repository", Name: "local/a"}, Action: "pull"}
	repoB := auth.Access{Resource: auth.Resource{Type: "repository", Name: "local/b"}, Action: "pull"}
	ask := func(tok string, access ...auth.Access) error {
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := c.Authorized(r, access...)
		return err
	}

	for range 3 {
		if err := ask(token, repoA); err != nil {
			t.Fatal(err)
		}
	}
	if inner.calls != 1 {
		t.Fatalf("three requests with one token: %d verifications, want 1", inner.calls)
	}
	if err := ask(token, repoB); err != nil || inner.calls != 2 {
		t.Fatalf("another repository: err %v, %d verifications, want it verified for that access", err, inner.calls)
	}
	for range 2 {
		if err := ask("forged", repoA); err == nil {
			t.Fatal("a forged token was accepted")
		}
	}
	if inner.calls != 4 {
		t.Fatalf("refused tokens: %d verifications, want each verified (never remembered)", inner.calls)
	}
	now = now.Add(31 * time.Second) // past the token's expiry, within the minute
	inner.good = "rotated"          // the controller would refuse it now
	if err := ask(token, repoA); err == nil {
		t.Fatal("an expired token was taken from the cache")
	}
	long := jwtWithExp(now.Add(time.Hour))
	inner.good = long
	if err := ask(long, repoA); err != nil {
		t.Fatal(err)
	}
	now = now.Add(61 * time.Second)
	calls := inner.calls
	if err := ask(long, repoA); err != nil || inner.calls != calls+1 {
		t.Fatalf("after a minute: err %v, verifications %d, want a new verification", err, inner.calls-calls)
	}
}
