package ledgerclient

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
)

// TestParseRetryAfter: Retry-After in seconds or as an HTTP date (the three
// date forms RFC 9110 accepts), bounded by MaxRetryAfter; anything else,
// or a date already past, is no wait.
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"6", 6 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"3600", MaxRetryAfter},
		{"3601", MaxRetryAfter},
		{"99999999999999999999999", MaxRetryAfter}, // overflows uint64
		{"Mon, 30 Nov 2026 16:00:30 GMT", 30 * time.Second},
		{"Monday, 30-Nov-26 16:01:00 GMT", time.Minute},
		{"Mon Nov 30 16:00:10 2026", 10 * time.Second},
		{"Mon, 30 Nov 2026 15:59:00 GMT", 0},             // past
		{"Tue, 01 Dec 2026 16:00:00 GMT", MaxRetryAfter}, // a day: bounded
		{"-5", 0},
		{"1.5", 0},
		{"6s", 0},
		{"soon", 0},
		{strings.Repeat("9", maxRetryAfterLen+1), 0},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestAPIErrorRetryAfter: a 429 or 503 answer's Retry-After is carried by
// the APIError and said in its message; another status's is not (a 500's
// Retry-After is no promise), and the client sends the submission once.
func TestAPIErrorRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		status int
		header string
		want   time.Duration
	}{
		{http.StatusTooManyRequests, "7", 7 * time.Second},
		{http.StatusServiceUnavailable, "1", time.Second},
		{http.StatusServiceUnavailable, "", 0},
		{http.StatusTooManyRequests, "86400", MaxRetryAfter},
		{http.StatusInternalServerError, "7", 0},
	} {
		requests := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests++
			if tc.header != "" {
				w.Header().Set("Retry-After", tc.header)
			}
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(`{"code":"UNAVAILABLE","message":"busy"}`))
		}))
		u := mustURL(t, srv.URL)
		h, err := newHTTPOps(u, srv.Client(), "test")
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.Submit(t.Context(), []byte("{}")) // a submission is never retried; a read would be (retry.go)
		srv.Close()
		ae, ok := errors.AsType[*APIError](err)
		if !ok || ae.StatusCode != tc.status || ae.RetryAfter != tc.want {
			t.Errorf("HTTP %d, Retry-After %q: %#v, want RetryAfter %v", tc.status, tc.header, err, tc.want)
			continue
		}
		if said := strings.Contains(err.Error(), "try again in "+tc.want.String()); said != (tc.want > 0) {
			t.Errorf("HTTP %d, Retry-After %q: message %q", tc.status, tc.header, err)
		}
		if requests != 1 {
			t.Errorf("HTTP %d: %d requests, want 1 (no retry)", tc.status, requests)
		}
	}
}

// mustURL parses a test server's URL.
func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
