package plugin

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestVerifyRegistryErrorFirst: verify asks the ledger about the signers'
// revocations while the registry resolves the image. When the registry
// fails, its error is the one reported (exit 4, naming the image), whatever
// the ledger does meanwhile: down, or holding its requests open, which are
// then cancelled rather than waited for.
func TestVerifyRegistryErrorFirst(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	missing := h.reg.host + "/nope:v1"
	var held, cancelled atomic.Int32
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		held.Add(1)
		<-r.Context().Done()
		cancelled.Add(1)
	}))
	t.Cleanup(hang.Close)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ledger down", []string{"--ledger", closedLedgerURL(t)}},
		{"ledger holds its answers, key given", []string{"--ledger", hang.URL, "--ledger-key", h.ledger.VerifierKey}},
		{"ledger holds its answers, first use", []string{"--ledger", hang.URL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []string{"text", "json"} {
				args := append(append([]string{"verify", "--output", format}, tc.args...), missing)
				out, errOut, code := h.run(args...)
				if code != ExitCouldNotVerify {
					t.Fatalf("%v: exit %d, want %d\n%s\n%s", args, code, ExitCouldNotVerify, out, errOut)
				}
				msg := errOut + out
				if !strings.Contains(msg, "nope") || strings.Contains(strings.ToLower(msg), "ledger") {
					t.Fatalf("%v: the registry's error should be reported, not the ledger's:\n%s", args, msg)
				}
			}
		})
	}
	if held.Load() == 0 {
		t.Fatal("the held ledger was never asked: the test proves nothing about asking it early")
	}
}

// TestVerifyRegistryFailureLeavesNoPin: a verify that fails at the
// registry on the first use of a ledger neither pins the ledger's key nor
// prints ledger messages beside the registry's error: the revocation
// lookups start early only for a ledger whose key is known (an attacker
// on the path during a failed run could otherwise plant a key that later
// runs keep).
func TestVerifyRegistryFailureLeavesNoPin(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	h.reg = newTestRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/nope/") {
				time.Sleep(300 * time.Millisecond) // a registry slower than two ledger round trips
			}
			next.ServeHTTP(w, r)
		})
	})
	out, errOut, code := h.run("verify", h.reg.host+"/nope:v1")
	if code != ExitCouldNotVerify || !strings.Contains(errOut+out, "nope") {
		t.Fatalf("exit %d, want %d naming the image\n%s\n%s", code, ExitCouldNotVerify, out, errOut)
	}
	if pins := h.ledgers(); len(pins) != 0 {
		t.Errorf("a verify that failed at the registry pinned a ledger key on first use: %+v", pins)
	}
	if strings.Contains(strings.ToLower(errOut), "ledger") {
		t.Errorf("the registry's failure is reported with ledger messages:\n%s", errOut)
	}
}

// TestVerifyRevocationLoggedDuringResolve: verify's revocation lookups are
// answered while the registry holds its manifest answer. Meanwhile alice
// revokes her key and her thief trusts the image (backdated). The
// registry then answers. The statement lookup sees the thief's statement
// in a larger log than the revocation lookups: they must be asked again,
// and the verdict must not be TRUSTED.
func TestVerifyRevocationLoggedDuringResolve(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	asked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var armed atomic.Bool // not while the image is pushed
	h.reg = newTestRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if armed.Load() && strings.Contains(r.URL.Path, "/manifests/") {
				once.Do(func() { close(asked) })
				<-release
			}
			next.ServeHTTP(w, r)
		})
	})
	imgD, err := h.reg.image.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d := notarize.Digest(imgD.String())
	armed.Store(true)
	revD, err := notarize.KeyRevocationDigest(newHarnessKeyID(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	var revLookups atomic.Int32
	revDone := make(chan struct{}, 16)
	up, _ := url.Parse(h.ledger.URL)
	rp := httputil.NewSingleHostReverseProxy(up)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rp.ServeHTTP(w, r)
		if strings.HasPrefix(r.URL.Path, api.PathDigests+string(revD)) {
			revLookups.Add(1)
			revDone <- struct{}{}
		}
	}))
	t.Cleanup(front.Close)

	type result struct {
		out, errOut string
		code        int
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL},
			"verify", "--ledger-key", h.ledger.VerifierKey, "--signer", "alice", h.reg.host+"/app:v1")
		done <- result{out, errOut, code}
	}()
	<-asked
	select {
	case <-revDone: // the early revocation lookup was answered: not revoked
	case <-time.After(10 * time.Second):
		t.Fatal("no revocation lookup while the registry held its answer")
	}
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	newThief(t, h, "alice").state(d, notarize.StatusTrusted, notarize.KindImage, time.Now().Add(-24*time.Hour))
	close(release)
	r := <-done
	if r.code == 0 {
		t.Fatalf("BYPASS: TRUSTED on the thief's statement after a revocation logged during the resolve\n%s\n%s", r.out, r.errOut)
	}
	if r.code != 2 {
		t.Fatalf("exit %d, want 2 (UNKNOWN, the revocation named)\n%s\n%s", r.code, r.out, r.errOut)
	}
	if n := revLookups.Load(); n < 2 {
		t.Fatalf("the revocations were asked %d times: the re-ask branch was not taken", n)
	}
}
