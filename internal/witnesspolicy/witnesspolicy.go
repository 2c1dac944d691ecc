// Package witnesspolicy checks what Tessera's witness policy parser
// (tessera.NewWitnessGroupFromPolicy) leaves open about a policy file: the
// line of each witness key, and the refusal of one witness counted twice
// (one key named twice, or reached twice within a group). The ledger (its own
// publishing quorum) and the ledger client (the quorum it believes) read a
// policy file alike through it.
package witnesspolicy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"filippo.io/edwards25519"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"
)

// Policy is a witness policy file as the ledger and its clients read it.
type Policy struct {
	Group tessera.WitnessGroup // the quorum, as Tessera's parser reads it
	Lines map[KeyID]Line       // the line of each witness key
	Logs  []string             // the keys of its "log" lines (LogKeys)
}

// Parse reads a policy file as the ledger and its clients both do:
// Tessera's parser (tessera.NewWitnessGroupFromPolicy) for the quorum, then
// Lines, Groups and LogKeys for what that parser leaves open.
func Parse(b []byte) (Policy, error) {
	g, err := tessera.NewWitnessGroupFromPolicy(b)
	if err != nil {
		return Policy{}, fmt.Errorf("witness policy: %w", err)
	}
	lines, err := Lines(b)
	if err != nil {
		return Policy{}, err
	}
	if err := Groups(g); err != nil {
		return Policy{}, err
	}
	logs, err := LogKeys(b)
	if err != nil {
		return Policy{}, err
	}
	return Policy{Group: g, Lines: lines, Logs: logs}, nil
}

// KeyID is how a signed note names a key: its key name and key hash.
type KeyID struct {
	Name string
	Hash uint32
}

// IDOf returns v's KeyID.
func IDOf(v note.Verifier) KeyID { return KeyID{v.Name(), v.KeyHash()} }

// Line is a witness line of a policy file: the witness's NAME there and its
// verifier key.
type Line struct {
	Label, VKey string
}

// Lines maps each witness key of a policy file, as Tessera's parser reads
// it (the same comments, fields and cosignature/v1 verifier), to its line,
// and refuses one key twice: under two policy names, under two key names
// (an Ed25519 cosignature/v1 signature does not cover the key's name, so
// one cosignature line can be shown under either), or typed as a note key
// (0x01) and as a cosignature/v1 key (0x04), which Tessera takes for the
// same. A key is one witness however it is named. It also refuses what
// Tessera's parser lets through: a key hash that is not the key's (a
// mistyped or altered line), and an Ed25519 key of small order, under
// which anyone can forge the witness's cosignatures.
func Lines(b []byte) (map[KeyID]Line, error) {
	lines := map[KeyID]Line{}
	byKey := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "witness" {
			continue
		}
		v, err := fnote.NewVerifierForCosignatureV1(f[2])
		if err == nil {
			err = checkKey(f[2])
		}
		if err != nil {
			return nil, fmt.Errorf("witness policy: witness %q: %w", f[1], err)
		}
		prev, ok := lines[IDOf(v)]
		if !ok {
			prev.Label, ok = byKey[publicKey(f[2])]
		}
		if ok {
			return nil, fmt.Errorf("witness policy: witnesses %q and %q have the same key, so one witness would count twice", prev.Label, f[1])
		}
		lines[IDOf(v)] = Line{Label: f[1], VKey: f[2]}
		byKey[publicKey(f[2])] = f[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("witness policy: %w", err)
	}
	return lines, nil
}

