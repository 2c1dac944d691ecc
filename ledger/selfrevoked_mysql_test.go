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
// key revokes itself through one, and the other, which never saw the key,
// refuses its new statements (it reads the shared index) while it still
// answers a replay of the key's statement from before with its receipt.
func TestMySQLSelfRevokedAcrossInstances(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "mysql.example/selfrevoked")
	a := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
	b := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
	k := newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	before := k.sign(t, randomDigest(t), notarize.StatusTrusted, now)
	first := a.submit(t, before, http.StatusCreated)
	rev := a.submit(t, k.revoke(t, k.keyID, "stolen", now.Add(time.Minute)), http.StatusCreated)

	b.submitRefused(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(2*time.Minute)), k.keyID, rev.Index)
	if replay := b.submit(t, before, http.StatusOK); replay.Index != first.Index {
		t.Fatalf("replay through the other instance at %d, want %d", replay.Index, first.Index)
	}
	c := newLedgerClient(t, b.url, b.VerifierKey(), t.TempDir())
	_, err := c.Submit(t.Context(), k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(3*time.Minute)))
	if ae, ok := errors.AsType[*ledgerclient.APIError](err); !ok || ae.Code != api.CodeKeyRevoked {
		t.Fatalf("client Submit through the other instance = %v, want %s", err, api.CodeKeyRevoked)
	}
}
