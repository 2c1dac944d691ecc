package kmshelper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/plugin/kmswire"
)

// Requests that are malformed, of another version or too large are refused
// with bad-request, before any provider is asked.
func TestServeRefusesBadRequests(t *testing.T) {
	big := `{"version":1,"op":"sign","uri":"awskms:///alias/x","hash":"sha256","message":"` + strings.Repeat("A", kmswire.MaxRequest) + `"}`
	for _, tc := range []struct{ name, req, want string }{
		{"another version", `{"version":2,"op":"public-key","uri":"awskms:///alias/x","hash":"sha256"}`, "protocol version 2"},
		{"no version", `{"op":"public-key","uri":"awskms:///alias/x","hash":"sha256"}`, "protocol version 0"},
		{"unknown op", `{"version":1,"op":"delete-key","uri":"awskms:///alias/x","hash":"sha256"}`, `unknown op "delete-key"`},
		{"unknown field", `{"version":1,"op":"public-key","uri":"awskms:///alias/x","hash":"sha256","keyring":"k"}`, "unknown field"},
		{"unknown hash", `{"version":1,"op":"public-key","uri":"awskms:///alias/x","hash":"md5"}`, `hash "md5"`},
		{"sign without a message", `{"version":1,"op":"sign","uri":"awskms:///alias/x","hash":"sha256"}`, "message missing"},
		{"public-key with a message", `{"version":1,"op":"public-key","uri":"awskms:///alias/x","hash":"sha256","message":"AA=="}`, "message not expected"},
		{"two requests", `{"version":1,"op":"public-key","uri":"awskms:///alias/x","hash":"sha256"} {}`, "more than one JSON value"},
		{"too large", big, "more than"},
		{"negative timeout", `{"version":1,"op":"public-key","uri":"awskms:///alias/x","hash":"sha256","timeoutMillis":-1}`, "negative"},
		{"not JSON", `hello`, "request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := Serve(t.Context(), strings.NewReader(tc.req))
			if resp.Error == nil || resp.Error.Code != kmswire.CodeBadRequest || !strings.Contains(resp.Error.Message, tc.want) {
				t.Fatalf("got %+v, want %s saying %q", resp.Error, kmswire.CodeBadRequest, tc.want)
			}
			if resp.Version != kmswire.Version {
				t.Fatalf("error response of version %d", resp.Version)
			}
		})
	}
}

// Only the four providers are served. sigstore's kms.Get runs a program
// "sigstore-kms-SCHEME" from PATH for any scheme it has no provider for;
// the helper never gets that far.
func TestServeRunsNothingForOtherSchemes(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	for _, name := range []string{"sigstore-kms-evil", "sigstore-kms-k8s"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, uri := range []string{"evil://key", "k8s://ns/secret", "awskms:", "awskms://", "file:///etc/passwd", "pkcs11:token=t"} {
		req, _ := json.Marshal(kmswire.Request{Version: kmswire.Version, Op: kmswire.OpPublicKey, URI: uri, Hash: "sha256"})
		resp := Serve(t.Context(), bytes.NewReader(req))
		if resp.Error == nil || resp.Error.Code != kmswire.CodeUnsupported {
			t.Errorf("%s: got %+v, want %s", uri, resp.Error, kmswire.CodeUnsupported)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a sigstore-kms-* program on PATH was run")
	}
}

// A provider that does not answer within the request's timeout is reported
// as a timeout, not a hang.
func TestServeTimeout(t *testing.T) {
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); stuck.Close() })
	t.Setenv("VAULT_ADDR", stuck.URL)
	t.Setenv("VAULT_TOKEN", "test")
	req, _ := json.Marshal(kmswire.Request{Version: kmswire.Version, Op: kmswire.OpPublicKey, URI: "hashivault://release", Hash: "sha256", TimeoutMillis: 300})
	resp := Serve(context.Background(), bytes.NewReader(req))
	if resp.Error == nil || resp.Error.Code != kmswire.CodeTimeout {
		t.Fatalf("got %+v, want %s", resp.Error, kmswire.CodeTimeout)
	}
}

// Main takes no arguments and answers with the exit code of the outcome.
func TestMainUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main([]string{kmswire.HelperName, "--help"}, strings.NewReader(""), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "KMS helper") || out.Len() != 0 {
		t.Fatalf("--help: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := Main([]string{kmswire.HelperName}, strings.NewReader(`{"version":1,"op":"public-key","uri":"evil://x","hash":"sha256"}`), &out, &errOut); code != 1 {
		t.Fatalf("refused request: exit %d", code)
	}
	resp, err := kmswire.Decode(out.Bytes())
	if err != nil || resp.Error == nil || resp.Error.Code != kmswire.CodeUnsupported {
		t.Fatalf("response %q: %+v, %v", out.String(), resp, err)
	}
}
