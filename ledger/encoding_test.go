package ledger

import (
	"bytes"
	"crypto"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestReEncodedEntriesRefused replays issue 8, class 3: on a ledger whose
// writes are limited to enrolled keys, an outsider holding an enrolled
// signer's entry re-spelled it (base64 with line breaks, CRLF, URL-safe
// alphabet, the high-S twin, the keyid dropped, text around the PEM key, the
// PEM re-wrapped, 100 padded variants) and each was logged as a new entry.
// Each must now be a 400 and the log must not grow. So must statements the
// signer signed holding invalid UTF-8 or in non-canonical JSON.
func TestReEncodedEntriesRefused(t *testing.T) {
	signer := newTestSigner(t)
	tl := startLedger(t, Config{Signers: []crypto.PublicKey{signer.pub}})
	d := randomDigest(t)
	honest := signer.sign(t, d, notarize.StatusTrusted, time.Now())
	rec := tl.submit(t, honest, http.StatusCreated)
	size := func() uint64 {
		t.Helper()
		info, err := tl.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.Size
	}
	before := size()

	refused := func(t *testing.T, body []byte, wantMsg string) {
		t.Helper()
		status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, body)
		er := decodeError(t, b)
		if status != http.StatusBadRequest || (er.Code != api.CodeBadRequest && er.Code != api.CodeBadSignature) {
			t.Fatalf("got %d %+v, want 400 %s or %s", status, er, api.CodeBadRequest, api.CodeBadSignature)
		}
		if !strings.Contains(er.Message, wantMsg) {
			t.Fatalf("message %q does not say %q", er.Message, wantMsg)
		}
	}
	good := mustMarshal(t, honest)
	for _, re := range notarizetest.ReEncodings(t, honest) {
		t.Run(re.Name, func(t *testing.T) {
			if bytes.Equal(re.Body, good) {
				t.Fatal("not a re-encoding")
			}
			refused(t, re.Body, notarize.ErrNotCanonical.Error())
		})
	}
	t.Run("100 padded variants", func(t *testing.T) {
		for _, b := range notarizetest.PaddedReEncodings(t, honest, 100) {
			refused(t, b, notarize.ErrNotCanonical.Error())
		}
	})

	stmt, err := notarize.NewStatement(randomDigest(t), "registry.example/app:1", notarize.Predicate{
		Status: notarize.StatusTrusted, Name: "release", Timestamp: time.Now().UTC().Truncate(time.Second),
	}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, msg string }{
		{"invalid UTF-8 in the statement", `"name":"release"`, "\"name\":\"rel\xffase\"", "UTF-8"},
		{"non-canonical statement JSON", `"status":"trusted"`, `"status" : "trusted"`, notarize.ErrNotCanonical.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(stmt, []byte(tc.old)) {
				t.Fatalf("%q not in %s", tc.old, stmt)
			}
			payload := bytes.Replace(stmt, []byte(tc.old), []byte(tc.new), 1)
			refused(t, mustMarshal(t, signer.signRaw(t, notarize.PayloadType, payload)), tc.msg)
		})
	}

	if got := size(); got != before {
		t.Fatalf("log size %d after the refusals, want %d", got, before)
	}
	if again := tl.submit(t, honest, http.StatusOK); again.Index != rec.Index {
		t.Fatalf("exact replay logged at %d, want the existing %d", again.Index, rec.Index)
	}
	if n := len(tl.lookup(t, d).Entries); n != 1 {
		t.Fatalf("lookup: %d entries, want the honest one", n)
	}
}
