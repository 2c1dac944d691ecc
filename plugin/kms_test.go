package plugin

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/plugin/kmswire"
)

// localKMS is a real AWS-KMS-compatible server (nsmithuk/local-kms, built by
// scripts/localkms.sh) on loopback, with a TLS front so that key URIs can
// name it as their endpoint (sigstore's awskms://HOST:PORT/… is always
// https), and an SDK client for the test's own setup.
type localKMS struct {
	plainURL string // local-kms itself, http://127.0.0.1:PORT
	host     string // the TLS front, 127.0.0.1:PORT
	client   *kms.Client
}

// findTool returns the path of a tool installed by a project script into
// ~/.cache/notarize/bin (or NOTARIZE_CACHE/bin), or on PATH. When it is
// absent the test skips, or fails under CI.
func findTool(t *testing.T, name, script string) string {
	t.Helper()
	cache := os.Getenv("NOTARIZE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "notarize")
	}
	if p := filepath.Join(cache, "bin", name); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed: run %s", name, script)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

var localKMSStarted = regexp.MustCompile(`Local KMS started on 127\.0\.0\.1:(\d+)`)

// startLocalKMS starts local-kms on a free loopback port with its data in a
// temp dir, a TLS front before it, and sets the AWS environment the SDK
// reads (static credentials, region, the front's CA, no instance metadata).
// It uses t.Setenv, so its tests do not run in parallel.
func startLocalKMS(t *testing.T) *localKMS {
	t.Helper()
	bin := findTool(t, "local-kms", "scripts/localkms.sh install")
	dir := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT=0", "KMS_DATA_PATH="+filepath.Join(dir, "data"), "KMS_SEED_PATH="+filepath.Join(dir, "seed.yaml"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := localKMSStarted.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
	}()
	var plain string
	select {
	case p := <-port:
		plain = "http://127.0.0.1:" + p
	case <-time.After(20 * time.Second):
		t.Fatal("local-kms did not start within 20 s")
	}
	target, err := url.Parse(plain)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(front.Close)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "notarize-test",
		"AWS_SECRET_ACCESS_KEY":       "notarize-test",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  "eu-west-2",
		"AWS_CA_BUNDLE":               caFile,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "no-aws-credentials"),
		"AWS_PROFILE":                 "",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_KMS":        "",
	} {
		t.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg.BaseEndpoint = aws.String(plain)
	cfg.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}
	return &localKMS{plainURL: plain, host: strings.TrimPrefix(front.URL, "https://"), client: kms.NewFromConfig(cfg)}
}

// uri returns the awskms URI of keyOrAlias (alias/NAME or a key ID) at the
// TLS front.
func (l *localKMS) uri(keyOrAlias string) string {
	return "awskms://" + l.host + "/" + keyOrAlias
}

// createKey creates a key of spec and usage, and the alias when not "".
func (l *localKMS) createKey(t *testing.T, spec types.KeySpec, usage types.KeyUsageType, alias string) string {
	t.Helper()
	out, err := l.client.CreateKey(t.Context(), &kms.CreateKeyInput{KeySpec: spec, KeyUsage: usage})
	if err != nil {
		t.Fatal(err)
	}
	if alias != "" {
		l.pointAlias(t, alias, *out.KeyMetadata.KeyId)
	}
	return *out.KeyMetadata.KeyId
}

// pointAlias makes alias (alias/NAME) name keyID, replacing what it named.
func (l *localKMS) pointAlias(t *testing.T, alias, keyID string) {
	t.Helper()
	_, _ = l.client.DeleteAlias(t.Context(), &kms.DeleteAliasInput{AliasName: aws.String(alias)})
	if _, err := l.client.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(keyID)}); err != nil {
		t.Fatal(err)
	}
}

// signTarget writes a file to sign (a file: subject) and returns its path.
func signTarget(t *testing.T, content string) string {
	t.Helper()
	return writeTestFile(t, "artifact.txt", []byte(content))
}

