package ledgerclient

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/internal/witnesstest"
	"github.com/notarize/docker-notarize/notarize"
)

// threeWitnesses returns three test witnesses and a 2-of-3 policy over them.
func threeWitnesses(t *testing.T) ([]*witnesstest.Witness, *WitnessPolicy) {
	t.Helper()
	ws := []*witnesstest.Witness{
		witnesstest.New(t, "w1", "witness1.test"),
		witnesstest.New(t, "w2", "witness2.test"),
		witnesstest.New(t, "w3", "witness3.test"),
	}
	p, err := ParseWitnessPolicy(witnesstest.Policy(2, ws...))
	if err != nil {
		t.Fatal(err)
	}
	return ws, p
}

// witnessedClient returns a fake ledger of n leaves and a client with the
// policy, pinned to the ledger's key, whose clock reads now.
func witnessedClient(t *testing.T, n int, p *WitnessPolicy, maxAge time.Duration, now time.Time) (*fakeOps, *Client) {
	t.Helper()
	s, vkey := newNoteKey(t, testOrigin)
	f := newFakeOps(t, newFakeLog(s, vkey))
	f.grow(n)
	cfg := Config{URL: "https://ledger.test", Home: t.TempDir(), VerifierKey: vkey, WitnessPolicy: p, MaxWitnessAge: maxAge}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := newClient(t.Context(), cfg.withDefaults(), "https://ledger.test", f)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return now }
	return f, c
}

// cosignedBy is a checkpoint hook adding each witness's cosignature at its time.
func cosignedBy(sigs ...func([]byte) []byte) func([]byte) []byte {
	return func(b []byte) []byte {
		for _, s := range sigs {
			b = s(b)
		}
		return b
	}
}

func at(w *witnesstest.Witness, t time.Time) func([]byte) []byte {
	return func(b []byte) []byte { return w.Cosign(b, t) }
}

// sameKeyAs returns a verifier key for w's public key under the key name
// name, typed alg (0x01 an Ed25519 note key, 0x04 a cosignature/v1 key).
func sameKeyAs(t *testing.T, w *witnesstest.Witness, name string, alg byte) string {
	t.Helper()
	_, rest, _ := strings.Cut(w.VKey, "+")
	_, b64, _ := strings.Cut(rest, "+")
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	key := append([]byte{alg}, k[1:]...)
	sum := sha256.Sum256(append([]byte(name+"\n"), key...)) // the signed-note key hash
	return fmt.Sprintf("%s+%08x+%s", name, binary.BigEndian.Uint32(sum[:]), base64.StdEncoding.EncodeToString(key))
}

// vkeyLine is a policy's witness line for vkey labelled label.
func vkeyLine(label, vkey string) string {
	return fmt.Sprintf("witness %s %s https://%s.test/\n", label, vkey, label)
}

