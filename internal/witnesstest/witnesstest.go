// Package witnesstest provides C2SP tlog-cosignature (cosignature/v1)
// witnesses for tests: keys that cosign a checkpoint note at a chosen time,
// a witness policy file naming them (Tessera's NewWitnessGroupFromPolicy
// format), and Front, a reverse proxy before a real ledger that adds their
// cosignatures to every checkpoint it passes on and can freeze, as an
// attacker holding back a revocation would.
//
// The cosignatures are made here and not by running witnesses, so that
// clients' checks (quorum, forgeries, split views, age) can be tested
// precisely; the ledger's own witnessing is tested with real witnesses.
package witnesstest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Witness is a test witness: an Ed25519 cosignature/v1 key.
type Witness struct {
	// Label is the witness's NAME in a policy file.
	Label string
	// VKey is its verifier key (signed-note vkey).
	VKey string
	name string
	hash uint32
	priv ed25519.PrivateKey
}

// New returns a witness labelled label whose key is named name.
func New(t testing.TB, label, name string) *Witness {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The vkey of a cosignature/v1 Ed25519 key: type 0x04.
	k := append([]byte{0x04}, pub...)
	v, err := fnote.NewVerifierForCosignatureV1(fmt.Sprintf("%s+%08x+%s", name, 0, base64.StdEncoding.EncodeToString(k)))
	if err != nil {
		t.Fatal(err)
	}
	vkey := fmt.Sprintf("%s+%08x+%s", name, v.KeyHash(), base64.StdEncoding.EncodeToString(k))
	if _, err := fnote.NewVerifierForCosignatureV1(vkey); err != nil {
		t.Fatal(err)
	}
	return &Witness{Label: label, VKey: vkey, name: name, hash: v.KeyHash(), priv: priv}
}

// Line returns the signature line of w's cosignature of the note text
// (everything before the blank line) made at time at.
func (w *Witness) Line(text []byte, at time.Time) string {
	ts := uint64(at.Unix())
	msg := fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", ts, text)
	sig := binary.BigEndian.AppendUint32(nil, w.hash)
	sig = binary.BigEndian.AppendUint64(sig, ts)
	sig = append(sig, ed25519.Sign(w.priv, msg)...)
	return "— " + w.name + " " + base64.StdEncoding.EncodeToString(sig) + "\n"
}

// Cosign returns the signed note raw with w's cosignature made at time at
// appended.
func (w *Witness) Cosign(raw []byte, at time.Time) []byte {
	i := bytes.Index(raw, []byte("\n\n"))
	if i < 0 {
		return raw
	}
	return append(bytes.Clone(raw), w.Line(raw[:i+1], at)...)
}

// Forge returns raw with a cosignature line under w's name and key hash that
// does not verify (w's signature of another text).
func (w *Witness) Forge(raw []byte, at time.Time) []byte {
	return append(bytes.Clone(raw), w.Line([]byte("another origin\n1\nAAAA\n"), at)...)
}

// Verifier returns w's cosignature/v1 verifier.
func (w *Witness) Verifier() note.Verifier {
	v, _ := fnote.NewVerifierForCosignatureV1(w.VKey)
	return v
}

// Three returns three test witnesses, w1, w2 and w3, named
// witness1.test, witness2.test and witness3.test: a 2-of-3 quorum's worth.
func Three(t testing.TB) (w1, w2, w3 *Witness) {
	t.Helper()
	return New(t, "w1", "witness1.test"), New(t, "w2", "witness2.test"), New(t, "w3", "witness3.test")
}

// Policy returns a policy file whose quorum is a group of threshold n over
// the witnesses.
func Policy(n int, ws ...*Witness) []byte {
	var b strings.Builder
	b.WriteString("# test witness policy\n")
	labels := make([]string, len(ws))
	for i, w := range ws {
		fmt.Fprintf(&b, "witness %s %s https://%s.witness.test/\n", w.Label, w.VKey, w.Label)
		labels[i] = w.Label
	}
	fmt.Fprintf(&b, "group witnesses %d %s\nquorum witnesses\n", n, strings.Join(labels, " "))
	return []byte(b.String())
}

// Front is a reverse proxy before a ledger that adds cosignatures by its
// witnesses to every checkpoint it passes on: the ledger's /checkpoint and
// the "checkpoint" field of its JSON answers (receipts, lookups). Frozen, it
// keeps serving the checkpoint it passed on last.
type Front struct {
	*httptest.Server

	mu        sync.Mutex
	witnesses []*Witness
	now       func() time.Time
	frozen    bool
	last      []byte
}

// NewFront starts a front before the ledger at ledgerURL, cosigning with ws
// at the current time. It is closed when the test ends.
func NewFront(t testing.TB, ledgerURL string, ws ...*Witness) *Front {
	t.Helper()
	u, err := url.Parse(ledgerURL)
	if err != nil {
		t.Fatal(err)
	}
	f := &Front{witnesses: ws, now: time.Now}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = f.rewrite
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.TrimSuffix(r.URL.Path, "/") == strings.TrimSuffix(u.Path, "/")+"/checkpoint" {
			if b, ok := f.frozenCheckpoint(); ok {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, _ = w.Write(b)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// SetWitnesses changes the witnesses that cosign from now on.
func (f *Front) SetWitnesses(ws ...*Witness) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.witnesses = ws
}

// SetClock makes the front cosign at now() instead of the current time.
func (f *Front) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// Freeze makes the front serve the last checkpoint it passed on from now on.
func (f *Front) Freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
}

// Thaw makes the front pass the ledger's checkpoints on again.
func (f *Front) Thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = false
}

// Frozen reports whether the front is frozen.
func (f *Front) Frozen() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.frozen
}

func (f *Front) frozenCheckpoint() ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.frozen && f.last != nil
}

// cosign adds the witnesses' cosignatures to a checkpoint note.
func (f *Front) cosign(raw []byte) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	at := f.now()
	for _, w := range f.witnesses {
		raw = w.Cosign(raw, at)
	}
	return raw
}

func (f *Front) rewrite(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	switch {
	case strings.HasSuffix(resp.Request.URL.Path, "/checkpoint"):
		b = f.cosign(b)
		f.mu.Lock()
		f.last = b
		f.mu.Unlock()
	case strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"):
		var m map[string]json.RawMessage
		var cp string
		if json.Unmarshal(b, &m) == nil && m["checkpoint"] != nil && json.Unmarshal(m["checkpoint"], &cp) == nil {
			m["checkpoint"], _ = json.Marshal(string(f.cosign([]byte(cp))))
			b, _ = json.Marshal(m)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	return nil
}
