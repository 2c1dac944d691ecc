package plugin

import (
	"crypto"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/notarize/docker-notarize/plugin/kmshelper"
	"github.com/notarize/docker-notarize/plugin/kmswire"
)

// TestMain makes the test binary the KMS helper too, found where the plugin
// looks for it (kmsHelperPath): a symlink named notarize-kms next to
// the test binary, which, run under that name, serves one request as
// cmd/notarize-kms does. The commands under test thus run the real
// helper, by the real lookup, with sigstore's real providers.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == kmswire.HelperName {
		os.Exit(kmshelper.Run())
	}
	flag.Parse()
	waitBoundParallel()
	decryptPrivateKey = rememberDecrypted(decryptPrivateKey)
	link, err := linkTestKMSHelper()
	if err != nil {
		fmt.Fprintln(os.Stderr, "installing the test KMS helper:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.Remove(link)
	os.Exit(code)
}

// linkTestKMSHelper puts the symlink next to the test binary.
func linkTestKMSHelper() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", err
	}
	link := filepath.Join(filepath.Dir(exe), kmswire.HelperName)
	_ = os.Remove(link)
	return link, os.Symlink(exe, link)
}

// waitBoundParallel lets four of the package's parallel tests run at once
// on a machine with fewer cores, unless -parallel was given: they mostly
// wait (the docker CLI and the KMS helper as processes, a ledger
// committing map roots, untrust's and key revoke's index holds and
// lost-receipt looks), so the default of one per core left the cores idle
// (the package took 671 s of a 2-core CI run, 492 s with four at once).
func waitBoundParallel() {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given && runtime.GOMAXPROCS(0) < 4 {
		_ = flag.Set("test.parallel", "4")
	}
}

// rememberDecrypted wraps decrypt so that each (key file, password) pair is
// decrypted once per test binary: the commands under test run in this
// process, hundreds of them with the same fixture keys, and scrypt costs
// ~1.8 s of CPU a key under the race detector (0.26 s without), 64 MiB
// allocated and freed each time. Failures are not remembered, so a wrong
// password or a corrupt key still fails as the real decryption does; the
// keystore tests (TestKeyStoreGenerateListSign and others) decrypt keys they
// generate, so each of them runs the real scrypt.
func rememberDecrypted(decrypt func(pemBytes, password []byte) (crypto.PrivateKey, error)) func(pemBytes, password []byte) (crypto.PrivateKey, error) {
	var (
		mu   sync.Mutex
		keys = map[string]crypto.PrivateKey{} // by PEM, NUL, password: PEM holds no NUL
	)
	return func(pemBytes, password []byte) (crypto.PrivateKey, error) {
		id := string(pemBytes) + "\x00" + string(password)
		mu.Lock()
		k, ok := keys[id]
		mu.Unlock()
		if ok {
			return k, nil
		}
		k, err := decrypt(pemBytes, password)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		keys[id] = k
		mu.Unlock()
		return k, nil
	}
}
