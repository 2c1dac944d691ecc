//go:build notarize_verifyonly

package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The static verify-only build hands a verify to the full CLI where the
// system's resolver may find names Go's resolver does not (a review found
// a name only an NSS module resolved: exit 4 in a static front, TRUSTED in
// the full CLI).
func TestNeedsSystemResolver(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GODEBUG", "")
	conf := filepath.Join(t.TempDir(), "nsswitch.conf")
	old := nsswitchConf
	nsswitchConf = conf
	t.Cleanup(func() { nsswitchConf = old })
	for _, tc := range []struct {
		conf string
		want bool
	}{
		{"hosts: files dns\n", false},
		{"passwd: files sss\nhosts:  dns files # comment mdns\n", false},
		{"hosts: files [NOTFOUND=return] dns\n", false},
		{"hosts: files mdns4_minimal [NOTFOUND=return] dns myhostname\n", true},
		{"hosts: files resolve [!UNAVAIL=return] dns\n", true},
		{"hosts: sss files dns\n", true},
		{"hosts: files ldap\n", true},
		{"", false},
	} {
		if err := os.WriteFile(conf, []byte(tc.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := needsSystemResolver(); got != tc.want {
			t.Errorf("%q: needsSystemResolver() = %v, want %v", tc.conf, got, tc.want)
		}
	}
	if err := os.WriteFile(conf, []byte("hosts: files dns\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GODEBUG", "netdns=cgo")
	if !needsSystemResolver() {
		t.Error("GODEBUG=netdns=cgo: the front would resolve with Go's resolver")
	}
	t.Setenv("GODEBUG", "")
	t.Setenv("HOME", "")
	if !needsSystemResolver() {
		t.Error("no HOME: the front would read the user database without the C library")
	}
}
