package plugin

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/plugin/kmswire"
)

// The plugin runs the KMS helper only from the directory of its own
// executable, symlinks resolved: not from PATH, not from the directory of a
// symlink pointing at the plugin, and not when anyone could have replaced it.
func TestKMSHelperLocation(t *testing.T) {
	install := func(t *testing.T, dir string, helperMode os.FileMode) string {
		t.Helper()
		plugin := filepath.Join(dir, "docker-notarize")
		if err := os.WriteFile(plugin, []byte("plugin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if helperMode != 0 {
			h := filepath.Join(dir, kmswire.HelperName)
			if err := os.WriteFile(h, []byte("#!/bin/sh\n"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(h, helperMode); err != nil {
				t.Fatal(err)
			}
		}
		return plugin
	}
	t.Run("next to the plugin", func(t *testing.T) {
		dir := t.TempDir()
		got, err := helperNextTo(install(t, dir, 0o755))
		if err != nil || got != filepath.Join(dir, kmswire.HelperName) {
			t.Fatalf("helperNextTo = %q, %v", got, err)
		}
	})
	t.Run("next to the symlink's target, not the symlink", func(t *testing.T) {
		real, links := t.TempDir(), t.TempDir()
		plugin := install(t, real, 0o755)
		// A helper beside the symlink (e.g. planted in ~/.docker/cli-plugins
		// while the plugin lives elsewhere) is not the one run.
		install(t, links, 0o755)
		link := filepath.Join(links, "docker-notarize")
		if err := os.Remove(link); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(plugin, link); err != nil {
			t.Fatal(err)
		}
		got, err := helperNextTo(link)
		if err != nil || got != filepath.Join(real, kmswire.HelperName) {
			t.Fatalf("helperNextTo(symlink) = %q, %v; want the target's directory %s", got, err, real)
		}
	})
	t.Run("never from PATH", func(t *testing.T) {
		onPath := t.TempDir()
		install(t, onPath, 0o755)
		t.Setenv("PATH", onPath+string(os.PathListSeparator)+os.Getenv("PATH"))
		_, err := helperNextTo(install(t, t.TempDir(), 0))
		if !errors.Is(err, ErrKMSHelperMissing) || !strings.Contains(err.Error(), "make install") {
			t.Fatalf("no helper next to the plugin, one on PATH: %v, want ErrKMSHelperMissing", err)
		}
	})
	for _, tc := range []struct {
		name string
		mode os.FileMode
		want string
	}{
		{"world-writable", 0o777, "anyone may write it"},
		{"not executable", 0o644, "not executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helperNextTo(install(t, t.TempDir(), tc.mode))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helper of mode %v: %v, want %q", tc.mode, err, tc.want)
			}
		})
	}
	t.Run("in a world-writable directory", func(t *testing.T) {
		dir := t.TempDir()
		plugin := install(t, dir, 0o755)
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if _, err := helperNextTo(plugin); err == nil || !strings.Contains(err.Error(), "world-writable") {
			t.Fatalf("helper in a world-writable directory: %v", err)
		}
		if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		if _, err := helperNextTo(plugin); err != nil {
			t.Fatalf("helper in a sticky world-writable directory (as /tmp): %v", err)
		}
	})
	t.Run("a directory under its name", func(t *testing.T) {
		dir := t.TempDir()
		plugin := install(t, dir, 0)
		if err := os.Mkdir(filepath.Join(dir, kmswire.HelperName), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := helperNextTo(plugin); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("a directory as the helper: %v", err)
		}
	})
}