func TestParseWitnessPolicy(t *testing.T) {
	w1 := witnesstest.New(t, "w1", "witness1.test")
	w2 := witnesstest.New(t, "w2", "witness2.test")
	line := func(w *witnesstest.Witness, label string) string {
		return fmt.Sprintf("witness %s %s https://%s.test/\n", label, w.VKey, label)
	}
	_, logKey, err := note.GenerateKey(rand.Reader, "ledger.test")
	if err != nil {
		t.Fatal(err)
	}
	name, rest, _ := strings.Cut(logKey, "+")
	hash, b64, _ := strings.Cut(rest, "+")
	mistyped := name + "+" + fmt.Sprintf("%08x", ^mustParseHex(t, hash)) + "+" + b64
	for _, tc := range []struct {
		name, policy, wantErr string
	}{
		{"two of two", line(w1, "w1") + line(w2, "w2") + "group g all w1 w2\nquorum g\n", ""},
		{"single witness", line(w1, "w1") + "quorum w1\n", ""},
		{"log line", "log " + logKey + " https://ledger.test/\n" + line(w1, "w1") + "quorum w1\n", ""},
		{"log line twice", "log " + logKey + "\nlog " + logKey + "\n" + line(w1, "w1") + "quorum w1\n", ""},
		{"log line with a cosignature key", "log " + w1.VKey + "\n" + line(w1, "w1") + "quorum w1\n", "log key"},
		{"log line with a raw key (Sigsum's form)", "log " + strings.Repeat("ab", 32) + "\n" + line(w1, "w1") + "quorum w1\n", "log key"},
		{"log key hash mistyped", "log " + mistyped + "\n" + line(w1, "w1") + "quorum w1\n", "invalid verifier hash"},
		{"log line without a key", "log\n" + line(w1, "w1") + "quorum w1\n", "want log VKEY"},
		{"log line with too many fields", "log " + logKey + " https://ledger.test/ extra\n" + line(w1, "w1") + "quorum w1\n", "want log VKEY"},
		{"quorum none", line(w1, "w1") + "quorum none\n", "requires no witness"},
		{"no quorum", line(w1, "w1"), "must define a quorum"},
		{"threshold zero", line(w1, "w1") + line(w2, "w2") + "group z 0 w1\ngroup g 1 z w2\nquorum g\n", "threshold 0"},
		{"one key two names", line(w1, "w1") + line(w1, "w1bis") + "group g 2 w1 w1bis\nquorum g\n", "same key"},
		// An Ed25519 cosignature does not cover the key's name: w1's line
		// shown under another key name, with that name's key hash, verifies.
		{"one key two key names", line(w1, "w1") + vkeyLine("w1bis", sameKeyAs(t, w1, "witness1b.test", 0x04)) + "group g 2 w1 w1bis\nquorum g\n", "same key"},
		{"one key as a note key too", line(w1, "w1") + vkeyLine("w1bis", sameKeyAs(t, w1, "witness1b.test", 0x01)) + "group g 2 w1 w1bis\nquorum g\n", "same key"},
		{"witness twice in a group", line(w1, "w1") + line(w2, "w2") + "group g 2 w1 w1 w2\nquorum g\n", "twice"},
		// One cosignature by w1 satisfied each of these quorums (review).
		{"a group named twice", line(w1, "w1") + line(w2, "w2") + "group g any w1 w2\ngroup q 2 g g\nquorum q\n", "twice"},
		{"a witness beside its group", line(w1, "w1") + line(w2, "w2") + "group g any w1 w2\ngroup q 2 w1 g\nquorum q\n", "twice"},
		{"two groups sharing a witness", line(w1, "w1") + line(w2, "w2") + "group a any w1 w2\ngroup b any w1 w2\ngroup q all a b\nquorum q\n", "twice"},
		{"nested groups, each witness once", line(w1, "w1") + line(w2, "w2") + "group a 1 w1\ngroup b 1 w2\ngroup q all a b\nquorum q\n", ""},
		{"bad key", "witness w1 nokey https://w1.test/\nquorum w1\n", "invalid witness config"},
		{"unknown keyword", "quorate w1\n", "unknown keyword"},
		{"too large", strings.Repeat("#", MaxWitnessPolicySize+1), "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseWitnessPolicy([]byte(tc.policy))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Witnesses()) == 0 {
					t.Fatal("no witnesses")
				}
				if logs := p.LogKeys(); strings.Contains(tc.policy, "log ") != (len(logs) == 1 && logs[0] == logKey) {
					t.Fatalf("log keys %q", logs)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestWitnessQuorum(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ws, p := threeWitnesses(t)
	w1, w2, w3 := ws[0], ws[1], ws[2]
	stranger := witnesstest.New(t, "w9", "witness9.test")
	// An impostor under w2's name and label but another key.
	impostor := witnesstest.New(t, "w2", "witness2.test")
	for _, tc := range []struct {
		name      string
		hook      func([]byte) []byte
		wantAt    time.Time // quorum met
		missing   []string  // quorum not met
		forged    []string
		cosignedN int
	}{
		{name: "two of three", hook: cosignedBy(at(w1, now.Add(-time.Hour)), at(w3, now.Add(-2*time.Hour))), wantAt: now.Add(-2 * time.Hour)},
		{name: "age from the cosignature completing the quorum",
			hook:   cosignedBy(at(w1, now.Add(-3*time.Hour)), at(w2, now.Add(-time.Hour)), at(w3, now.Add(-2*time.Hour))),
			wantAt: now.Add(-2 * time.Hour)},
		{name: "one short", hook: at(w2, now), missing: []string{"w1 (witness1.test)", "w3 (witness3.test)"}, cosignedN: 1},
		{name: "none", hook: nil, missing: []string{"w1 (witness1.test)", "w2 (witness2.test)", "w3 (witness3.test)"}},
		{name: "forged cosignature", hook: cosignedBy(at(w1, now), func(b []byte) []byte { return w2.Forge(b, now) }),
			missing: []string{"w2 (witness2.test)", "w3 (witness3.test)"}, forged: []string{"w2 (witness2.test)"}, cosignedN: 1},
		{name: "witness not in the policy", hook: cosignedBy(at(w1, now), at(stranger, now)),
			missing: []string{"w2 (witness2.test)", "w3 (witness3.test)"}, cosignedN: 1},
		{name: "impostor under a witness's name", hook: cosignedBy(at(w1, now), at(impostor, now)),
			missing: []string{"w2 (witness2.test)", "w3 (witness3.test)"}, cosignedN: 1},
		{name: "duplicate cosignature counted once", hook: cosignedBy(at(w1, now), at(w1, now.Add(-time.Minute))),
			missing: []string{"w2 (witness2.test)", "w3 (witness3.test)"}, cosignedN: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := witnessedClient(t, 5, p, 0, now)
			f.checkpointHook = tc.hook
			if tc.hook == nil {
				f.checkpointHook = func(b []byte) []byte { return b }
			}
			cp, err := c.Latest(t.Context())
			if tc.missing == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !cp.WitnessedAt.Equal(tc.wantAt) {
					t.Fatalf("WitnessedAt = %v, want %v", cp.WitnessedAt, tc.wantAt)
				}
				return
			}
			var qe *WitnessQuorumError
			if !errors.As(err, &qe) || !errors.Is(err, ErrWitnessQuorum) || !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("err = %v, want a *WitnessQuorumError", err)
			}
			if !slices.Equal(qe.Missing, tc.missing) || !slices.Equal(qe.Forged, tc.forged) || len(qe.Cosigned) != tc.cosignedN {
				t.Fatalf("missing %q forged %q cosigned %q; want missing %q forged %q and %d cosigned",
					qe.Missing, qe.Forged, qe.Cosigned, tc.missing, tc.forged, tc.cosignedN)
			}
			for _, m := range tc.missing {
				if !strings.Contains(err.Error(), m) {
					t.Fatalf("error %q does not name %s", err, m)
				}
			}
			if qe.Checkpoint.Size != 5 || len(qe.Checkpoint.Raw) == 0 {
				t.Fatalf("evidence %+v", qe.Checkpoint)
			}
			if b, _ := c.store.readCheckpoint(c.vkey); b != nil {
				t.Fatal("a checkpoint without quorum was stored")
			}
		})
	}
}

