//go:build unix

package plugin

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
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old, oldR := nsswitchFile, resolvConf
	nsswitchFile, resolvConf = conf, resolv
	t.Cleanup(func() { nsswitchFile, resolvConf = old, oldR })
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
		{"hosts: files [NOTFOUND=return dns\n", true}, // an action left open
	} {
		if err := os.WriteFile(conf, []byte(tc.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := NeedsSystemResolver(); got != tc.want {
			t.Errorf("%q: NeedsSystemResolver() = %v, want %v", tc.conf, got, tc.want)
		}
	}
	if err := os.WriteFile(conf, []byte("hosts: files dns\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GODEBUG", "netdns=cgo")
	if !NeedsSystemResolver() {
		t.Error("GODEBUG=netdns=cgo: the front would resolve with Go's resolver")
	}
	t.Setenv("GODEBUG", "")
	// Go's net package prefers the C library when these are set (net/conf.go):
	// the full CLI would honour them, Go's resolver does not.
	for _, v := range []string{"LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES"} {
		t.Setenv(v, "x")
		if !NeedsSystemResolver() {
			t.Errorf("%s set: the front would resolve with Go's resolver, the full CLI with the C library", v)
		}
		os.Unsetenv(v)
	}
	t.Setenv("LOCALDOMAIN", "") // set but empty counts too
	if !NeedsSystemResolver() {
		t.Error("LOCALDOMAIN set empty: the front would resolve with Go's resolver")
	}
	os.Unsetenv("LOCALDOMAIN")
	// resolv.conf lines Go's resolver does not read: net/conf.go asks the C
	// library (a review of issue 14's change).
	for rc, want := range map[string]bool{
		"options ndots:2 timeout:1 attempts:3 rotate\n": false,
		"# options inet6\nnameserver ::1\n":             false,
		"options inet6\n":                               true,
		"options ndots:1 no-aaaa\n":                     true,
		"lookup file bind\n":                            true,
	} {
		if err := os.WriteFile(resolv, []byte(rc), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := NeedsSystemResolver(); got != want {
			t.Errorf("resolv.conf %q: NeedsSystemResolver() = %v, want %v", rc, got, want)
		}
	}
	t.Setenv("HOME", "")
	if !NeedsSystemResolver() {
		t.Error("no HOME: the front would read the user database without the C library")
	}
}
