package ledgerclient

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// testOps returns httpOps for a test server running h.
func testOps(t *testing.T, h http.Handler) (*httpOps, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := parseLedgerURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	o, err := newHTTPOps(u, srv.Client(), "docker-notarize/test")
	if err != nil {
		t.Fatal(err)
	}
	return o, srv
}

func TestHTTPOps(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // "METHOD path" -> User-Agent
	mux := http.NewServeMux()
	record := func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen[r.Method+" "+r.URL.Path] = r.UserAgent()
	}
	mux.HandleFunc("GET /checkpoint", func(w http.ResponseWriter, r *http.Request) { record(r); io.WriteString(w, "cp") })
	mux.HandleFunc("GET /tile/0/001.p/7", func(w http.ResponseWriter, r *http.Request) { record(r); http.NotFound(w, r) })
	mux.HandleFunc("GET /tile/0/001", func(w http.ResponseWriter, r *http.Request) { record(r); io.WriteString(w, "full tile") })
	mux.HandleFunc("GET /tile/entries/x001/234", func(w http.ResponseWriter, r *http.Request) { record(r); io.WriteString(w, "bundle") })
	mux.HandleFunc("GET /api/v1/info", func(w http.ResponseWriter, r *http.Request) { record(r); io.WriteString(w, `{"origin":"o"}`) })
	mux.HandleFunc("POST /api/v1/entries", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != api.MediaTypeJSON || string(b) != `{"e":1}` {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"code":"BAD_REQUEST","message":"bad body"}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "receipt")
	})
	mux.HandleFunc("GET /api/v1/digests/{d}", func(w http.ResponseWriter, r *http.Request) { record(r); io.WriteString(w, r.PathValue("d")) })
	o, _ := testOps(t, mux)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		call func() ([]byte, error)
		want string
	}{
		{"checkpoint", func() ([]byte, error) { return o.ReadCheckpoint(ctx) }, "cp"},
		{"partial tile falls back to full", func() ([]byte, error) { return o.ReadTile(ctx, 0, 1, 7) }, "full tile"},
		{"entry bundle", func() ([]byte, error) { return o.ReadEntryBundle(ctx, 1234, 0) }, "bundle"},
		{"info", func() ([]byte, error) { return o.Info(ctx) }, `{"origin":"o"}`},
		{"submit", func() ([]byte, error) { return o.Submit(ctx, []byte(`{"e":1}`)) }, "receipt"},
		{"lookup", func() ([]byte, error) { return o.Lookup(ctx, digestA, lookupQuery{}) }, digestA.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.call()
			if err != nil || string(b) != tc.want {
				t.Fatalf("got %q, %v; want %q", b, err, tc.want)
			}
		})
	}
	for k, ua := range seen {
		if ua != "docker-notarize/test" {
			t.Errorf("%s: User-Agent %q", k, ua)
		}
	}
	if _, err := o.ReadTile(ctx, 3, 3, 0); err == nil {
		t.Fatal("missing tile: no error")
	}
}

func TestHTTPOpsAPIError(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		body       string
		code, text string
	}{
		{"json error", 400, `{"code":"BAD_SIGNATURE","message":"envelope does not verify"}`, api.CodeBadSignature, "envelope does not verify"},
		{"plain text error", 502, "bad gateway from a proxy\n", "", "bad gateway from a proxy"},
		{"empty error", 503, "", "", "Service Unavailable"},
		{"huge error", 500, strings.Repeat("x", 200<<10), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := testOps(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			_, err := o.Submit(t.Context(), []byte("{}"))
			var ae *APIError
			if tc.text == "" {
				if err == nil || errors.As(err, &ae) && len(ae.Message) > 2000 {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.As(err, &ae) || ae.StatusCode != tc.status || ae.Code != tc.code || ae.Message != tc.text {
				t.Fatalf("err = %#v", err)
			}
		})
	}
}

func TestHTTPOpsBoundsAnswers(t *testing.T) {
	big := strings.Repeat("x", MaxCheckpointSize+1)
	for _, tc := range []struct {
		name    string
		chunked bool
	}{{"with content length", false}, {"chunked", true}} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := testOps(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body := big
				if r.URL.Path != "/checkpoint" {
					body = strings.Repeat("y", maxInfoSize+1)
				}
				if !tc.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				}
				for i := 0; i < len(body); i += 1000 {
					io.WriteString(w, body[i:min(i+1000, len(body))])
					if tc.chunked {
						w.(http.Flusher).Flush()
					}
				}
			}))
			if b, err := o.ReadCheckpoint(t.Context()); err == nil {
				t.Fatalf("checkpoint of %d bytes accepted", len(b))
			}
			if b, err := o.Info(t.Context()); err == nil {
				t.Fatalf("info of %d bytes accepted", len(b))
			}
		})
	}
}

