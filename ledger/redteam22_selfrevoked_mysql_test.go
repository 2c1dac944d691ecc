package ledger

import (
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam22MySQLKeepsNoAnswer: on MySQL, which several instances
// write, the check keeps no "never wrote" answer: instance b, which
// admitted a statement by k (its point read: nothing about k's revocation
// digest), refuses k's next one once instance a indexed k's revocation,
// although b's own follower may never have read the revocation's row
// (a wrote it first) and so never recorded k in its selfDigest.
//
// Mutant checked: SoleWriter: true in the MySQL index's Tuning. The
// existing TestMySQLSelfRevokedAcrossInstances fails on it only when b's
// follower happens not to read the batch itself; the first check here
// fails on it every time.
func TestRedteam22MySQLKeepsNoAnswer(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "mysql.example/redteam22")
	a := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
	b := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
	k := newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	b.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated)
	if b.store.tune.SoleWriter || b.selfRevoked.neverWrote(k.keyID) {
		t.Fatalf("BYPASS (latent): a MySQL instance kept a point read's answer (SoleWriter %v): another instance's write of the key's revocation would not end it", b.store.tune.SoleWriter)
	}
	rev := a.submit(t, k.revoke(t, k.keyID, "stolen", now.Add(time.Minute)), http.StatusCreated)
	b.submitRefused(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(2*time.Minute)), k.keyID, rev.Index)
}
