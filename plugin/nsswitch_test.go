package plugin

import (
	"slices"
	"testing"
)

func TestNSSwitchSources(t *testing.T) {
	conf := `# comment: hosts: ldap
passwd:         files systemd
group:files [NOTFOUND=return] sss # trailing comment ldap
 hosts : files mdns4_minimal [ NOTFOUND = return ] dns
shadow: files
group: winbind
`
	for db, want := range map[string][]string{
		"passwd":   {"files", "systemd"},
		"group":    {"files", "sss", "winbind"},
		"hosts":    {"files", "mdns4_minimal", "dns"},
		"netgroup": nil,
	} {
		if got := NSSwitchSources(conf, db); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", db, got, want)
		}
	}
}
