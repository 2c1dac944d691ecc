package ledger

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// TestMySQLSelfRevokedAcrossInstances: two instances share one database; a
// key revokes itself through one, and the other refuses its new statements
// (it reads the shared index), whether it never saw the key or admitted
// one of its statements before (and found then that the key had written
// nothing about its revocation digest: an answer it must not keep, since
// the other instance writes the index too), while it still answers a
// replay of the key's statement from before with its receipt.
func TestMySQLSelfRevokedAcrossInstances(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "mysql.example/selfrevoked")
	a := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
	b := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
	k, seen := newTestSigner(t), newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	before := k.sign(t, randomDigest(t), notarize.StatusTrusted, now)
	first := a.submit(t, before, http.StatusCreated)
	b.submit(t, seen.sign(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated)
	// helper-106: the refusals below catch an instance that kept the
	// answer only when its own follower happened not to read the
	// revocation's row; this catches it every time.
	if b.store.tune.SoleWriter || b.selfRevoked.neverWrote(seen.keyID) {
		t.Fatalf("BYPASS (latent): a MySQL instance kept a point read's answer (SoleWriter %v): another instance's write of the key's revocation would not end it", b.store.tune.SoleWriter)
	}
	rev := a.submit(t, k.revoke(t, k.keyID, "stolen", now.Add(time.Minute)), http.StatusCreated)
	seenRev := a.submit(t, seen.revoke(t, seen.keyID, "stolen", now.Add(time.Minute)), http.StatusCreated)

	b.submitRefused(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(2*time.Minute)), k.keyID, rev.Index)
	b.submitRefused(t, seen.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(2*time.Minute)), seen.keyID, seenRev.Index)
	if replay := b.submit(t, before, http.StatusOK); replay.Index != first.Index {
		t.Fatalf("replay through the other instance at %d, want %d", replay.Index, first.Index)
	}
	c := newLedgerClient(t, b.url, b.VerifierKey(), t.TempDir())
	_, err := c.Submit(t.Context(), k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(3*time.Minute)))
	if ae, ok := errors.AsType[*ledgerclient.APIError](err); !ok || ae.Code != api.CodeKeyRevoked {
		t.Fatalf("client Submit through the other instance = %v, want %s", err, api.CodeKeyRevoked)
	}
}
