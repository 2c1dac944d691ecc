package ledgerclient

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestRedteam7TailKeyPreCheckHidesNothing attacks 884b52d: the tail skips
// an entry that holds none of the asked keys' IDs before parsing it. If an
// entry that the strict path (no pre-check) counts as a statement by an
// asked key about the digest were skipped by the pre-check, a front could
// hide a revocation in the tail. For entries of every key kind, and for
// re-spellings of each (key ID in upper case, JSON-escaped, moved, only
// inside the base64 payload, a second keyid member), the tail's answer with
// the pre-check must be the answer without it.
func TestRedteam7TailKeyPreCheckHidesNothing(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	signers := map[string]signature.SignerVerifier{}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for name, priv := range map[string]crypto.Signer{"p256": p256, "p384": p384, "ed25519": edk, "rsa2048": rk} {
		sv, err := signature.LoadSignerVerifier(priv, notarize.HashFor(priv.Public()))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		signers[name] = sv
	}
	for name, s := range signers {
		kid := notarizetest.KeyID(t, s)
		other := notarizetest.KeyID(t, newEntrySigner(t))
		for _, st := range []notarize.Status{notarize.StatusUntrusted, notarize.StatusTrusted} {
			leaf := marshal(t, signEntry(t, s, digestA, st, t0))
			if !bytes.Contains(leaf, []byte(`"keyid":"`+kid+`"`)) {
				t.Fatalf("%s: the canonical entry does not spell its key ID verbatim: %s", name, leaf)
			}
			variants := map[string][]byte{
				"canonical":      leaf,
				"upper-keyid":    bytes.Replace(leaf, []byte(kid), []byte(strings.ToUpper(kid)), 1),
				"escaped-keyid":  bytes.Replace(leaf, []byte(kid), []byte(fmt.Sprintf(`\u%04x`, kid[0])+kid[1:]), 1),
				"no-keyid":       bytes.Replace(leaf, []byte(`"keyid":"`+kid+`",`), nil, 1),
				"spaced":         bytes.Replace(leaf, []byte(`"keyid":`), []byte(`"keyid": `), 1),
				"two-keyids":     bytes.Replace(leaf, []byte(`"keyid":"`+kid+`"`), []byte(`"keyid":"`+other+`","keyid":"`+kid+`"`), 1),
				"two-keyids-rev": bytes.Replace(leaf, []byte(`"keyid":"`+kid+`"`), []byte(`"keyid":"`+kid+`","keyid":"`+other+`"`), 1),
			}
			for vname, v := range variants {
				for _, asked := range [][]string{{kid}, {other, kid}, {strings.ToUpper(kid)}, {other}} {
					set := map[string]bool{}
					for _, k := range asked {
						set[k] = true
					}
					ask := func(k string) bool { return set[k] }
					ids := [][]byte{}
					for _, k := range asked {
						ids = append(ids, []byte(k))
					}
					strict, okStrict := tailStatement(7, v, tailAsk{d: digestA, asked: ask})
					pre, okPre := tailStatement(7, v, tailAsk{d: digestA, asked: ask, ids: ids})
					if okStrict != okPre || strict != pre {
						t.Errorf("BYPASS: %s %s %s asked %d keys: the key-ID pre-check gives (%v, %v), the strict path (%v, %v): a statement of the tail is hidden or invented",
							name, st, vname, len(asked), pre, okPre, strict, okStrict)
					}
					if vname == "canonical" && set[kid] && !okPre {
						t.Errorf("BYPASS: %s %s: the asked key's own canonical statement about the digest is not counted by the tail", name, st)
					}
				}
			}
		}
	}
}
