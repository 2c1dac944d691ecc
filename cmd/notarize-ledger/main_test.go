package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"
	"github.com/notarize/docker-notarize/ledger/api"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger/storage/posix"
)

func noEnv(string) string { return "" }

func TestRunServesAndShutsDown(t *testing.T) {
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, "cmd.example/ledger")
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == envSignerKey {
			return skey
		}
		return ""
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--data", dir, "--log-format", "json", "--log-level", "debug"}, env, &stdout, &stderr, nil)
	}()
	urlRE := regexp.MustCompile(`serving (http://127\.0\.0\.1:\d+)`)
	var url string
	for deadline := time.Now().Add(20 * time.Second); url == ""; {
		if m := urlRE.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed:\n%s\n%s", stdout.String(), stderr.String())
		}
	}
	resp, err := http.Get(url + api.PathInfo)
	if err != nil {
		t.Fatal(err)
	}
	var info api.Info
	err = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if err != nil || info.VerifierKey != vkey || info.Origin != "cmd.example/ledger" {
		t.Fatalf("info %+v, %v; want the key from $%s", info, err, envSignerKey)
	}
	if !strings.Contains(stdout.String(), vkey) || !strings.Contains(stderr.String(), `"verifier_key":"`+vkey+`"`) {
		t.Errorf("verifier key not printed and logged:\n%s\n%s", stdout.String(), stderr.String())
	}
	pub, err := os.ReadFile(filepath.Join(dir, posix.PubFile))
	if err != nil || strings.TrimSpace(string(pub)) != vkey {
		t.Errorf("%s: %q, %v", posix.PubFile, pub, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no clean stop logged:\n%s", stderr.String())
	}
}

func TestRunVersion(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, noEnv, &stdout, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "notarize-ledger ") {
		t.Fatalf("version output %q", stdout.String())
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // substring; "usage" means errUsage
	}{
		{"unknown flag", []string{"--nope"}, "usage"},
		{"stray argument", []string{"serve"}, "usage"},
		{"bad log format", []string{"--log-format", "xml"}, "--log-format"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"missing key file", []string{"--key-file", filepath.Join(dir, "missing")}, "--key-file"},
		{"bad key file", []string{"--key-file", garbage, "--data", dir}, "note signer key"},
		{"missing signers file", []string{"--signers", filepath.Join(dir, "missing")}, "--signers"},
		{"bad signers file", []string{"--signers", garbage}, "--signers"},
		{"bad origin", []string{"--origin", "has space", "--data", dir}, "origin"},
		{"checkpoint interval too short", []string{"--checkpoint-interval", "1ms", "--data", dir}, "CheckpointInterval"},
		{"negative rate", []string{"--rate-key", "-1", "--data", dir}, "--rate-key"},
		{"zero burst", []string{"--rate-client-burst", "0", "--data", dir}, "--rate-client-burst"},
		{"bad trusted proxy", []string{"--trusted-proxy", "10.0.0.0/33"}, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t.Context(), tc.args, noEnv, io.Discard, io.Discard, nil)
			switch {
			case tc.wantErr == "usage" && !errors.Is(err, errUsage):
				t.Fatalf("got %v, want a usage error", err)
			case tc.wantErr != "usage" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}
