package ledgerclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// Red team 5 (issue 11, the tail after the map root): mayConcern, the
// tail's cheap "not about this digest" test, must never skip an entry the
// strict path reads as a statement about the digest; and a front lying
// about the tail's bundles must never get a verdict computed without the
// entry it hides.

// redteam5Hex spells the first hex digit of h as a JSON \u escape.
func redteam5Hex(h string) string { return fmt.Sprintf(`\u%04x`, h[0]) + h[1:] }

// redteam5Check fails with BYPASS when the strict path reads leaf as a
// statement about some digest and mayConcern says the leaf is not about it.
func redteam5Check(t *testing.T, name string, leaf []byte) (strict bool) {
	t.Helper()
	d, ok := strictSubject(leaf)
	if ok && !mayConcern(leaf, d) {
		t.Errorf("BYPASS: %s: the strict path reads a statement about %s, mayConcern skips it: %q", name, d, leaf)
	}
	return ok
}

// TestRedteam5MayConcernSpellings: every spelling of a statement's subject
// and of its entry that an attacker could try (JSON escapes of the member
// name or the hex, capitals, a repeated member, whitespace, a BOM, two
// subjects, the digest in another member, base64 line breaks, padding and
// escaped slashes, members reordered, a map-root header in front, a very
// long entry) is either refused by the strict path or found by mayConcern.
// The canonical spellings must be read by both (else the test proves
// nothing).
func TestRedteam5MayConcernSpellings(t *testing.T) {
	s := notarizetest.NewSigner(t)
	d := notarize.DigestOf([]byte("redteam5"))
	other := notarize.DigestOf([]byte("redteam5 other"))
	hex := d.Hex()
	pem := "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"

	st := notarize.NewStatement(d, "registry.example/app:1 "+other.Hex(), notarize.Predicate{
		Status: notarize.StatusUntrusted, Kind: notarize.KindImage, Timestamp: t0,
		Attributes: map[string]string{"sha256": other.Hex(), "payload": other.String()},
	})
	canon, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	e, err := notarize.Sign(t.Context(), s, st)
	if err != nil {
		t.Fatal(err)
	}
	leaf := marshal(t, e)
	if !redteam5Check(t, "the canonical signed leaf", leaf) || !mayConcern(leaf, d) {
		t.Fatal("the canonical leaf is not read by both paths: the test proves nothing")
	}
	if fe := verifyLeaf(0, leaf); fe.Err != nil || fe.Record.Statement.Digest() != d {
		t.Fatalf("the canonical leaf does not verify: %v", fe.Err)
	}
	if mayConcern(leaf, notarize.DigestOf([]byte("unrelated"))) {
		t.Error("mayConcern says the leaf may concern an unrelated digest")
	}

	// Statement-level spellings, wrapped in a canonical entry layout.
	c := string(canon)
	payloads := map[string]string{
		"canonical":                    c,
		"escaped member name":          strings.Replace(c, `"sha256":"`+hex, `"\u0073ha256":"`+hex, 1),
		"escaped hex digit":            strings.Replace(c, hex, redteam5Hex(hex), 1),
		"capital hex":                  strings.Replace(c, hex, strings.ToUpper(hex), 1),
		"escaped slash in _type":       strings.Replace(c, `https://in-toto.io`, `https:\/\/in-toto.io`, 1),
		"repeated sha256, ours last":   strings.Replace(c, `"sha256":"`+hex+`"`, `"sha256":"`+other.Hex()+`","sha256":"`+hex+`"`, 1),
		"repeated sha256, ours first":  strings.Replace(c, `"sha256":"`+hex+`"`, `"sha256":"`+hex+`","sha256":"`+other.Hex()+`"`, 1),
		"repeated digest member":       strings.Replace(c, `"digest":{"sha256":"`+hex+`"}`, `"digest":{"sha256":"`+other.Hex()+`"},"digest":{"sha256":"`+hex+`"}`, 1),
		"repeated subject member":      strings.Replace(c, `"subject":[`, `"subject":[{"digest":{"sha256":"`+other.Hex()+`"}}],"subject":[`, 1),
		"two subjects":                 strings.Replace(c, `"subject":[`, `"subject":[{"digest":{"sha256":"`+other.Hex()+`"}},`, 1),
		"leading space":                " " + c,
		"trailing newline":             c + "\n",
		"BOM":                          "\ufeff" + c,
		"space after colon":            strings.Replace(c, `"sha256":"`, `"sha256": "`, 1),
		"Sha256 miscased":              strings.Replace(c, `"sha256":"`+hex, `"Sha256":"`+hex, 1),
		"sha256 prefix in hex":         strings.Replace(c, `"sha256":"`+hex, `"sha256":"sha256:`+hex, 1),
		"hex padded with a zero":       strings.Replace(c, hex, hex+"0", 1),
		"the statement twice":          c + c,
		"statement in an array":        "[" + c + "]",
		"unknown member":               strings.Replace(c, `{"_type"`, `{"x":"`+hex+`","_type"`, 1),
		"escaped quote in name":        strings.Replace(c, `"name":"registry`, `"name":"\"registry`, 1),
		"NUL escape before the digest": strings.Replace(c, `"sha256":"`+hex, `"sha256\u0000":"`+hex, 1),
	}
	for name, p := range payloads {
		redteam5Check(t, "payload: "+name, wrapStatement(t, []byte(p), pem))
	}
	if _, ok := strictSubject(wrapStatement(t, canon, pem)); !ok {
		t.Fatal("the canonical payload is not read by the strict path: the test proves nothing")
	}

	// Entry-level spellings around the signed payload.
	b64 := e.Envelope.Payload
	l := string(leaf)
	mid := len(b64) / 2 / 4 * 4
	leaves := map[string]string{
		"base64 with an escaped line break": strings.Replace(l, b64, b64[:mid]+`\n`+b64[mid:], 1),
		"base64 with a raw CR":              strings.Replace(l, b64, b64[:mid]+"\r"+b64[mid:], 1),
		"base64 without padding":            strings.Replace(l, b64, strings.TrimRight(b64, "="), 1),
		"base64 with extra padding":         strings.Replace(l, b64, b64+"==", 1),
		"base64 slashes escaped":            strings.Replace(l, b64, strings.ReplaceAll(b64, "/", `\/`), 1),
		"base64 plus escaped":               strings.Replace(l, b64, strings.ReplaceAll(b64, "+", `\u002b`), 1),
		"base64 URL alphabet":               strings.Replace(l, b64, base64.URLEncoding.EncodeToString(mustB64(t, b64)), 1),
		"payload member escaped":            strings.Replace(l, `"payload":"`, `"p\u0061yload":"`, 1),
		"payload member repeated, ours last": strings.Replace(l, `"payload":"`+b64+`"`,
			`"payload":"`+base64.StdEncoding.EncodeToString([]byte("{}"))+`","payload":"`+b64+`"`, 1),
		"payload member repeated, ours first": strings.Replace(l, `"payload":"`+b64+`"`,
			`"payload":"`+b64+`","payload":"`+base64.StdEncoding.EncodeToString([]byte("{}"))+`"`, 1),
		"payload before payloadType": strings.Replace(l, `"payloadType":"`+notarize.PayloadType+`","payload":"`+b64+`"`,
			`"payload":"`+b64+`","payloadType":"`+notarize.PayloadType+`"`, 1),
		"publicKey first":      `{"publicKey":` + l[strings.LastIndex(l, `"publicKey":`)+len(`"publicKey":`):len(l)-1] + `,` + l[1:strings.LastIndex(l, `,"publicKey":`)] + `}`,
		"space after colon":    strings.Replace(l, `"payload":"`, `"payload": "`, 1),
		"BOM":                  "\ufeff" + l,
		"trailing newline":     l + "\n",
		"map-root header":      notarize.MapRootHeader + l,
		"payloadType in caps":  strings.Replace(l, notarize.PayloadType, strings.ToUpper(notarize.PayloadType), 1),
		"decoy payload in key": strings.Replace(l, `"keyid":"`, `"keyid":"\"payload\":\"`, 1),
	}
	for name, v := range leaves {
		redteam5Check(t, "leaf: "+name, []byte(v))
	}

	// A very long entry (a subject name and attributes at their bounds).
	long := notarize.NewStatement(d, strings.Repeat("n", notarize.MaxNameLen), notarize.Predicate{
		Status: notarize.StatusUntrusted, Timestamp: t0, Attributes: map[string]string{},
	})
	for i := range 28 {
		long.Predicate.Attributes[fmt.Sprintf("k%02d", i)] = strings.Repeat(other.Hex(), notarize.MaxAttributeVal/64)
	}
	le, err := notarize.Sign(t.Context(), s, long)
	if err != nil {
		t.Fatal(err)
	}
	if !redteam5Check(t, "a long signed leaf", marshal(t, le)) {
		t.Fatal("the long leaf is not read by the strict path")
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedteam5MayConcernMutations: a seeded random walk of byte edits
// (insertions of JSON's structural and escape characters, deletions,
// replacements, duplicated spans) of a canonical leaf and of its
// statement never yields bytes the strict path reads as a statement about
// a digest that mayConcern says they are not about.
func TestRedteam5MayConcernMutations(t *testing.T) {
	s := notarizetest.NewSigner(t)
	d := notarize.DigestOf([]byte("redteam5 mutations"))
	e := notarizetest.Entry(t, s, d, notarize.StatusUntrusted, t0)
	leaf := marshal(t, e)
	canon := mustB64(t, e.Envelope.Payload)
	pem := e.PublicKey
	r := rand.New(rand.NewPCG(5, 5))
	alphabet := []byte(`"\:,{}[] u0123456789abcdefABCDEF/+=nr` + "\n\r\t")
	mutate := func(b []byte) []byte {
		b = bytes.Clone(b)
		for range 1 + r.IntN(3) {
			if len(b) == 0 {
				return b
			}
			i := r.IntN(len(b))
			switch r.IntN(4) {
			case 0:
				b = append(b[:i], append([]byte{alphabet[r.IntN(len(alphabet))]}, b[i:]...)...)
			case 1:
				b = append(b[:i], b[i+1:]...)
			case 2:
				b[i] = alphabet[r.IntN(len(alphabet))]
			case 3:
				j := min(len(b), i+1+r.IntN(16))
				b = append(b[:j], append(bytes.Clone(b[i:j]), b[j:]...)...)
			}
		}
		return b
	}
	n := 4000
	if testing.Short() {
		n = 500
	}
	accepted := 0
	for i := range n {
		if redteam5Check(t, fmt.Sprintf("leaf mutation %d", i), mutate(leaf)) {
			accepted++
		}
		if redteam5Check(t, fmt.Sprintf("statement mutation %d", i), wrapStatement(t, mutate(canon), pem)) {
			accepted++
		}
	}
	t.Logf("%d of %d mutations read by the strict path (each also found by mayConcern)", accepted, 2*n)
}

// redteam5Hidden is a fake log where alice's current statement about
// digestA is an UNTRUSTED one (a revocation of her earlier TRUSTED one)
// in the middle of the tail, and a front that answers with the TRUSTED
// one only.
func redteam5Hidden(t *testing.T) (f *fakeOps, c *Client, ka string, trusted, hidden uint64) {
	t.Helper()
	f, c, _ = pinnedClient(t, 3)
	alice := newEntrySigner(t)
	ka = notarizetest.KeyID(t, alice)
	trusted = appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0, 1)[0]
	f.grow(600)
	hidden = appendStatements(t, f, alice, digestA, notarize.StatusUntrusted, t0.Add(time.Hour), 1)[0]
	f.grow(400)
	// An honest answer verifies, naming the hidden statement.
	res, err := c.Current(t.Context(), digestA, ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != hidden {
		t.Fatalf("honest answer: %v %+v, want entry %d", err, res, hidden)
	}
	f.grow(20)
	f.currentHook = func(r *api.LookupResponse) { r.Entries = []api.LookupEntry{f.proven(trusted)} }
	return f, c, ka, trusted, hidden
}

// redteam5Bundle splits and joins entry bundles (2-byte length prefixes).
func redteam5Split(b []byte) [][]byte {
	var es [][]byte
	for len(b) >= 2 {
		n := int(binary.BigEndian.Uint16(b))
		es = append(es, b[2:2+n])
		b = b[2+n:]
	}
	return es
}

func redteam5Join(es [][]byte) []byte {
	var b []byte
	for _, e := range es {
		b = append(binary.BigEndian.AppendUint16(b, uint16(len(e))), e...)
	}
	return b
}

// TestRedteam5TailHidesNothing: a front hides alice's UNTRUSTED statement
// (the current one) from a current lookup and lies about the tail's
// bundle that holds it in every way it can: the bundle of another index,
// the bundle with the statement replaced, dropped, moved past the
// checkpoint's size or re-encoded, a bundle that never arrives (the
// lookup's deadline), an error, the log growing during the read. Each is
// an error and no result, never alice's TRUSTED statement as current.
func TestRedteam5TailHidesNothing(t *testing.T) {
	type lie func(f *fakeOps, hiddenBundle uint64) func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error)
	honest := func(f *fakeOps, hb uint64) func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
		return nil
	}
	rewrite := func(fn func(es [][]byte, at int) [][]byte) lie {
		return func(f *fakeOps, hb uint64) func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
			return func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
				if index != hb || err != nil {
					return b, err
				}
				es := redteam5Split(b)
				for i, e := range es {
					if notarize.IsMapRoot(e) {
						continue
					}
					if fe := verifyLeaf(0, e); fe.Err == nil && fe.Record.Statement.Predicate.Status == notarize.StatusUntrusted {
						return redteam5Join(fn(es, i)), nil
					}
				}
				return b, err
			}
		}
	}
	for _, tc := range []struct {
		name string
		lie  lie
	}{
		{"no lie about the bundles (the answer alone)", honest},
		{"the statement replaced by a filler", rewrite(func(es [][]byte, at int) [][]byte {
			es[at] = []byte("leaf filler")
			return es
		})},
		{"the statement dropped", rewrite(func(es [][]byte, at int) [][]byte { return append(es[:at], es[at+1:]...) })},
		{"the statement moved to the bundle's end", rewrite(func(es [][]byte, at int) [][]byte {
			h := es[at]
			es = append(es[:at:at], es[at+1:]...)
			return append(es, h)
		})},
		{"the statement re-spelled (a space)", rewrite(func(es [][]byte, at int) [][]byte {
			es[at] = bytes.Replace(es[at], []byte(`"payload":"`), []byte(`"payload": "`), 1)
			return es
		})},
		{"the statement as a map root", rewrite(func(es [][]byte, at int) [][]byte {
			es[at] = append([]byte(notarize.MapRootHeader), es[at]...)
			return es
		})},
		{"the bundle of the next index", func(f *fakeOps, hb uint64) func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
			return func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
				if index == hb {
					return f.entryBundle(hb+1, 0)
				}
				return b, err
			}
		}},
		{"the bundle of the previous index", func(f *fakeOps, hb uint64) func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
			return func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
				if index == hb {
					return f.entryBundle(hb-1, 0)
				}
				return b, err
			}
		}},
		{"the bundle truncated before the statement", rewrite(func(es [][]byte, at int) [][]byte { return es[:at] })},
		{"the bundle never arrives", func(f *fakeOps, hb uint64) func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
			return func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
				if index == hb {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				return b, err
			}
		}},
		{"the bundle is an error", func(f *fakeOps, hb uint64) func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
			return func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
				if index == hb {
					return nil, errors.New("front: bundle gone")
				}
				return b, err
			}
		}},
		{"the bundle empty", func(f *fakeOps, hb uint64) func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
			return func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
				if index == hb {
					return []byte{}, nil
				}
				return b, err
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c, ka, trusted, hidden := redteam5Hidden(t)
			hb := hidden / layout.EntryBundleWidth
			f.bundleHook = tc.lie(f, hb)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			res, err := c.Current(ctx, digestA, ka)
			if err == nil || res != nil {
				t.Fatalf("BYPASS: the front hid entry %d and the lookup answered %+v (alice's TRUSTED entry %d current)", hidden, res, trusted)
			}
		})
	}
}