// TestWitnessSplitView: a ledger forked under its own key shows history B to
// a second client. The honest witnesses cosigned history A only; B carries
// the cosignature of one colluding witness. The client requiring 2 of 3
// refuses B and names the witnesses that did not cosign it.
func TestWitnessSplitView(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ws, p := threeWitnesses(t)
	w1, w2, w3 := ws[0], ws[1], ws[2]

	fa, ca := witnessedClient(t, 4, p, 0, now)
	fa.checkpointHook = cosignedBy(at(w1, now), at(w2, now), at(w3, now))
	cpA, err := ca.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	// History B: the same key, other entries; only w3 colludes.
	forked := newFakeLog(fa.log.signer, fa.log.vkey)
	for i := range 4 {
		forked.add(fmt.Appendf(nil, "forked leaf %d", i))
	}
	fb, cb := witnessedClient(t, 0, p, 0, now)
	fb.setLog(forked)
	cb.verifier, cb.vkey = ca.verifier, ca.vkey
	fb.checkpointHook = at(w3, now)
	_, err = cb.Latest(t.Context())
	var qe *WitnessQuorumError
	if !errors.As(err, &qe) {
		t.Fatalf("history B accepted: err = %v", err)
	}
	if !slices.Equal(qe.Missing, []string{"w1 (witness1.test)", "w2 (witness2.test)"}) || !slices.Equal(qe.Cosigned, []string{"w3 (witness3.test)"}) {
		t.Fatalf("missing %q cosigned %q", qe.Missing, qe.Cosigned)
	}
	if qe.Checkpoint.Size != cpA.Size || string(qe.Checkpoint.Hash) == string(cpA.Hash) {
		t.Fatal("the evidence is not history B's checkpoint")
	}
	// Without the policy the same client accepts history B: the defence is the quorum.
	cb.witnesses = nil
	if _, err := cb.Latest(t.Context()); err != nil {
		t.Fatalf("without a policy: %v", err)
	}
}