func TestKMSKeyGenerateSignVerify(t *testing.T) {
	lk := startLocalKMS(t)
	h := newHarness(t)
	uri := lk.uri("alias/notarize-release")
	out := h.mustRun(0, "key", "generate", "--name", "release", "--kms", uri)
	if !strings.Contains(out, "Added key release, held by awskms") || !strings.Contains(out, uri) {
		t.Fatalf("key generate --kms output:\n%s", out)
	}
	// The store holds the public key and the reference; no private key.
	ref, err := os.ReadFile(filepath.Join(h.home, "keys", "release.ref"))
	if err != nil || !strings.Contains(string(ref), uri) || !strings.Contains(string(ref), `"provider": "awskms"`) {
		t.Fatalf("release.ref = %s, %v", ref, err)
	}
	if _, err := os.Lstat(filepath.Join(h.home, "keys", "release.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a KMS key left a private key file: %v", err)
	}
	// key export gives the KMS's public key.
	pub, err := lk.client.GetPublicKey(t.Context(), &kms.GetPublicKeyInput{KeyId: aws.String("alias/notarize-release")})
	if err != nil {
		t.Fatal(err)
	}
	want := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub.PublicKey}))
	if got := h.mustRun(0, "key", "export", "release"); got != want {
		t.Fatalf("key export:\n%s\nwant the KMS's public key:\n%s", got, want)
	}
	if list := h.mustRun(0, "key", "list"); !strings.Contains(list, "release") {
		t.Fatalf("key list:\n%s", list)
	}
	// sign, verify, untrust, unsupport with it, with no password set.
	file := "file:" + signTarget(t, "release 1.0")
	noPassword := map[string]string{EnvPassword: ""}
	if _, errOut, code := h.runWithEnv(noPassword, "sign", "--key", "release", file); code != 0 {
		t.Fatalf("sign --key release: exit %d\n%s", code, errOut)
	}
	h.mustRun(0, "verify", "--signer", "release", file)
	if _, errOut, code := h.runWithEnv(noPassword, "untrust", "--key", "release", file); code != 0 {
		t.Fatalf("untrust --key release: exit %d\n%s", code, errOut)
	}
	h.mustRun(1, "verify", "--signer", "release", file)
	if _, errOut, code := h.runWithEnv(noPassword, "unsupport", "--key", "release", file); code != 0 {
		t.Fatalf("unsupport --key release: exit %d\n%s", code, errOut)
	}
	h.mustRun(3, "verify", "--signer", "release", file)

	// Generating again under the same name is refused before the KMS is asked.
	if _, errOut, code := h.run("key", "generate", "--name", "release", "--kms", lk.uri("alias/other")); code == 0 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("generate over an existing name: exit %d\n%s", code, errOut)
	}
}

func TestKMSAdoptExistingKey(t *testing.T) {
	lk := startLocalKMS(t)
	h := newHarness(t)
	id := lk.createKey(t, types.KeySpecEccNistP384, types.KeyUsageTypeSignVerify, "alias/team-p384")
	byAlias := h.mustRun(0, "key", "generate", "--name", "team", "--kms", lk.uri("alias/team-p384"))
	// The same key by its ID is the same key: refused as already stored, named.
	_, errOut, code := h.run("key", "generate", "--name", "team-by-id", "--kms", lk.uri(id))
	if code == 0 || !strings.Contains(errOut, `under another name: "team"`) {
		t.Fatalf("adopting a stored key again: exit %d\n%s", code, errOut)
	}
	if !strings.Contains(byAlias, "held by awskms") {
		t.Fatalf("adopt output:\n%s", byAlias)
	}
	file := "file:" + signTarget(t, "p384")
	h.mustRun(0, "sign", "--key", "team", file)
	h.mustRun(0, "verify", "--signer", "team", file)
	// A key adopted by ID (no alias) signs too.
	id2 := lk.createKey(t, types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify, "")
	h.mustRun(0, "key", "generate", "--name", "byid", "--kms", lk.uri(id2))
	h.mustRun(0, "sign", "--key", "byid", file)
	h.mustRun(0, "verify", "--signer", "byid", file)
}

// A KMS alias re-pointed to another key (by whoever can change aliases) must
// not sign in the stored key's name, nor sign unnoticed under another key.
func TestKMSAliasRepointedRefused(t *testing.T) {
	lk := startLocalKMS(t)
	h := newHarness(t)
	h.mustRun(0, "key", "generate", "--name", "release", "--kms", lk.uri("alias/release"))
	other := lk.createKey(t, types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify, "")
	lk.pointAlias(t, "alias/release", other)
	file := "file:" + signTarget(t, "after the swap")
	_, errOut, code := h.run("sign", "--key", "release", file)
	if code == 0 {
		t.Fatalf("sign with a re-pointed alias succeeded:\n%s", errOut)
	}
	for _, want := range []string{"key release", "awskms", "not the one recorded in the key store"} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("error does not say %q:\n%s", want, errOut)
		}
	}
	// Nothing was recorded: the stored key has no statement about the file.
	h.mustRun(2, "verify", "--signer", "release", file)
}

