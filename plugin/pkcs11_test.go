//go:build cgo

package plugin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ThalesGroup/crypto11"
)

// The SoftHSM2 tokens of this test process. SoftHSM reads SOFTHSM2_CONF
// once, when the module is first initialised in a process, so every token
// is made up front in one directory; each test uses its own token, so that
// one test's login cannot stand in for another's (PKCS#11 login state is
// per token and application).
var (
	softHSMOnce   sync.Once
	softHSMModule string
	softHSMErr    error
)

const (
	testSOPIN  = "5678"
	testPIN    = "1234"
	testTokens = "gen,pinvalue,wrongpin,replaced,adopt"
)

// softHSM returns the SoftHSM2 module with the test tokens initialised, or
// skips (fails under CI) when SoftHSM2 is not installed.
func softHSM(t *testing.T) string {
	t.Helper()
	module := ""
	for _, p := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"} {
		if _, err := os.Stat(p); err == nil {
			module = p
			break
		}
	}
	util, err := exec.LookPath("softhsm2-util")
	if module == "" || err != nil {
		msg := "SoftHSM2 is not installed: run scripts/softhsm.sh install"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	softHSMOnce.Do(func() {
		dir, err := os.MkdirTemp("", "notarize-softhsm-")
		if err != nil {
			softHSMErr = err
			return
		}
		conf := filepath.Join(dir, "softhsm2.conf")
		if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
			softHSMErr = err
			return
		}
		if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
			softHSMErr = err
			return
		}
		// Process-wide on purpose: the module reads it at initialisation.
		if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
			softHSMErr = err
			return
		}
		for _, label := range strings.Split(testTokens, ",") {
			cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--so-pin", testSOPIN, "--pin", testPIN)
			if out, err := cmd.CombinedOutput(); err != nil {
				softHSMErr = errors.New("softhsm2-util --init-token: " + err.Error() + ": " + string(out))
				return
			}
		}
		softHSMModule = module
	})
	if softHSMErr != nil {
		t.Fatal(softHSMErr)
	}
	return softHSMModule
}