// TestWitnessAPIAnswers: the checkpoints inside receipts and lookup answers
// need the quorum too, and each is held to the maximum age.
func TestWitnessAPIAnswers(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ws, p := threeWitnesses(t)
	w1, w2 := ws[0], ws[1]
	f, c := witnessedClient(t, 2, p, time.Hour, now)
	f.checkpointHook = cosignedBy(at(w1, now.Add(-time.Minute)), at(w2, now))
	signer := newEntrySigner(t)
	res, err := c.Submit(t.Context(), signEntry(t, signer, digestA, notarize.StatusTrusted, t0))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Checkpoint.WitnessedAt.Equal(now.Add(-time.Minute)) {
		t.Fatalf("receipt checkpoint WitnessedAt = %v", res.Checkpoint.WitnessedAt)
	}
	lr, err := c.Lookup(t.Context(), digestA)
	if err != nil {
		t.Fatal(err)
	}
	if lr.Checkpoint.WitnessedAt.IsZero() {
		t.Fatal("lookup checkpoint not witnessed")
	}

	f.checkpointHook = at(w1, now)
	if _, err := c.Lookup(t.Context(), digestA); !errors.Is(err, ErrWitnessQuorum) {
		t.Fatalf("lookup without quorum: %v", err)
	}
	if _, err := c.Current(t.Context(), digestA, res.Record.KeyID); !errors.Is(err, ErrWitnessQuorum) {
		t.Fatalf("current without quorum: %v", err)
	}
	if _, err := c.Submit(t.Context(), signEntry(t, signer, digestB, notarize.StatusTrusted, t0)); !errors.Is(err, ErrWitnessQuorum) {
		t.Fatalf("receipt without quorum: %v", err)
	}

	// A quorum completed two hours ago: a frozen or held-back view.
	f.checkpointHook = cosignedBy(at(w1, now.Add(-2*time.Hour)), at(w2, now))
	var se *StaleCheckpointError
	if _, err := c.Lookup(t.Context(), digestA); !errors.As(err, &se) || !errors.Is(err, ErrStaleCheckpoint) {
		t.Fatalf("stale lookup: %v", err)
	}
	if se.Age != 2*time.Hour || se.MaxAge != time.Hour || !strings.Contains(se.Error(), "2h0m0s ago") {
		t.Fatalf("stale error %v", se)
	}
	if _, err := c.Latest(t.Context()); !errors.Is(err, ErrStaleCheckpoint) {
		t.Fatalf("stale latest: %v", err)
	}
}

func TestWitnessConfig(t *testing.T) {
	_, p := threeWitnesses(t)
	for _, cfg := range []Config{
		{URL: "https://l.test", Home: "h", MaxWitnessAge: time.Hour},
		{URL: "https://l.test", Home: "h", WitnessPolicy: p, MaxWitnessAge: -time.Second},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v: valid", cfg)
		}
	}
}

func mustParseHex(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}
