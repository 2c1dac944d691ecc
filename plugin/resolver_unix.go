//go:build unix

package plugin

import (
	"os"
	"strings"
)

// resolvConf is the DNS resolver's configuration; tests replace it (and
// nsswitchFile, helper_trust_unix.go's).
var resolvConf = "/etc/resolv.conf"

// resolvUnknownToGo reports whether the resolv.conf conf has a line Go's
// resolver does not read (net/dnsconfig_unix.go): an option it does not
// know, or OpenBSD's lookup. Go's net package then asks the C library, as
// the full CLI does and the verify-only build cannot.
func resolvUnknownToGo(conf string) bool {
	for _, line := range strings.Split(conf, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || line[0] == ';' || line[0] == '#' {
			continue
		}
		switch f[0] {
		case "lookup":
			return true
		case "options":
			for _, o := range f[1:] {
				switch {
				case strings.HasPrefix(o, "ndots:"), strings.HasPrefix(o, "timeout:"), strings.HasPrefix(o, "attempts:"),
					o == "rotate", o == "single-request", o == "single-request-reopen", o == "use-vc", o == "usevc",
					o == "tcp", o == "trust-ad", o == "edns0", o == "no-reload":
				default:
					return true
				}
			}
		}
	}
	return false
}

// NeedsSystemResolver reports whether this system may resolve names or
// users in a way the verify-only build (cmd/docker-notarize) cannot: it is
// built without cgo (a static binary starts ~2 ms sooner than one that
// loads the C library), so it resolves host names with Go's own resolver
// (/etc/hosts, then DNS) and reads users from /etc/passwd. The full CLI,
// built with cgo, asks the C library when the name service switch lists
// other sources (mDNS, sssd, LDAP, systemd-resolved, ...), GODEBUG says
// netdns=cgo, LOCALDOMAIN, RES_OPTIONS or HOSTALIASES is set, or
// resolv.conf has a line Go's resolver does not read (net/conf.go), and
// may find a name the front would not. Such a system's verify is the full
// CLI's, as is one without HOME (the home directory would come from the
// user database). A switch file that cannot be read leaves Go's default,
// as in the full CLI.
func NeedsSystemResolver() bool {
	if os.Getenv("HOME") == "" || strings.Contains(os.Getenv("GODEBUG"), "netdns") {
		return true
	}
	// Go's net package uses the C library, when it has it, whenever one of
	// these is set (LOCALDOMAIN even empty): the full CLI would honour them.
	if _, ok := os.LookupEnv("LOCALDOMAIN"); ok || os.Getenv("RES_OPTIONS") != "" || os.Getenv("HOSTALIASES") != "" {
		return true
	}
	if b, err := os.ReadFile(resolvConf); err == nil && resolvUnknownToGo(string(b)) {
		return true
	}
	b, err := os.ReadFile(nsswitchFile)
	if err != nil {
		return false
	}
	sources, ok := NSSwitchSources(string(b), "hosts")
	if !ok {
		return true
	}
	for _, src := range sources {
		if src != "files" && src != "dns" {
			return true
		}
	}
	return false
}
