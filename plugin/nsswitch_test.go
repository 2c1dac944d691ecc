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
		if got, ok := NSSwitchSources(conf, db); !ok || !slices.Equal(got, want) {
			t.Errorf("%s: %q, %v, want %q", db, got, ok, want)
		}
	}
	// An action left open hides what follows it: not read at all.
	if got, ok := NSSwitchSources("group: files [NOTFOUND=return ldap\n", "group"); ok {
		t.Errorf("an unclosed action: %q, ok; want not ok", got)
	}
}