// fakeHelper writes a helper that ignores its request and answers with
// script (shell), and returns its path.
func fakeHelper(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), kmswire.HelperName)
	if err := os.WriteFile(p, []byte("#!/bin/sh\ncat >/dev/null\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// answering is a fake helper script that prints resp.
func answering(t *testing.T, resp any) string {
	t.Helper()
	b, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "answer.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return "cat '" + f + "'"
}

// testKMSKey is a P-256 key standing in for a KMS key.
type testKMSKey struct {
	priv   *ecdsa.PrivateKey
	pem    string
	record Key
}

func newTestKMSKey(t *testing.T) testKMSKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	id, err := notarize.KeyID(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return testKMSKey{priv: priv, pem: string(pemBytes), record: Key{Name: "release", KeyID: id, PublicKey: priv.Public()}}
}

func (k testKMSKey) sign(t *testing.T, msg string) []byte {
	t.Helper()
	s, err := signature.LoadSigner(k.priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.SignMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// signThrough signs msg as `sign` does with a KMS key: a helperSigner at
// path inside a boundSigner for recorded.
func signThrough(t *testing.T, path string, recorded Key, timeout time.Duration, msg string) error {
	t.Helper()
	uri := "awskms:///alias/release"
	hs, err := newHelperSigner(path, ProviderAWSKMS, uri, recorded)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := newBoundSigner(hs, recorded.PublicKey, timeout, func(op string, err error) error {
		return &KeyProviderError{Key: recorded.Name, Provider: ProviderAWSKMS, URI: uri, Op: op, Err: err}
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bs.SignMessage(strings.NewReader(msg))
	return err
}

// A helper is not trusted with the outcome: one that reports another key,
// or a signature that does not verify under the recorded key, or that
// breaks the protocol, gets a KeyProviderError naming the key, the provider
// and the reason, and no signature is used.
func TestKMSLyingHelperRefused(t *testing.T) {
	recorded, other := newTestKMSKey(t), newTestKMSKey(t)
	v1 := kmswire.Version
	for _, tc := range []struct {
		name   string
		script string
		want   []string
		is     error
	}{
		{
			name:   "honest",
			script: answering(t, kmswire.Response{Version: v1, PublicKeyPEM: recorded.pem, Signature: recorded.sign(t, "payload")}),
		},
		{
			// Without helperSigner's key ID check, this signature (valid,
			// by another key) would reach boundSigner... which refuses it
			// too; the key ID check names both keys.
			name:   "reports another key",
			script: answering(t, kmswire.Response{Version: v1, PublicKeyPEM: other.pem, Signature: other.sign(t, "payload")}),
			want:   []string{"key ID " + other.record.KeyID, "recorded " + recorded.record.KeyID},
			is:     ErrKeyProviderMismatch,
		},
		{
			// The recorded key reported, another key's signature returned:
			// only boundSigner's verification stands in the way.
			name:   "another key's signature under the recorded key",
			script: answering(t, kmswire.Response{Version: v1, PublicKeyPEM: recorded.pem, Signature: other.sign(t, "payload")}),
			want:   []string{"does not verify under the recorded public key"},
			is:     ErrKeyProviderMismatch,
		},
		{
			name:   "the recorded key's signature of another message",
			script: answering(t, kmswire.Response{Version: v1, PublicKeyPEM: recorded.pem, Signature: recorded.sign(t, "something else")}),
			want:   []string{"does not verify under the recorded public key"},
			is:     ErrKeyProviderMismatch,
		},
		{
			name:   "no signature",
			script: answering(t, kmswire.Response{Version: v1, PublicKeyPEM: recorded.pem}),
			want:   []string{"no signature"},
			is:     kmswire.ErrProtocol,
		},
		{
			name:   "another protocol version",
			script: answering(t, kmswire.Response{Version: v1 + 1, PublicKeyPEM: recorded.pem, Signature: recorded.sign(t, "payload")}),
			want:   []string{"protocol version 2"},
			is:     kmswire.ErrProtocol,
		},
		{
			name:   "unknown fields",
			script: `printf '{"version":1,"publicKeyPEM":"x","signature":"AA==","key":"other"}'`,
			want:   []string{"unknown field"},
			is:     kmswire.ErrProtocol,
		},
		{
			name:   "two answers",
			script: answering(t, kmswire.Response{Version: v1, PublicKeyPEM: recorded.pem, Signature: recorded.sign(t, "payload")}) + "; echo '{}'",
			want:   []string{"more than one JSON value"},
			is:     kmswire.ErrProtocol,
		},
		{
			name:   "not JSON",
			script: "echo hello",
			is:     kmswire.ErrProtocol,
		},
		{
			name:   "an endless answer",
			script: "yes '{}' | head -c 200000",
			want:   []string{"more than 65536 bytes"},
			is:     kmswire.ErrProtocol,
		},
		{
			name:   "crashes",
			script: "echo 'panic: provider exploded' >&2; exit 3",
			want:   []string{"exit status 3", "panic: provider exploded"},
		},
		{
			name:   "reports an error",
			script: `printf '{"version":1,"error":{"code":"provider","message":"AccessDeniedException: not allowed to kms:Sign"}}'; exit 1`,
			want:   []string{"AccessDeniedException"},
		},
		{
			name:   "never answers",
			script: "exec sleep 60",
			want:   []string{"no answer within 1s", EnvKeyTimeout},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := signThrough(t, fakeHelper(t, tc.script), recorded.record, time.Second, "payload")
			if tc.want == nil && tc.is == nil {
				if err != nil {
					t.Fatalf("honest helper: %v", err)
				}
				return
			}
			var kpe *KeyProviderError
			if !errors.As(err, &kpe) || kpe.Key != "release" || kpe.Provider != ProviderAWSKMS || kpe.Op != "sign" {
				t.Fatalf("got %v, want a KeyProviderError naming key release, awskms, sign", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("got %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

// key generate --kms records a key only when the helper's test signature
// verifies under the public key it reports: a helper cannot make the store
// record a key it does not hold.
func TestKMSGenerateLyingHelperRefused(t *testing.T) {
	held, other := newTestKMSKey(t), newTestKMSKey(t)
	fail := func(op string, err error) error {
		return &KeyProviderError{Key: "release", Provider: ProviderAWSKMS, URI: "awskms:///alias/release", Op: op, Err: err}
	}
	generate := func(script string) (crypto.PublicKey, error) {
		return generateWithHelper(t.Context(), fakeHelper(t, script), ProviderAWSKMS, "awskms:///alias/release", time.Minute, fail)
	}
	pub, err := generate(answering(t, kmswire.Response{Version: kmswire.Version, PublicKeyPEM: held.pem, Signature: held.sign(t, probeMessage), Created: true}))
	if err != nil || !held.priv.PublicKey.Equal(pub) {
		t.Fatalf("honest helper: %v, %v", pub, err)
	}
	_, err = generate(answering(t, kmswire.Response{Version: kmswire.Version, PublicKeyPEM: held.pem, Signature: other.sign(t, probeMessage)}))
	var kpe *KeyProviderError
	if !errors.As(err, &kpe) || kpe.Op != "test signature" || !strings.Contains(err.Error(), "does not verify under its public key") {
		t.Fatalf("a test signature by another key: %v", err)
	}
	// A key of a kind notarize does not accept (RSA-1024 here) is refused.
	_, err = generate(answering(t, kmswire.Response{Version: kmswire.Version, PublicKeyPEM: "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMtzyDpFJYV9l3kNOXQBOrnh7UksqoqT\nkPqfJRDWoYZAe44ObtYTaArlqoZbXUmvEdmOyQBM0A8fJ4PMZ9DwlXkCAwEAAQ==\n-----END PUBLIC KEY-----\n", Signature: []byte{1}}))
	if !errors.As(err, &kpe) || kpe.Op != "generate" {
		t.Fatalf("an unacceptable public key: %v", err)
	}
	// A URI whose scheme is not the provider's is refused before anything runs.
	marker := filepath.Join(t.TempDir(), "ran")
	if _, err := generateWithHelper(t.Context(), fakeHelper(t, "touch '"+marker+"'"), ProviderAWSKMS, "gcpkms://x", time.Minute, fail); err == nil {
		t.Fatal("a gcpkms URI as an awskms key was accepted")
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the helper ran for a mismatched URI")
	}
}

// The helper gets the environment the KMS SDKs read, but not the plugin's
// own secrets (the key store password, a PKCS#11 PIN).
func TestKMSHelperEnvironment(t *testing.T) {
	t.Setenv(EnvPassword, "hunter2-store-password")
	t.Setenv("AWS_REGION", "eu-west-2")
	k := newTestKMSKey(t)
	envFile := filepath.Join(t.TempDir(), "env")
	script := "env > '" + envFile + "'; " + answering(t, kmswire.Response{Version: kmswire.Version, PublicKeyPEM: k.pem, Signature: k.sign(t, "payload")})
	if err := signThrough(t, fakeHelper(t, script), k.record, time.Minute, "payload"); err != nil {
		t.Fatal(err)
	}
	env := mustRead(t, envFile)
	if bytes.Contains(env, []byte("hunter2")) || bytes.Contains(env, []byte(EnvPassword+"=")) {
		t.Fatalf("the helper saw the plugin's password:\n%s", env)
	}
	if !bytes.Contains(env, []byte("AWS_REGION=eu-west-2")) {
		t.Fatalf("the helper did not get the SDK's environment:\n%s", env)
	}
}

// Only an absolute helper path is run.
func TestKMSWireCallRelativePathRefused(t *testing.T) {
	_, err := kmswire.Call(t.Context(), kmswire.HelperName, kmswire.Request{Op: kmswire.OpPublicKey, URI: "awskms:///x", Hash: "sha256"}, nil)
	if err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Fatalf("relative helper path: %v", err)
	}
}