// TestRedteam5TailLogGrowsDuringRead: the log grows while the tail is read
// (the last bundle, partial under the answer's checkpoint, is then served
// full, with entries beyond the checkpoint): an honest answer still
// verifies, and the hidden statement is still caught; a statement beyond
// the checkpoint's size never counts for it.
func TestRedteam5TailLogGrowsDuringRead(t *testing.T) {
	f, c, ka, _, hidden := redteam5Hidden(t)
	var grown atomic.Bool
	bob := newEntrySigner(t)
	f.bundleHook = func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
		if grown.CompareAndSwap(false, true) {
			f.grow(300)
		}
		if p != 0 { // serve the full bundle once there is one
			if full, ferr := f.entryBundle(index, 0); ferr == nil {
				return full, nil
			}
		}
		return b, err
	}
	if res, err := c.Current(t.Context(), digestA, ka); err == nil || res != nil {
		t.Fatalf("BYPASS: the hidden entry %d was not caught while the log grew: %+v", hidden, res)
	}
	// Honest again, and a statement of alice's appended past the checkpoint
	// the answer names (it must not count for that checkpoint).
	f.currentHook = nil
	grown.Store(false)
	f.bundleHook = func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
		if grown.CompareAndSwap(false, true) {
			appendStatements(t, f, bob, digestA, notarize.StatusUntrusted, t0.Add(2*time.Hour), 1)
			f.grow(300)
		}
		if p != 0 {
			if full, ferr := f.entryBundle(index, 0); ferr == nil {
				return full, nil
			}
		}
		return b, err
	}
	res, err := c.Current(t.Context(), digestA, ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != hidden {
		t.Fatalf("an honest answer while the log grew: %v %+v, want entry %d", err, res, hidden)
	}
}

