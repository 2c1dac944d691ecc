package plugin

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/witnesstest"
)

// TestVerifyWitnessed: with a witness policy, verify exits 4 when the
// ledger's checkpoint lacks a quorum of cosignatures (naming the missing
// witnesses) or when the quorum is older than --max-age; a fresh quorum
// verifies as before, and without a policy neither is checked.
func TestVerifyWitnessed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	app := h.reg.host + "/app:v1"
	h.mustRun(0, "sign", app)

	w1, w2, w3 := witnesstest.Three(t)
	policy := filepath.Join(t.TempDir(), "witnesses.policy")
	if err := os.WriteFile(policy, witnesstest.Policy(2, w1, w2, w3), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	cosignedAt := time.Now()
	setCosignedAt := func(t time.Time) { mu.Lock(); cosignedAt = t; mu.Unlock() }
	front := witnesstest.NewFront(t, h.ledger.URL, w1, w2)
	front.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return cosignedAt })
	viaFront := map[string]string{EnvLedger: front.URL, EnvWitnessPolicy: policy}

	verify := func(env map[string]string, want int, args ...string) string {
		t.Helper()
		out, errOut, code := h.runWithEnv(env, append([]string{"verify"}, append(args, app)...)...)
		if code != want {
			t.Fatalf("verify %q with %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, env, code, want, out, errOut)
		}
		return errOut
	}
	verify(viaFront, 0)

	// A split view: the checkpoint this client is shown is cosigned by one
	// witness only (the others never saw that history).
	front.SetWitnesses(w1)
	errOut := verify(viaFront, ExitCouldNotVerify)
	if !strings.Contains(errOut, "missing w2 (witness2.test), w3 (witness3.test)") || !strings.Contains(errOut, "cosigned by w1 (witness1.test)") {
		t.Fatalf("stderr does not name the missing witnesses:\n%s", errOut)
	}
	// The same through --witness-policy instead of the environment.
	verify(map[string]string{EnvLedger: front.URL}, ExitCouldNotVerify, "--witness-policy", policy)

	// A frozen or held-back view: the quorum is 25 hours old.
	front.SetWitnesses(w1, w3)
	setCosignedAt(time.Now().Add(-25 * time.Hour))
	errOut = verify(viaFront, ExitCouldNotVerify)
	// The age is rounded to the second and the clock moves on: 25h0m0s or
	// a second or two more on a loaded machine.
	if !regexp.MustCompile(`25h0m[0-9]s ago`).MatchString(errOut) || !strings.Contains(errOut, "more than the accepted 24h0m0s") {
		t.Fatalf("stale quorum: stderr %s", errOut)
	}
	verify(viaFront, 0, "--max-age", "48h")
	// Without a witness policy the same stale view verifies: what the policy adds.
	verify(map[string]string{EnvLedger: front.URL}, 0)

	verify(viaFront, ExitUsage, "--max-age", "0s")
	bad := filepath.Join(t.TempDir(), "bad.policy")
	if err := os.WriteFile(bad, []byte("quorum none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A policy file that does not parse is a configuration error, found
	// before any request: exit 125, as a bad flag value.
	verify(map[string]string{EnvLedger: front.URL, EnvWitnessPolicy: bad}, ExitUsage)
}
