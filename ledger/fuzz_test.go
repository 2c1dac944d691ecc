package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"

	"github.com/notarize/docker-notarize/notarize"
)

// FuzzSubmit posts arbitrary bodies to the submit handler: whatever comes
// in, the answer is a receipt or a JSON 4xx, never a 5xx or a panic.
func FuzzSubmit(f *testing.F) {
	s := newTestSigner(f)
	valid := mustMarshal(f, s.sign(f, randomDigest(f), notarize.StatusTrusted, time.Now()))
	for _, seed := range [][]byte{
		valid,
		bytes.Replace(valid, []byte(`"publicKey"`), []byte(`"publicKey" `), 1),
		bytes.Replace(valid, []byte("application/vnd.in-toto+json"), []byte("text/plain"), 1),
		bytes.Replace(valid, []byte(`"sig":"`), []byte(`"sig":"AA`), 1),
		valid[:len(valid)/2],
		mustMarshal(f, s.sign(f, randomDigest(f), notarize.StatusUntrusted, time.Now().Add(24*time.Hour))),
		[]byte(`{}`), []byte(`null`), []byte(`[]`), []byte(``), []byte(`"x"`),
		[]byte(`{"envelope":{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]},"publicKey":"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n"}`),
		[]byte(strings.Repeat(`{"a":`, 1000)),
	} {
		f.Add(seed)
	}
	l, err := openPOSIX(f, f.TempDir(), Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			f.Error(err)
		}
	})
	h := l.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, api.PathEntries, bytes.NewReader(body)))
		switch {
		case rec.Code == http.StatusOK || rec.Code == http.StatusCreated:
			var r api.Receipt
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || len(r.Entry) == 0 || r.Checkpoint == "" {
				t.Fatalf("status %d with a bad receipt: %v: %s", rec.Code, err, rec.Body.Bytes())
			}
		case rec.Code >= 400 && rec.Code < 500:
			var er api.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Code == "" {
				t.Fatalf("status %d without a JSON error: %s", rec.Code, rec.Body.Bytes())
			}
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.Bytes())
		}
	})
}