// LogKeys returns the verifier keys of a policy file's "log" lines ("log
// VKEY [URL]", which Tessera's parser skips): the keys of the logs the
// policy is for, each once, in the order given. A client holding the
// policy takes no other key for its ledger. A log key must be a signed-note
// verifier key (name+hash+base64) whose hash is its key's and, for
// Ed25519, not of small order: a line the client cannot read is an error,
// never ignored.
func LogKeys(b []byte) ([]string, error) {
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "log" {
			continue
		}
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("witness policy: log line %q: want log VKEY [URL]", clip(strings.TrimSpace(line), 200))
		}
		_, err := note.NewVerifier(f[1])
		if err == nil {
			err = checkKey(f[1])
		}
		if err != nil {
			return nil, fmt.Errorf("witness policy: log key %q: %w (want the ledger's verifier key, as in its ledger.pub)", clip(f[1], 200), err)
		}
		if !slices.Contains(keys, f[1]) {
			keys = append(keys, f[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("witness policy: %w", err)
	}
	return keys, nil
}

// clip returns s cut to n bytes, for errors.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// MaxNodes bounds the witnesses and groups a policy's quorum reaches,
// counted along every path, so that checking a checkpoint against it stays
// cheap.
const MaxNodes = 1000

// Groups checks the quorum g that Tessera parsed from a policy file for
// what would let one witness count twice, or none count at all: a group
// two of whose members reach the same witness key (a witness or a group
// named twice, a witness beside a group that holds it, two groups sharing
// a witness: Tessera counts each member once it is satisfied, so one
// cosignature would satisfy both), and a group of threshold 0 below the
// quorum (satisfied by no witness). It walks at most MaxNodes witnesses and
// groups. Keys are told apart by KeyID: Lines refuses one key under two.
func Groups(g tessera.WitnessGroup) error {
	nodes := 0
	var reach func(c any, quorum bool) (map[KeyID]bool, error)
	reach = func(c any, quorum bool) (map[KeyID]bool, error) {
		if nodes++; nodes > MaxNodes {
			return nil, fmt.Errorf("witness policy: the quorum reaches more than %d witnesses and groups", MaxNodes)
		}
		switch c := c.(type) {
		case tessera.Witness:
			return map[KeyID]bool{IDOf(c.Key): true}, nil
		case tessera.WitnessGroup:
			if c.N <= 0 && !quorum {
				return nil, errors.New("witness policy: a group of threshold 0 is satisfied by no witness at all")
			}
			all := map[KeyID]bool{}
			for _, m := range c.Components {
				keys, err := reach(m, false)
				if err != nil {
					return nil, err
				}
				for k := range keys {
					if all[k] {
						return nil, fmt.Errorf("witness policy: a group reaches witness %q through two of its members, so one cosignature would count twice", k.Name)
					}
					all[k] = true
				}
			}
			return all, nil
		default:
			return nil, fmt.Errorf("witness policy: unknown component %T", c)
		}
	}
	_, err := reach(g, true)
	return err
}

// checkKey checks what fnote.NewVerifierForCosignatureV1 leaves open
// about vkey, a verifier key it accepted: that the key hash it states is
// the key's (the signed-note rule, SHA-256 of name, newline, algorithm
// byte and key), as sumdb's note.NewVerifier checks for a ledger's key;
// and that an Ed25519 key is a point of the curve that is not of small
// order. Ed25519 verification does not refuse such a key, and one
// signature, the identity point and a zero scalar, verifies any message
// under it.
func checkKey(vkey string) error {
	name, rest, _ := strings.Cut(vkey, "+")
	hash16, b64, _ := strings.Cut(rest, "+")
	k, err := base64.StdEncoding.DecodeString(b64)
	stated, herr := strconv.ParseUint(hash16, 16, 32)
	if err != nil || herr != nil || len(k) == 0 {
		return errors.New("malformed verifier key")
	}
	sum := sha256.Sum256(append([]byte(name+"\n"), k...))
	if want := binary.BigEndian.Uint32(sum[:]); uint32(stated) != want {
		return fmt.Errorf("verifier key hash %s is not its key's (%08x): the line was mistyped or altered", hash16, want)
	}
	if k[0] != algEd25519 && k[0] != algEd25519CosignatureV1 {
		return nil
	}
	p, err := new(edwards25519.Point).SetBytes(k[1:])
	if err != nil {
		return errors.New("the Ed25519 key is not a point of the curve")
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return errors.New("the Ed25519 key is of small order: anyone could forge its cosignatures")
	}
	return nil
}

// publicKey returns the public key of vkey, a verifier key that
// fnote.NewVerifierForCosignatureV1 accepted, without its key name and
// hash: its algorithm byte, an Ed25519 note key's (0x01) read as the
// cosignature/v1 key (0x04) it stands for there, then the key.
func publicKey(vkey string) string {
	_, rest, _ := strings.Cut(vkey, "+")
	_, b64, _ := strings.Cut(rest, "+")
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(k) == 0 {
		return vkey // not reached: the verifier was made from it
	}
	if k[0] == algEd25519 {
		k[0] = algEd25519CosignatureV1
	}
	return string(k)
}

// The key types of C2SP signed-note verifier keys that a witness key may
// have (fnote.NewVerifierForCosignatureV1).
const (
	algEd25519              = 0x01
	algEd25519CosignatureV1 = 0x04
)
