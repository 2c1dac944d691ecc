package plugin

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam3LsPolicyRevokers: ls --policy reads the proxy's policy
// format, whose signers name revokers. After bob, alice's revoker in the
// policy, revokes her key, her thief's "trusted" is what the proxy
// refuses; ls --policy must not count it as the team's trusted asset
// (nor list it unmarked), as it does after a revocation by alice's key
// itself.
func TestRedteam3LsPolicyRevokers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	approved, _ := writeFile(t, "approved", "approved before the theft")
	_, stolenD := writeFile(t, "stolen", "the thief's build")
	h.mustRun(0, "sign", "--key", "alice", approved)
	h.mustRun(0, "key", "revoke", "--yes", "--revoker", "bob", "alice")
	th := newThief(t, h, "alice")
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))

	dir := t.TempDir()
	for _, k := range []string{"alice", "bob"} {
		b, err := os.ReadFile(filepath.Join("testdata", "keys", k+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, k+".pub"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("signers:\n  release: {keys: [alice.pub], revokers: [bob.pub]}\nrules:\n  - {match: '**', require: [release]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := decodeLs(t, h.mustRun(0, "ls", "--policy", pol, "-o", "json"))
	if len(o.Signers) != 1 {
		t.Fatalf("ls --policy: %+v", o)
	}
	for _, st := range o.Signers[0].Statements {
		if st.Digest == string(stolenD) && st.KeyRevokedAt == nil {
			t.Fatalf("BYPASS: ls --policy lists the thief's statement after the policy revoker's revocation as counting: %+v (team %+v)", st, o.Team)
		}
	}
	if o.Team.Trusted != 1 {
		t.Fatalf("BYPASS: ls --policy counts %d trusted assets, want 1 (the thief's build counted): %+v", o.Team.Trusted, o.Team)
	}
}
