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

	"github.com/notarize/docker-notarize/ledger/api"

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
		{"body over the bound", "POST", api.PathEntries, bytes.Repeat([]byte(" "), notarize.MaxEntrySize+1), 413, api.CodeTooLarge},
		{"empty body", "POST", api.PathEntries, []byte{}, 400, api.CodeBadRequest},
		{"malformed JSON", "POST", api.PathEntries, []byte(`{"envelope":`), 400, api.CodeBadRequest},
		{"JSON array", "POST", api.PathEntries, []byte(`[1,2]`), 400, api.CodeBadRequest},
		{"trailing data", "POST", api.PathEntries, append(mustMarshal(t, valid()), []byte(`{}`)...), 400, api.CodeBadRequest},
		{"unknown field", "POST", api.PathEntries, []byte(strings.Replace(string(mustMarshal(t, valid())), `{`, `{"extra":1,`, 1)), 400, api.CodeBadRequest},
		{"missing public key", "POST", api.PathEntries, body(func(e *notarize.Entry) { e.PublicKey = "" }), 400, api.CodeBadRequest},
		{"garbage public key", "POST", api.PathEntries, body(func(e *notarize.Entry) { e.PublicKey = "not a key" }), 400, api.CodeBadSignature},
		{"tampered payload", "POST", api.PathEntries, body(func(e *notarize.Entry) {
			p, _ := base64.StdEncoding.DecodeString(e.Envelope.Payload)
			p = bytes.Replace(p, []byte("trusted"), []byte("untrusted"), 1)
			e.Envelope.Payload = base64.StdEncoding.EncodeToString(p)
		}), 400, api.CodeBadSignature},
		{"tampered signature", "POST", api.PathEntries, body(func(e *notarize.Entry) {
			sig, _ := base64.StdEncoding.DecodeString(e.Envelope.Signatures[0].Sig)
			sig[len(sig)-1] ^= 1
			e.Envelope.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
		}), 400, api.CodeBadSignature},
		{"key of another signer", "POST", api.PathEntries, body(func(e *notarize.Entry) {
			e.PublicKey = other.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()).PublicKey
			e.Envelope.Signatures[0].KeyID = ""
		}), 400, api.CodeBadSignature},
		{"two signatures", "POST", api.PathEntries, body(func(e *notarize.Entry) {
			e.Envelope.Signatures = append(e.Envelope.Signatures, e.Envelope.Signatures[0])
		}), 400, api.CodeBadSignature},
		{"no signature", "POST", api.PathEntries, body(func(e *notarize.Entry) { e.Envelope.Signatures = nil }), 400, api.CodeBadSignature},
		{"payload not base64", "POST", api.PathEntries, body(func(e *notarize.Entry) { e.Envelope.Payload = "%%%" }), 400, api.CodeBadRequest},
		{"wrong payload type", "POST", api.PathEntries, rawEntry("text/plain", stmtJSON(func(map[string]any) {})), 400, api.CodeBadRequest},
		{"payload not a statement", "POST", api.PathEntries, rawEntry(notarize.PayloadType, []byte(`"hello"`)), 400, api.CodeBadRequest},
		{"wrong statement type", "POST", api.PathEntries, rawEntry(notarize.PayloadType, stmtJSON(func(m map[string]any) { m["_type"] = "https://in-toto.io/Statement/v0.1" })), 400, api.CodeBadRequest},
		{"bad subject digest", "POST", api.PathEntries, rawEntry(notarize.PayloadType, stmtJSON(func(m map[string]any) {
			m["subject"] = []any{map[string]any{"name": "x", "digest": map[string]any{"sha256": "NOTHEX"}}}
		})), 400, api.CodeBadRequest},
		{"unknown status", "POST", api.PathEntries, rawEntry(notarize.PayloadType, stmtJSON(func(m map[string]any) {
			m["predicate"].(map[string]any)["status"] = "maybe"
		})), 400, api.CodeBadRequest},
		{"dated in the future", "POST", api.PathEntries, mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now().Add(DefaultMaxFutureSkew+time.Hour))), 400, api.CodeFuture},

		{"GET entries", "GET", api.PathEntries, nil, 405, api.CodeMethod},
		{"POST checkpoint", "POST", "/checkpoint", []byte("x"), 405, api.CodeMethod},
		{"DELETE info", "DELETE", api.PathInfo, nil, 405, api.CodeMethod},
		{"PUT tile", "PUT", "/tile/0/000", []byte("x"), 405, api.CodeMethod},
		{"unknown path", "GET", "/nope", nil, 404, api.CodeNotFound},
		{"unknown API version", "GET", "/api/v2/info", nil, 404, api.CodeNotFound},
		{"lookup without digest", "GET", api.PathDigests, nil, 404, api.CodeNotFound},
		{"lookup bad digest", "GET", api.PathDigests + "sha256:XYZ", nil, 400, api.CodeBadRequest},
		{"lookup other algorithm", "GET", api.PathDigests + "md5:d41d8cd98f00b204e9800998ecf8427e", nil, 400, api.CodeBadRequest},
		{"lookup uppercase hex", "GET", api.PathDigests + strings.ToUpper(string(randomDigest(t))), nil, 400, api.CodeBadRequest},
		{"tile bad index", "GET", "/tile/0/abc", nil, 400, api.CodeBadRequest},
		{"tile bad level", "GET", "/tile/64/000", nil, 400, api.CodeBadRequest},
		{"tile bad width", "GET", "/tile/0/000.p/256", nil, 400, api.CodeBadRequest},
		{"tile missing", "GET", "/tile/0/x001/000", nil, 404, api.CodeNotFound},
		{"tile too wide", "GET", "/tile/0/000.p/200", nil, 404, api.CodeNotFound},
		{"bundle missing", "GET", "/tile/entries/x001/000", nil, 404, api.CodeNotFound},
		{"bundle bad index", "GET", "/tile/entries/1", nil, 400, api.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, b := do(t, tc.method, tl.url+tc.path, tc.body)
			er := decodeError(t, b)
			if status != tc.wantStatus || er.Code != tc.wantCode {
				t.Fatalf("got %d %+v, want %d %s", status, er, tc.wantStatus, tc.wantCode)
			}
			if ct := h.Get("Content-Type"); ct != api.MediaTypeJSON {
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
			l, err := openPOSIX(t, ledgerDir(t), Config{})
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
			l.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, api.PathEntries, bytes.NewReader(body)))
			er := decodeError(t, rec.Body.Bytes())
			if rec.Code != http.StatusServiceUnavailable || er.Code != api.CodeUnavailable {
				t.Fatalf("got %d %+v, want 503 UNAVAILABLE", rec.Code, er)
			}
			if rec.Header().Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
		})
	}
}