// TestRedteam5MayConcernAlignments: the subject's hex sits at every byte
// alignment of the payload's base64 groups (subject names of 0 to 8
// bytes move it), and at each one a signed canonical statement about the
// digest is found. (A digest sharing all but its last hex digits may be
// a false positive, as whole base64 groups are compared: harmless, the
// strict path decides.)
func TestRedteam5MayConcernAlignments(t *testing.T) {
	s := notarizetest.NewSigner(t)
	d := notarize.DigestOf([]byte("redteam5 alignments"))
	hex := d.Hex()
	last := "0"
	if hex[63] == '0' {
		last = "1"
	}
	near := notarize.Digest("sha256:" + hex[:63] + last)
	for n := range 9 {
		st := notarize.NewStatement(d, strings.Repeat("x", n), notarize.Predicate{Status: notarize.StatusUntrusted, Timestamp: t0})
		e, err := notarize.Sign(t.Context(), s, st)
		if err != nil {
			t.Fatal(err)
		}
		leaf := marshal(t, e)
		if fe := verifyLeaf(0, leaf); fe.Err != nil || fe.Record.Statement.Digest() != d {
			t.Fatalf("name of %d bytes: the leaf does not verify: %v", n, fe.Err)
		}
		if !mayConcern(leaf, d) {
			t.Errorf("BYPASS: name of %d bytes: mayConcern skips a signed statement about %s", n, d)
		}
		if mayConcern(leaf, near) && n == 0 {
			t.Logf("name of %d bytes: a digest differing in its last hex digit may concern it too (a false positive: the strict path decides)", n)
		}
	}
}
