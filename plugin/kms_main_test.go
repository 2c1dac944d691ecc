package plugin

import (
	"fmt"
	"os"
	"path/filepath"
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