func readRef(t *testing.T, home, name string) KeyReference {
	t.Helper()
	var ref KeyReference
	if err := json.Unmarshal(mustRead(t, filepath.Join(home, "keys", name+".ref")), &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestPKCS11GenerateSignVerify(t *testing.T) {
	module := softHSM(t)
	h := newHarness(t)
	pin := map[string]string{EnvPKCS11PIN: testPIN, EnvPassword: ""}
	uri := "pkcs11:token=gen;object=release?module-path=" + module
	out, errOut, code := h.runWithEnv(pin, "key", "generate", "--name", "hsm", "--pkcs11", uri)
	if code != 0 || !strings.Contains(out, "Added key hsm, held by pkcs11") || !strings.Contains(out, "PIN:         not stored") {
		t.Fatalf("key generate --pkcs11: exit %d\n%s\n%s", code, out, errOut)
	}
	ref := readRef(t, h.home, "hsm")
	if ref.Provider != ProviderPKCS11 || !strings.HasPrefix(ref.URI, "pkcs11:token=gen;object=release;id=") {
		t.Fatalf("recorded reference %+v: want the token, the object and the generated id", ref)
	}
	if _, err := os.Lstat(filepath.Join(h.home, "keys", "hsm.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an HSM key left a private key file: %v", err)
	}
	file := "file:" + signTarget(t, "hsm release")
	if _, errOut, code := h.runWithEnv(pin, "sign", "--key", "hsm", file); code != 0 {
		t.Fatalf("sign --key hsm: exit %d\n%s", code, errOut)
	}
	h.mustRun(0, "verify", "--signer", "hsm", file)
	if _, errOut, code := h.runWithEnv(pin, "untrust", "--key", "hsm", file); code != 0 {
		t.Fatalf("untrust --key hsm: exit %d\n%s", code, errOut)
	}
	h.mustRun(1, "verify", "--signer", "hsm", file)
	exported := h.mustRun(0, "key", "export", "hsm")
	if exported != string(mustRead(t, filepath.Join(h.home, "keys", "hsm.pub"))) {
		t.Fatalf("key export hsm:\n%s", exported)
	}
	// The same object again under another name: the store names the first.
	_, errOut, code = h.runWithEnv(pin, "key", "generate", "--name", "hsm-again", "--pkcs11", uri)
	if code == 0 || !strings.Contains(errOut, `under another name: "hsm"`) {
		t.Fatalf("adopting a stored HSM key again: exit %d\n%s", code, errOut)
	}
}

// The PIN is never written to the key store, even when the URI carries it;
// signing then needs it from pin-source or NOTARIZE_PKCS11_PIN, and says so.
func TestPKCS11PINNeverStored(t *testing.T) {
	module := softHSM(t)
	h := newHarness(t)
	uri := "pkcs11:token=pinvalue;object=ci?module-path=" + module + "&pin-value=" + testPIN
	h.mustRun(0, "key", "generate", "--name", "ci", "--pkcs11", uri)
	filepath.WalkDir(h.home, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(string(mustRead(t, p)), "pin-value") {
			t.Errorf("%s holds the pin-value:\n%s", p, mustRead(t, p))
		}
		return nil
	})
	file := "file:" + signTarget(t, "ci")
	_, errOut, code := h.runWithEnv(map[string]string{EnvPassword: ""}, "sign", "--key", "ci", file)
	for _, want := range []string{"key ci (pkcs11 pkcs11:token=pinvalue", "no PIN", EnvPKCS11PIN} {
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("sign with no PIN: exit %d, want an error saying %q:\n%s", code, want, errOut)
		}
	}
	// pin-source: a file the URI names.
	pinFile := writeTestFile(t, "pin", []byte(testPIN+"\n"))
	h.mustRun(0, "key", "generate", "--name", "ci-src", "--pkcs11",
		"pkcs11:token=pinvalue;object=ci-src?module-path="+module+"&pin-source=file:"+pinFile)
	if _, errOut, code := h.runWithEnv(map[string]string{EnvPassword: ""}, "sign", "--key", "ci-src", file); code != 0 {
		t.Fatalf("sign with pin-source: exit %d\n%s", code, errOut)
	}
	h.mustRun(0, "verify", "--signer", "ci-src", file)
}

// A wrong PIN is an error naming the key, the provider and the reason. The
// token's key is imported by softhsm2-util, another process, so that the
// first login to this token in the test process is the wrong one (a token
// already logged in would not ask again: PKCS#11 login state is per
// application, and each plugin run is a process of its own).
func TestPKCS11WrongPIN(t *testing.T) {
	module := softHSM(t)
	h := newHarness(t)
	uri := "pkcs11:token=wrongpin;object=release?module-path=" + module
	wrong := map[string]string{EnvPKCS11PIN: "0000", EnvPassword: ""}
	_, errOut, code := h.runWithEnv(wrong, "key", "generate", "--name", "hsm", "--pkcs11", uri)
	for _, want := range []string{"key hsm (pkcs11 " + uri + ")", "wrong PIN", "CKR_PIN_INCORRECT"} {
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("generate with a wrong PIN: exit %d, want %q in:\n%s", code, want, errOut)
		}
	}
	if _, err := os.Lstat(filepath.Join(h.home, "keys", "hsm.pub")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused HSM key was recorded")
	}

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeTestFile(t, "hsm-import.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if out, err := exec.Command("softhsm2-util", "--import", keyFile, "--token", "wrongpin", "--label", "release", "--id", "01", "--pin", testPIN).CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --import: %v\n%s", err, out)
	}
	if _, err := NewKeyStore(h.home).AddReference("hsm", KeyReference{Provider: ProviderPKCS11, URI: uri + "&x-test=1"}, priv.Public()); err != nil {
		t.Fatal(err)
	}
	file := "file:" + signTarget(t, "x")
	_, errOut, code = h.runWithEnv(wrong, "sign", "--key", "hsm", file)
	for _, want := range []string{"key hsm (pkcs11 pkcs11:token=wrongpin;object=release", "wrong PIN", "CKR_PIN_INCORRECT"} {
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("sign with a wrong PIN: exit %d, want %q in:\n%s", code, want, errOut)
		}
	}
	h.mustRun(2, "verify", "--signer", "hsm", file)
	if _, errOut, code := h.runWithEnv(map[string]string{EnvPKCS11PIN: testPIN}, "sign", "--key", "hsm", file); code != 0 {
		t.Fatalf("sign with the right PIN: exit %d\n%s", code, errOut)
	}
	h.mustRun(0, "verify", "--signer", "hsm", file)
}

