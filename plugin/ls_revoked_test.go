package plugin

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// TestLsRevokedKeyCountsWhatCameBefore: alice trusted a file, then revoked
// her stolen key, and the thief untrusted the same file (a newer statement:
// the ledger's key index now has the thief's as alice's current one). ls
// counts alice's statement from before the revocation, lists the thief's
// marked, and --status trusted still finds the file.
func TestLsRevokedKeyCountsWhatCameBefore(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	approved, approvedD := writeFile(t, "approved", "approved before the theft")
	h.mustRun(0, "sign", "--key", "alice", approved)
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	th := newThief(t, h, "alice")
	th.state(approvedD, notarize.StatusUntrusted, notarize.KindFile, time.Now().Add(time.Minute))

	ls := func(args ...string) lsOutput {
		t.Helper()
		var out lsOutput
		if err := json.Unmarshal([]byte(h.mustRun(0, append([]string{"ls", "-o", "json", "--signer", "alice"}, args...)...)), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	o := ls()
	// The revocation itself is one more asset (sha256:<key ID>), untrusted.
	if len(o.Signers) != 1 || o.Team.Trusted != 1 || o.Team.Untrusted != 1 || o.Signers[0].Trusted != 1 {
		t.Fatalf("ls: the thief's statement after the revocation hid alice's trusted one: %+v", o)
	}
	var marked, counted int
	for _, st := range o.Signers[0].Statements {
		if st.Digest != string(approvedD) {
			continue
		}
		if st.KeyRevokedAt != nil {
			marked++
			if st.Status != "UNTRUSTED" {
				t.Errorf("the marked statement is %s, want the thief's UNTRUSTED", st.Status)
			}
		} else {
			counted++
			if st.Status != "TRUSTED" {
				t.Errorf("the counted statement is %s, want alice's TRUSTED", st.Status)
			}
		}
	}
	if marked != 1 || counted != 1 {
		t.Fatalf("statements about the file: %d marked, %d counted; want 1 and 1: %+v", marked, counted, o.Signers[0].Statements)
	}
	if o := ls("--status", "trusted"); len(o.Signers) != 1 || o.Signers[0].Trusted != 1 || len(o.Signers[0].Statements) != 1 {
		t.Fatalf("ls --status trusted: %+v", o)
	}
	o = ls("--status", "untrusted")
	if len(o.Signers) != 1 || o.Signers[0].Untrusted != 1 || len(o.Signers[0].Statements) != 2 {
		t.Fatalf("ls --status untrusted: want the revocation (counted) and the thief's statement (marked): %+v", o)
	}
	for _, st := range o.Signers[0].Statements {
		if st.Digest == string(approvedD) && st.KeyRevokedAt == nil {
			t.Fatalf("ls --status untrusted counts the thief's statement: %+v", o)
		}
	}
}

// TestLsRevokedKeyFloodBounded: a thief who floods assets with the revoked
// key's statements cannot make ls read each back without bound: past
// lsMaxRevokedLookups it fails (exit 4) rather than count what it did not
// read. Not parallel: it lowers the bound, which parallel tests read.
func TestLsRevokedKeyFloodBounded(t *testing.T) {
	bound := lsMaxRevokedLookups
	lsMaxRevokedLookups = 2
	t.Cleanup(func() { lsMaxRevokedLookups = bound })
	h := newHarness(t, "alice")
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	th := newThief(t, h, "alice")
	for i := range 3 {
		_, d := writeFile(t, fmt.Sprint("flood-", i), fmt.Sprint("the thief's build ", i))
		th.state(d, notarize.StatusTrusted, notarize.KindFile, time.Now())
	}
	_, errOut, code := h.run("ls", "--signer", "alice")
	if code != ExitCouldNotVerify || !strings.Contains(errOut, "too many statements after a key's revocation") {
		t.Fatalf("ls over the bound: exit %d, want %d and the bound named\n%s", code, ExitCouldNotVerify, errOut)
	}
	lsMaxRevokedLookups = 3
	var o lsOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "ls", "-o", "json", "--signer", "alice")), &o); err != nil {
		t.Fatal(err)
	}
	if len(o.Signers) != 1 || o.Signers[0].Trusted != 0 {
		t.Fatalf("ls within the bound counts the thief's statements: %+v", o)
	}
}
