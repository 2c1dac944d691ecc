package ledgerclient_test

// Red team 15: a witness quorum alone does not protect trust on first use.
// A cosignature/v1 signature covers the checkpoint's text (origin, size,
// root hash), not the ledger's signature, so an attacker on the path at a
// first use can take a genuine, witnessed checkpoint, replace the ledger's
// signature with one by a key of its own named like the log's origin,
// announce that key, and the client pinned it: the quorum checked out.
// A policy's "log" line now names the ledger's key, and the client takes
// no other (configured, pinned or announced).

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/internal/witnesstest"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

func TestRedteam15WitnessPolicyTOFUPinsAttackerKey(t *testing.T) {
	t.Parallel()
	srv := ledgertest.Start(t)
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	alice := notarizetest.NewSigner(t)
	submit(t, direct, notarizetest.Entry(t, alice, digest("rt15-tofu"), notarize.StatusTrusted, t0))

	w1, w2, w3 := witnesstest.Three(t)
	honest := witnesstest.NewFront(t, srv.URL, w1, w2, w3) // the ledger as its users reach it: witnessed
	policy, err := ledgerclient.ParseWitnessPolicy(append([]byte("log "+srv.VerifierKey+" "+srv.URL+"\n"), witnesstest.Policy(2, w1, w2, w3)...))
	if err != nil {
		t.Fatal(err)
	}

	real, err := note.NewVerifier(srv.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	origin := real.Name()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin) // the attacker's key, named like the log
	if err != nil {
		t.Fatal(err)
	}
	evil, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}

	// The attacker on the path, at the first use only.
	var attacking atomic.Bool
	attacking.Store(true)
	u, _ := url.Parse(honest.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !attacking.Load() {
			rp.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case api.PathInfo:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(api.Info{Origin: origin, VerifierKey: vkey})
			return
		case "/checkpoint":
			resp, err := http.Get(honest.URL + "/checkpoint")
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			text, sigs, ok := bytes.Cut(raw, []byte("\n\n"))
			if !ok {
				http.Error(w, "no signatures", http.StatusBadGateway)
				return
			}
			text = append(text, '\n')
			mine, err := note.Sign(&note.Note{Text: string(text)}, evil)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			out := bytes.Clone(mine)
			for _, l := range strings.SplitAfter(string(sigs), "\n") {
				// keep the witnesses' cosignatures, drop the ledger's own
				if l != "" && !strings.HasPrefix(l, "— "+origin+" ") {
					out = append(out, l...)
				}
			}
			_, _ = w.Write(out)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	home := t.TempDir()
	_, err = ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: home, WitnessPolicy: policy})
	if !errors.Is(err, ledgerclient.ErrKeyMismatch) {
		t.Fatalf("WRONG PIN: first use through a front announcing its own key under a policy naming the ledger's: %v, want ErrKeyMismatch", err)
	}
	if pins, err := ledgerclient.ListPins(home); err != nil || len(pins) != 0 {
		t.Fatalf("pins after the refused first use: %+v %v", pins, err)
	}

	// docker notarize ledger trust asks Announced: the front's key is
	// refused there too (review), and a key given with --key that the
	// policy does not name is refused before any request.
	if key, _, err := ledgerclient.Announced(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), WitnessPolicy: policy}); !errors.Is(err, ledgerclient.ErrKeyMismatch) {
		t.Fatalf("Announced through the front: key %q, %v; want ErrKeyMismatch", key, err)
	}
	if _, _, err := ledgerclient.Announced(t.Context(), ledgerclient.Config{URL: "http://127.0.0.1:1", Home: t.TempDir(), VerifierKey: vkey, WitnessPolicy: policy}); !errors.Is(err, ledgerclient.ErrKeyMismatch) {
		t.Fatalf("Announced with a given key the policy does not name: %v; want ErrKeyMismatch before any request", err)
	}

	// The attacker leaves: the genuine ledger is pinned.
	attacking.Store(false)
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: home, WitnessPolicy: policy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c.VerifierKey() != srv.VerifierKey {
		t.Fatalf("pinned %q, want the ledger's %q", c.VerifierKey(), srv.VerifierKey)
	}
	if key, _, err := ledgerclient.Announced(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), WitnessPolicy: policy}); err != nil || key != srv.VerifierKey {
		t.Fatalf("Announced of the genuine ledger: %q, %v", key, err)
	}

	// A configured key, or one pinned earlier, that the policy does not
	// name is refused too, before any request.
	if _, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: vkey, WitnessPolicy: policy}); !errors.Is(err, ledgerclient.ErrKeyMismatch) {
		t.Fatalf("a configured key the policy does not name: %v, want ErrKeyMismatch", err)
	}
	other := t.TempDir()
	if _, err := ledgerclient.Pin(t.Context(), other, front.URL, vkey, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: other, WitnessPolicy: policy}); !errors.Is(err, ledgerclient.ErrKeyMismatch) {
		t.Fatalf("a pinned key the policy does not name: %v, want ErrKeyMismatch", err)
	}
}