// An HSM object replaced under the same label and id (by anyone with the
// PIN) must not sign in the stored key's name.
func TestPKCS11ObjectReplacedRefused(t *testing.T) {
	module := softHSM(t)
	h := newHarness(t)
	pin := map[string]string{EnvPKCS11PIN: testPIN}
	if _, errOut, code := h.runWithEnv(pin, "key", "generate", "--name", "hsm", "--pkcs11", "pkcs11:token=replaced;object=release?module-path="+module); code != 0 {
		t.Fatalf("generate: exit %d\n%s", code, errOut)
	}
	u, err := parsePKCS11URI(readRef(t, h.home, "hsm").URI)
	if err != nil {
		t.Fatal(err)
	}
	c, err := crypto11.Configure(&crypto11.Config{Path: module, TokenLabel: "replaced", Pin: testPIN})
	if err != nil {
		t.Fatal(err)
	}
	old, err := c.FindKeyPair(u.id, []byte("release"))
	if err != nil || old == nil {
		t.Fatalf("find the generated key: %v, %v", old, err)
	}
	if err := old.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateECDSAKeyPairWithLabel(u.id, []byte("release"), elliptic.P256()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	file := "file:" + signTarget(t, "replaced")
	_, errOut, code := h.runWithEnv(pin, "sign", "--key", "hsm", file)
	for _, want := range []string{"key hsm (pkcs11 ", "not the one recorded in the key store"} {
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("sign with a replaced object: exit %d, want %q in:\n%s", code, want, errOut)
		}
	}
	h.mustRun(2, "verify", "--signer", "hsm", file)
}

// A key made in the token by other tools is adopted by its label; a URI that
// names no object, or several, is an error naming them.
func TestPKCS11Adopt(t *testing.T) {
	module := softHSM(t)
	c, err := crypto11.Configure(&crypto11.Config{Path: module, TokenLabel: "adopt", Pin: testPIN})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"01", "02"} {
		if _, err := c.GenerateECDSAKeyPairWithLabel([]byte(id), []byte("twin"), elliptic.P384()); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	pin := map[string]string{EnvPKCS11PIN: testPIN, EnvPKCS11Module: module}
	_, errOut, code := h.runWithEnv(pin, "key", "generate", "--name", "twin", "--pkcs11", "pkcs11:token=adopt;object=twin")
	if code == 0 || !strings.Contains(errOut, `2 private key objects match labelled "twin"`) {
		t.Fatalf("adopting an ambiguous label: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := h.runWithEnv(pin, "key", "generate", "--name", "twin2", "--pkcs11", "pkcs11:token=adopt;object=twin;id=02"); code != 0 {
		t.Fatalf("adopt by label and id (module from %s): exit %d\n%s", EnvPKCS11Module, code, errOut)
	}
	file := "file:" + signTarget(t, "p384 in the token")
	if _, errOut, code := h.runWithEnv(pin, "sign", "--key", "twin2", file); code != 0 {
		t.Fatalf("sign with an adopted P-384 key: exit %d\n%s", code, errOut)
	}
	h.mustRun(0, "verify", "--signer", "twin2", file)
	_, errOut, code = h.runWithEnv(pin, "key", "generate", "--name", "none", "--pkcs11", "pkcs11:token=adopt;id=99")
	if code == 0 || !strings.Contains(errOut, "a new one needs object=LABEL") {
		t.Fatalf("a missing object without a label: exit %d\n%s", code, errOut)
	}
	_, errOut, code = h.runWithEnv(pin, "key", "generate", "--name", "nowhere", "--pkcs11", "pkcs11:token=no-such-token;object=x")
	if code == 0 || !strings.Contains(errOut, "key nowhere (pkcs11 ") {
		t.Fatalf("a missing token: exit %d\n%s", code, errOut)
	}
}
