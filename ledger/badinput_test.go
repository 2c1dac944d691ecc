package ledger

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
)

func TestBadInput(t *testing.T) {
	tl := startLedger(t, Config{})
	s, other := newTestSigner(t), newTestSigner(t)
	valid := func() *notarize.Entry { return s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()) }
	body := func(mutate func(e *notarize.Entry)) []byte {
		e := valid()
		mutate(e)
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	stmtJSON := func(mutate func(m map[string]any)) []byte {
		st := notarize.NewStatement(randomDigest(t), "x", notarize.Predicate{Status: notarize.StatusTrusted, Timestamp: time.Now().UTC()})
		b, _ := json.Marshal(st)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		mutate(m)
		b, _ = json.Marshal(m)
		return b
	}
	rawEntry := func(payloadType string, payload []byte) []byte {
		return mustMarshal(t, s.signRaw(t, payloadType, payload))
	}

	for _, tc := range []struct {
		name       string
		method     string
		path       string
		body       []byte
		wantStatus int
		wantCode   string
	}{
		{"body over the bound", "POST", ledgerclient.PathEntries, bytes.Repeat([]byte(" "), notarize.MaxEntrySize+1), 413, ledgerclient.CodeTooLarge},
		{"empty body", "POST", ledgerclient.PathEntries, []byte{}, 400, ledgerclient.CodeBadRequest},
		{"malformed JSON", "POST", ledgerclient.PathEntries, []byte(`{"envelope":`), 400, ledgerclient.CodeBadRequest},
		{"JSON array", "POST", ledgerclient.PathEntries, []byte(`[1,2]`), 400, ledgerclient.CodeBadRequest},
		{"trailing data", "POST", ledgerclient.PathEntries, append(mustMarshal(t, valid()), []byte(`{}`)...), 400, ledgerclient.CodeBadRequest},
		{"unknown field", "POST", ledgerclient.PathEntries, []byte(strings.Replace(string(mustMarshal(t, valid())), `{`, `{"extra":1,`, 1)), 400, ledgerclient.CodeBadRequest},
		{"missing public key", "POST", ledgerclient.PathEntries, body(func(e *notarize.Entry) { e.PublicKey = "" }), 400, ledgerclient.CodeBadRequest},
		{"garbage public key", "POST", ledgerclient.PathEntries, body(func(e *notarize.Entry) { e.PublicKey = "not a key" }), 400, ledgerclient.CodeBadSignature},
		{"tampered payload", "POST", ledgerclient.PathEntries, body(func(e *notarize.Entry) {
			p, _ := base64.StdEncoding.DecodeString(e.Envelope.Payload)
			p = bytes.Replace(p, []byte("trusted"), []byte("untrusted"), 1)
			e.Envelope.Payload = base64.StdEncoding.EncodeToString(p)
		}), 400, ledgerclient.CodeBadSignature},
		{"tampered signature", "POST", ledgerclient.PathEntries, body(func(e *notarize.Entry) {
			sig, _ := base64.StdEncoding.DecodeString(e.Envelope.Signatures[0].Sig)
			sig[len(sig)-1] ^= 1
			e.Envelope.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
		}), 400, ledgerclient.CodeBadSignature},
		{"key of another signer", "POST", ledgerclient.PathEntries, body(func(e *notarize.Entry) {
			e.PublicKey = other.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()).PublicKey
			e.Envelope.Signatures[0].KeyID = ""
		}), 400, ledgerclient.CodeBadSignature},
		{"two signatures", "POST", ledgerclient.PathEntries, body(func(e *notarize.Entry) {
			e.Envelope.Signatures = append(e.Envelope.Signatures, e.Envelope.Signatures[0])
		}), 400, ledgerclient.CodeBadSignature},
		{"no signature", "POST", ledgerclient.PathEntries, body(func(e *notarize.Entry) { e.Envelope.Signatures = nil }), 400, ledgerclient.CodeBadSignature},
		{"payload not base64", "POST", ledgerclient.PathEntries, body(func(e *notarize.Entry) { e.Envelope.Payload = "%%%" }), 400, ledgerclient.CodeBadRequest},
		{"wrong payload type", "POST", ledgerclient.PathEntries, rawEntry("text/plain", stmtJSON(func(map[string]any) {})), 400, ledgerclient.CodeBadRequest},
		{"payload not a statement", "POST", ledgerclient.PathEntries, rawEntry(notarize.PayloadType, []byte(`"hello"`)), 400, ledgerclient.CodeBadRequest},
		{"wrong statement type", "POST", ledgerclient.PathEntries, rawEntry(notarize.PayloadType, stmtJSON(func(m map[string]any) { m["_type"] = "https://in-toto.io/Statement/v0.1" })), 400, ledgerclient.CodeBadRequest},
		{"bad subject digest", "POST", ledgerclient.PathEntries, rawEntry(notarize.PayloadType, stmtJSON(func(m map[string]any) {
			m["subject"] = []any{map[string]any{"name": "x", "digest": map[string]any{"sha256": "NOTHEX"}}}
		})), 400, ledgerclient.CodeBadRequest},
		{"unknown status", "POST", ledgerclient.PathEntries, rawEntry(notarize.PayloadType, stmtJSON(func(m map[string]any) {
			m["predicate"].(map[string]any)["status"] = "maybe"
		})), 400, ledgerclient.CodeBadRequest},
		{"dated in the future", "POST", ledgerclient.PathEntries, mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now().Add(DefaultMaxFutureSkew+time.Hour))), 400, ledgerclient.CodeFuture},

		{"GET entries", "GET", ledgerclient.PathEntries, nil, 405, ledgerclient.CodeMethod},
		{"POST checkpoint", "POST", "/checkpoint", []byte("x"), 405, ledgerclient.CodeMethod},
		{"DELETE info", "DELETE", ledgerclient.PathInfo, nil, 405, ledgerclient.CodeMethod},
		{"PUT tile", "PUT", "/tile/0/000", []byte("x"), 405, ledgerclient.CodeMethod},
		{"unknown path", "GET", "/nope", nil, 404, ledgerclient.CodeNotFound},
		{"unknown API version", "GET", "/api/v2/info", nil, 404, ledgerclient.CodeNotFound},
		{"lookup without digest", "GET", ledgerclient.PathDigests, nil, 404, ledgerclient.CodeNotFound},
		{"lookup bad digest", "GET", ledgerclient.PathDigests + "sha256:XYZ", nil, 400, ledgerclient.CodeBadRequest},
		{"lookup other algorithm", "GET", ledgerclient.PathDigests + "md5:d41d8cd98f00b204e9800998ecf8427e", nil, 400, ledgerclient.CodeBadRequest},
		{"lookup uppercase hex", "GET", ledgerclient.PathDigests + strings.ToUpper(string(randomDigest(t))), nil, 400, ledgerclient.CodeBadRequest},
		{"tile bad index", "GET", "/tile/0/abc", nil, 400, ledgerclient.CodeBadRequest},
		{"tile bad level", "GET", "/tile/64/000", nil, 400, ledgerclient.CodeBadRequest},
		{"tile bad width", "GET", "/tile/0/000.p/256", nil, 400, ledgerclient.CodeBadRequest},
		{"tile missing", "GET", "/tile/0/x001/000", nil, 404, ledgerclient.CodeNotFound},
		{"tile too wide", "GET", "/tile/0/000.p/200", nil, 404, ledgerclient.CodeNotFound},
		{"bundle missing", "GET", "/tile/entries/x001/000", nil, 404, ledgerclient.CodeNotFound},
		{"bundle bad index", "GET", "/tile/entries/1", nil, 400, ledgerclient.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, b := do(t, tc.method, tl.url+tc.path, tc.body)
			er := decodeError(t, b)
			if status != tc.wantStatus || er.Code != tc.wantCode {
				t.Fatalf("got %d %+v, want %d %s", status, er, tc.wantStatus, tc.wantCode)
			}
			if ct := h.Get("Content-Type"); ct != ledgerclient.MediaTypeJSON {
				t.Errorf("Content-Type %q", ct)
			}
			if status == http.StatusMethodNotAllowed && h.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	// None of the refused submissions reached the log.
	info, err := tl.Info(t.Context())
	if err != nil || info.Size != 0 {
		t.Fatalf("log size %d (%v) after refusals, want 0", info.Size, err)
	}
}

