package ledgerclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// Verify a digest against a ledger in a few lines: the client pins the
// ledger's key, proves the checkpoint consistent with the last one it saw,
// proves each entry's inclusion and checks its signature; the core folds
// the accepted signers' current statements into a verdict.
func Example() {
	ctx := context.Background()
	url, stop := startLedger(ctx) // a real ledger on loopback, for the example
	defer stop()
	home, _ := os.MkdirTemp("", "notarize-home")
	defer os.RemoveAll(home)
	release := newKey()
	pub, _ := release.PublicKey()
	releaseID, _ := notarize.KeyID(pub)
	d := notarize.DigestOf([]byte(`{"schemaVersion":2}`)) // the manifest's bytes, hashed here

	c, err := ledgerclient.New(ctx, ledgerclient.Config{URL: url, Home: home}) // trust on first use; or Config.VerifierKey
	if err != nil {
		panic(err)
	}
	entry, _ := notarize.Sign(ctx, release, notarize.NewStatement(d, "registry.example/app:1",
		notarize.Predicate{Status: notarize.StatusTrusted, Kind: notarize.KindImage, Timestamp: time.Now().UTC()}))
	if _, err := c.Submit(ctx, entry); err != nil { // answered once logged, receipt verified
		panic(err)
	}

	res, err := c.Current(ctx, d, releaseID) // the current statement of each accepted key
	if err != nil {
		panic(err) // could not verify: exit 4, never a verdict
	}
	dec := notarize.Decide(res.Records, d, []string{releaseID})
	fmt.Println(dec.Verdict)
	// Output: TRUSTED
}

func newKey() signature.SignerVerifier {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	sv, err := signature.LoadSignerVerifier(priv, notarize.HashFor(priv.Public()))
	if err != nil {
		panic(err)
	}
	return sv
}

// startLedger runs an embedded ledger on a temporary directory and returns
// its URL and how to stop it.
func startLedger(ctx context.Context) (string, func()) {
	dir, err := os.MkdirTemp("", "notarize-ledger")
	if err != nil {
		panic(err)
	}
	st, err := posix.New(ctx, posix.Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	l, err := ledger.New(ctx, st, ledger.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(l.Handler())
	return srv.URL, func() {
		srv.Close()
		_ = l.Close(ctx)
		_ = os.RemoveAll(dir)
	}
}
