package plugin

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