// boundSigner checks each signature against the recorded key, so a provider
// that swaps keys between opening and signing is caught too: here the real
// helper signs with key B of the real KMS, through a signer that (unlike
// helperSigner) does not check the key it reports, for a store that recorded
// key A.
func TestBoundSignerRefusesOtherKeysSignature(t *testing.T) {
	lk := startLocalKMS(t)
	ctx := t.Context()
	lk.createKey(t, types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify, "alias/a")
	b := lk.createKey(t, types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify, "")
	pubA, err := generateKMS(ctx, "a", ProviderAWSKMS, lk.uri("alias/a"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	helper, err := kmsHelperPath()
	if err != nil {
		t.Fatal(err)
	}
	bs, err := newBoundSigner(uncheckedHelperSigner{path: helper, uri: lk.uri(b)}, pubA, time.Minute, func(op string, err error) error {
		return &KeyProviderError{Key: "a", Provider: ProviderAWSKMS, URI: lk.uri("alias/a"), Op: op, Err: err}
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bs.SignMessage(strings.NewReader("payload"))
	var kpe *KeyProviderError
	if !errors.Is(err, ErrKeyProviderMismatch) || !errors.As(err, &kpe) || kpe.Key != "a" {
		t.Fatalf("signature by another key: %v, want ErrKeyProviderMismatch naming key a", err)
	}
}

// uncheckedHelperSigner returns whatever signature the helper makes.
type uncheckedHelperSigner struct{ path, uri string }

func (u uncheckedHelperSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return nil, errors.New("not used")
}

func (u uncheckedHelperSigner) SignMessage(message io.Reader, _ ...signature.SignOption) ([]byte, error) {
	msg, err := io.ReadAll(message)
	if err != nil {
		return nil, err
	}
	resp, err := kmswire.Call(context.Background(), u.path, kmswire.Request{Op: kmswire.OpSign, URI: u.uri, Hash: "sha256", Message: msg}, os.Environ())
	if err != nil {
		return nil, err
	}
	return resp.Signature, nil
}

// A key that cannot sign is an error naming the key, the provider and the
// reason, and nothing is recorded.
func TestKMSUnusableKeys(t *testing.T) {
	lk := startLocalKMS(t)
	h := newHarness(t)
	lk.createKey(t, types.KeySpecSymmetricDefault, types.KeyUsageTypeEncryptDecrypt, "alias/encrypt-only")
	_, errOut, code := h.run("key", "generate", "--name", "enc", "--kms", lk.uri("alias/encrypt-only"))
	if code == 0 || !strings.Contains(errOut, "key enc (awskms "+lk.uri("alias/encrypt-only")+")") {
		t.Fatalf("adopting an encrypt-only key: exit %d\n%s", code, errOut)
	}
	for _, f := range []string{"enc.pub", "enc.ref"} {
		if _, err := os.Lstat(filepath.Join(h.home, "keys", f)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("refused key left %s (%v)", f, err)
		}
	}

	// A key disabled after it was added: sign fails naming it and its provider.
	h.mustRun(0, "key", "generate", "--name", "later-disabled", "--kms", lk.uri("alias/later-disabled"))
	meta, err := lk.client.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String("alias/later-disabled")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lk.client.DisableKey(t.Context(), &kms.DisableKeyInput{KeyId: meta.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	file := "file:" + signTarget(t, "x")
	_, errOut, code = h.run("sign", "--key", "later-disabled", file)
	if code == 0 || !strings.Contains(errOut, "key later-disabled (awskms ") {
		t.Fatalf("sign with a disabled key: exit %d\n%s", code, errOut)
	}

	// An unreachable KMS: the same, not a hang and not a skip.
	h.mustRun(0, "key", "generate", "--name", "gone", "--kms", lk.uri("alias/gone"))
	ref := filepath.Join(h.home, "keys", "gone.ref")
	b, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closedHost := strings.TrimPrefix(closed.URL, "http://")
	closed.Close()
	if err := os.WriteFile(ref, []byte(strings.ReplaceAll(string(b), lk.host, closedHost)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = h.run("sign", "--key", "gone", file)
	if code == 0 || !strings.Contains(errOut, "key gone (awskms awskms://"+closedHost) {
		t.Fatalf("sign with an unreachable KMS: exit %d\n%s", code, errOut)
	}
}

// Only the four sigstore KMS schemes are accepted. sigstore's kms.Get would
// run an executable "sigstore-kms-SCHEME" from PATH for any other scheme; a
// key reference (or a --kms flag) must never make the plugin run a program.
func TestKMSUnknownSchemeRunsNothing(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	script := "#!/bin/sh\ntouch " + marker + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "sigstore-kms-evil"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	h := newHarness(t)
	_, errOut, code := h.run("key", "generate", "--name", "x", "--kms", "evil://key")
	if code != ExitUsage || !strings.Contains(errOut, `unsupported provider "evil"`) {
		t.Fatalf("--kms evil://: exit %d\n%s", code, errOut)
	}
	// A reference file edited to name such a provider.
	ks := NewKeyStore(h.home)
	if _, err := ks.Import("planted", mustRead(t, filepath.Join("testdata", "keys", "bob.pub"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.home, "keys", "planted.ref"), []byte(`{"provider":"evil","uri":"evil://key"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = h.run("sign", "--key", "planted", "file:"+signTarget(t, "y"))
	if code == 0 || !strings.Contains(errOut, "key planted") || !strings.Contains(errOut, `unsupported provider "evil"`) {
		t.Fatalf("sign with a planted reference: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("an unknown KMS scheme ran an executable from PATH")
	}
	// The helper, asked directly, refuses it too: without its own
	// allow-list, sigstore's kms.Get would run sigstore-kms-evil from PATH.
	helper, err := kmsHelperPath()
	if err != nil {
		t.Fatal(err)
	}
	_, err = kmswire.Call(t.Context(), helper, kmswire.Request{Op: kmswire.OpPublicKey, URI: "evil://key", Hash: "sha256"}, os.Environ())
	var he *kmswire.Error
	if !errors.As(err, &he) || he.Code != kmswire.CodeUnsupported {
		t.Fatalf("the helper asked for evil://key: %v, want %s", err, kmswire.CodeUnsupported)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the KMS helper ran an executable from PATH for an unknown scheme")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProviderOf(t *testing.T) {
	for _, tc := range []struct {
		uri, want string
	}{
		{"awskms:///alias/x", ProviderAWSKMS},
		{"awskms://127.0.0.1:4566/alias/x", ProviderAWSKMS},
		{"gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", ProviderGCPKMS},
		{"azurekms://vault.vault.azure.net/key", ProviderAzureKMS},
		{"hashivault://transit-key", ProviderHashiVault},
		{"pkcs11:token=t;object=o", ProviderPKCS11},
		{"PKCS11:token=t;object=o", ProviderPKCS11},
		{"awskms:alias/x", ""},
		{"evil://x", ""},
		{"k8s://ns/secret", ""},
		{"alias/x", ""},
		{"", ""},
	} {
		got, err := providerOf(tc.uri)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("providerOf(%q) = %q, %v; want %q", tc.uri, got, err, tc.want)
		}
	}
}

// A KMS that accepts connections and never answers (a lying or stuck
// endpoint) is an error naming the key and provider after
// NOTARIZE_KEY_TIMEOUT, not a sign that hangs forever.
func TestKMSHangingProviderTimesOut(t *testing.T) {
	lk := startLocalKMS(t)
	h := newHarness(t)
	h.mustRun(0, "key", "generate", "--name", "release", "--kms", lk.uri("alias/release"))
	release := make(chan struct{})
	hang := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); hang.Close() })
	hangHost := strings.TrimPrefix(hang.URL, "https://") // same test certificate as the front: trusted
	ref := filepath.Join(h.home, "keys", "release.ref")
	b := mustRead(t, ref)
	if err := os.WriteFile(ref, []byte(strings.ReplaceAll(string(b), lk.host, hangHost)), 0o600); err != nil {
		t.Fatal(err)
	}
	file := "file:" + signTarget(t, "stuck")
	type result struct {
		errOut string
		code   int
	}
	done := make(chan result, 1)
	go func() {
		_, errOut, code := h.runWithEnv(map[string]string{EnvKeyTimeout: "1s"}, "sign", "--key", "release", file)
		done <- result{errOut, code}
	}()
	select {
	case r := <-done:
		for _, want := range []string{"key release (awskms awskms://" + hangHost, "no answer within 1s", EnvKeyTimeout} {
			if r.code == 0 || !strings.Contains(r.errOut, want) {
				t.Fatalf("sign against a stuck KMS: exit %d, want %q in:\n%s", r.code, want, r.errOut)
			}
		}
	case <-time.After(45 * time.Second):
		t.Fatal("sign against a stuck KMS did not return within 45 s (NOTARIZE_KEY_TIMEOUT=1s)")
	}
	// A bad timeout is a usage error.
	if _, errOut, code := h.runWithEnv(map[string]string{EnvKeyTimeout: "soon"}, "key", "generate", "--name", "x", "--kms", lk.uri("alias/x")); code != ExitUsage || !strings.Contains(errOut, EnvKeyTimeout) {
		t.Fatalf("NOTARIZE_KEY_TIMEOUT=soon: exit %d\n%s", code, errOut)
	}
}
