package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// lsJSON is the part of `docker notarize ls -o json` the test reads.
type lsJSON struct {
	SchemaVersion  int    `json:"schemaVersion"`
	CheckpointSize uint64 `json:"checkpointSize"`
	Complete       bool   `json:"complete"`
	Signers        []struct {
		Name       string   `json:"name"`
		KeyIDs     []string `json:"keyIds"`
		Assets     int      `json:"assets"`
		Trusted    int      `json:"trusted"`
		Revoked    int      `json:"revoked"`
		Statements []struct {
			Digest string `json:"digest"`
			Status string `json:"status"`
		} `json:"statements"`
	} `json:"signers"`
	Team struct {
		Assets  int `json:"assets"`
		Trusted int `json:"trusted"`
		Revoked int `json:"revoked"`
	} `json:"team"`
	Error string `json:"error"`
}

// TestLs runs `docker notarize ls` through the docker CLI against a real
// ledger: a signer's assets with their current status and tallies, the
// status filter, the whole team (every key in the store, or every signer of
// a policy file), and exit 4 when the ledger cannot be read.
func TestLs(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the docker CLI is not installed; the CI installs it (.ci/run)")
	}
	led := ledgertest.Start(t)
	reg := startRegistry(t)
	c := newCLI(t, led.URL)
	app, other, multi := reg.host+"/app:v1", reg.host+"/other:v1", reg.host+"/multi:v1"
	appDigest, otherDigest, multiDigest := digest(t, reg.app), digest(t, reg.other), digest(t, reg.multi)

	c.notarize(0, "key", "generate", "--name", "alice")
	c.notarize(0, "key", "generate", "--name", "bob")
	c.notarize(0, "sign", "--key", "alice", app)
	c.notarize(0, "sign", "--key", "alice", other)
	c.notarize(0, "untrust", "--key", "alice", "--index-wait", "0", other) // this ledger commits no map root for an hour: ls reads the log's tail
	c.notarize(0, "sign", "--key", "bob", other)
	c.notarize(0, "sign", "--key", "bob", multi)

	r := c.notarize(0, "ls", "--signer", "alice")
	for _, want := range []string{appDigest, otherDigest, "UNTRUSTED", "2 assets signed by alice: 1 trusted, 1 revoked (1 untrusted, 0 unsupported)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ls --signer alice lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, multiDigest) || !strings.Contains(r.stderr, "not proven") {
		t.Errorf("ls --signer alice lists bob's asset, or does not say completeness is unproven:\n%s\n%s", r.stdout, r.stderr)
	}

	o := decode[lsJSON](t, c.notarize(0, "ls", "--signer", "alice", "--status", "untrusted", "-o", "json").stdout)
	if len(o.Signers) != 1 || len(o.Signers[0].Statements) != 1 || o.Signers[0].Statements[0].Digest != otherDigest ||
		o.Signers[0].Statements[0].Status != "UNTRUSTED" || o.Complete || o.CheckpointSize == 0 {
		t.Fatalf("ls --status untrusted: %+v", o)
	}

	// The whole team: every key in the store; an asset revoked by one
	// signer counts as revoked for the team.
	o = decode[lsJSON](t, c.notarize(0, "ls", "-o", "json").stdout)
	if len(o.Signers) != 2 || o.Team.Assets != 3 || o.Team.Revoked != 1 || o.Team.Trusted != 2 {
		t.Fatalf("ls of the whole store: %+v", o)
	}
	if r := c.notarize(0, "ls"); !strings.Contains(r.stdout, "3 assets signed by the team (2 signers): 2 trusted, 1 revoked") {
		t.Errorf("ls of the whole store lacks the team line:\n%s", r.stdout)
	}

	// A policy file's signers, keys beside it.
	dir := t.TempDir()
	for _, k := range []string{"alice", "bob"} {
		if err := os.WriteFile(filepath.Join(dir, k+".pub"), []byte(c.notarize(0, "key", "export", k).stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("signers:\n  release: {keys: [alice.pub]}\n  partner: {keys: [bob.pub]}\nrules:\n  - {match: '**', require: [release, partner]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o = decode[lsJSON](t, c.notarize(0, "ls", "--policy", pol, "-o", "json").stdout)
	if len(o.Signers) != 2 || o.Signers[0].Name != "partner" || o.Signers[0].Assets != 2 || o.Signers[1].Name != "release" || o.Signers[1].Revoked != 1 {
		t.Fatalf("ls --policy: %+v", o)
	}

	// The ledger gone: could not list, exit 4, JSON error.
	led.Stop()
	o = decode[lsJSON](t, c.notarize(4, "ls", "--signer", "alice", "-o", "json").stdout)
	if o.Error == "" || len(o.Signers) != 0 {
		t.Fatalf("ls with the ledger down: %+v", o)
	}
}