// TestUnavailable checks that overload (Tessera pushback, too many
// submissions in flight) and shutdown answer 503 with Retry-After.
func TestUnavailable(t *testing.T) {
	s := newTestSigner(t)
	for _, tc := range []struct {
		name  string
		setup func(l *Ledger)
	}{
		{"tessera pushback", func(l *Ledger) {
			l.add = func(context.Context, *tessera.Entry) tessera.IndexFuture {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackIntegration }
			}
		}},
		{"antispam pushback", func(l *Ledger) {
			l.add = func(context.Context, *tessera.Entry) tessera.IndexFuture {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackAntispam }
			}
		}},
		{"too many in flight", func(l *Ledger) {
			for range cap(l.inflight) {
				l.inflight <- struct{}{}
			}
		}},
		{"closing", func(l *Ledger) { l.closing.Store(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(t.Context(), Config{DataDir: t.TempDir(), Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				l.closing.Store(false)
				if err := l.Close(context.Background()); err != nil {
					t.Error(err)
				}
			}()
			tc.setup(l)
			rec := httptest.NewRecorder()
			body := mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
			l.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, ledgerclient.PathEntries, bytes.NewReader(body)))
			er := decodeError(t, rec.Body.Bytes())
			if rec.Code != http.StatusServiceUnavailable || er.Code != ledgerclient.CodeUnavailable {
				t.Fatalf("got %d %+v, want 503 UNAVAILABLE", rec.Code, er)
			}
			if rec.Header().Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
		})
	}
}