func TestHTTPOpsRedirects(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "elsewhere")
	}))
	t.Cleanup(other.Close)
	var self string
	o, srv := testOps(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/checkpoint":
			http.Redirect(w, r, other.URL+"/checkpoint", http.StatusFound)
		case "/api/v1/info":
			http.Redirect(w, r, self+"/moved/info", http.StatusMovedPermanently)
		case "/moved/info":
			io.WriteString(w, "same host")
		case "/api/v1/digests/" + digestA.String():
			http.Redirect(w, r, r.URL.Path, http.StatusFound) // a loop
		}
	}))
	self = srv.URL
	if b, err := o.ReadCheckpoint(t.Context()); err == nil || !strings.Contains(err.Error(), "another host") {
		t.Fatalf("redirect to another host: %q, %v", b, err)
	}
	if b, err := o.Info(t.Context()); err != nil || string(b) != "same host" {
		t.Fatalf("redirect on the same host: %q, %v", b, err)
	}
	if _, err := o.Lookup(t.Context(), digestA, lookupQuery{}); err == nil {
		t.Fatal("redirect loop: no error")
	}
}

func TestConfigValidate(t *testing.T) {
	_, vkey := newNoteKey(t, testOrigin)
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{URL: "http://127.0.0.1:7070", Home: "/h"}, true},
		{"with key and path", Config{URL: "https://Ledger.Example/notarize/", Home: "/h", VerifierKey: vkey}, true},
		{"no url", Config{Home: "/h"}, false},
		{"no home", Config{URL: "http://x"}, false},
		{"ftp", Config{URL: "ftp://x", Home: "/h"}, false},
		{"no host", Config{URL: "http:///path", Home: "/h"}, false},
		{"query", Config{URL: "http://x/?a=b", Home: "/h"}, false},
		{"user", Config{URL: "http://u:p@x/", Home: "/h"}, false},
		{"bad key", Config{URL: "http://x", Home: "/h", VerifierKey: "nope"}, false},
		{"negative timeout", Config{URL: "http://x", Home: "/h", Timeout: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
	u, err := parseLedgerURL("HTTPS://Ledger.Example/notarize/")
	if err != nil || u.String() != "https://ledger.example/notarize" {
		t.Fatalf("normalized URL %v, %v", u, err)
	}
}

func TestNewOverHTTP(t *testing.T) {
	// New against a server that is not a ledger fails with a clear error,
	// and a configured key means no request at all.
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	if _, err := New(t.Context(), Config{URL: srv.URL, Home: t.TempDir()}); err == nil {
		t.Fatal("no error")
	}
	_, vkey := newNoteKey(t, testOrigin)
	calls.Store(0)
	c, err := New(t.Context(), Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: vkey})
	if err != nil || calls.Load() != 0 || c.Origin() != testOrigin {
		t.Fatalf("New with a key: %v, %d calls", err, calls.Load())
	}
	if _, err := c.Lookup(t.Context(), digestA); err == nil {
		t.Fatal("lookup: no error")
	}
	calls.Store(0)
	if _, err := c.Submit(t.Context(), &notarize.Entry{}); !errors.Is(err, notarize.ErrBadEntry) || calls.Load() != 0 {
		t.Fatalf("submit of an empty entry: %v, %d calls", err, calls.Load())
	}
}
