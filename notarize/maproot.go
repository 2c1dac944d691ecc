package notarize

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// MapRootHeader is the first line of a map-root entry: the second kind of
// log entry, beside statements (Entry). The ledger appends one every so
// often to commit its verifiable index (package vindex) to the log, so that
// the log's checkpoints, and the witnesses cosigning them, commit to the
// index too. No statement entry starts with it (they are JSON objects).
const MapRootHeader = "docker-notarize map root v1\n"

// maxMapRootTime bounds a map root's time line (Unix seconds): the year
// 9999, so that every accepted time formats and compares as a time.Time.
const maxMapRootTime = 253402300799

// ErrBadMapRoot is returned (wrapped) for a map-root entry that does not
// parse or is not signed by the ledger's key.
var ErrBadMapRoot = errors.New("bad map root")

// MapRoot is a map-root entry: the root hash of the ledger's verifiable
// index after the log's first Size entries, signed by the ledger's
// checkpoint key as a C2SP signed note whose text is
//
//	docker-notarize map root v1
//	<origin>
//	<size, decimal>
//	<root hash, standard base64>
//	<time, decimal Unix seconds>
//
// The time line is optional: roots committed before it was added have
// three lines, and parse with a zero Time.
type MapRoot struct {
	Origin string
	Size   uint64
	Root   [32]byte
	// Time is when the ledger read Size, truncated to the second: every
	// entry the ledger had indexed by then is among the first Size. Zero
	// for a root without the line. A client may take a root whose Time is
	// recent as proof that its lookup is complete up to Time without
	// reading the log after it (ledgerclient: the anchored check); a
	// ledger signing a later Time than it read Size at would be claiming
	// to cover entries its map does not.
	Time time.Time
}

// RecentAt reports whether r has a time within maxAge of now, either way:
// the rule by which a ledger leaves an answer's tail out and a client takes
// r alone as the proof of completeness (the anchored check; each with its
// own bound). A root without a time is never recent.
func (r *MapRoot) RecentAt(now time.Time, maxAge time.Duration) bool {
	if r == nil || r.Time.IsZero() {
		return false
	}
	age := now.Sub(r.Time)
	return age <= maxAge && age >= -maxAge // not -age: Sub saturates, and -minDuration overflows
}

// IsMapRoot reports whether the log entry b is a map-root entry (by its
// first line; ParseMapRoot checks the rest).
func IsMapRoot(b []byte) bool { return bytes.HasPrefix(b, []byte(MapRootHeader)) }

// Text returns the note text of r.
func (r *MapRoot) Text() string {
	t := fmt.Sprintf("%s%s\n%d\n%s\n", MapRootHeader, r.Origin, r.Size, base64.StdEncoding.EncodeToString(r.Root[:]))
	if !r.Time.IsZero() {
		t += strconv.FormatInt(r.Time.Unix(), 10) + "\n"
	}
	return t
}

// Sign returns the map-root entry of r signed by signer, whose name must be
// r.Origin.
func (r *MapRoot) Sign(signer note.Signer) ([]byte, error) {
	if signer.Name() != r.Origin {
		return nil, fmt.Errorf("sign map root: signer %q for origin %q", signer.Name(), r.Origin)
	}
	b, err := note.Sign(&note.Note{Text: r.Text()}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign map root: %w", err)
	}
	return b, nil
}

// ParseMapRoot checks that b is a map-root entry signed by v, for v's
// origin (its name), in its one encoding, and returns what it says.
func ParseMapRoot(b []byte, v note.Verifier) (*MapRoot, error) {
	if len(b) > MaxEntrySize || !IsMapRoot(b) {
		return nil, fmt.Errorf("%w: not a map-root entry", ErrBadMapRoot)
	}
	n, err := note.Open(b, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMapRoot, err)
	}
	if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 0 {
		return nil, fmt.Errorf("%w: want exactly the ledger's signature", ErrBadMapRoot)
	}
	lines := strings.Split(strings.TrimSuffix(strings.TrimPrefix(n.Text, MapRootHeader), "\n"), "\n")
	if len(lines) != 3 && len(lines) != 4 {
		return nil, fmt.Errorf("%w: want origin, size and root lines, and a time line", ErrBadMapRoot)
	}
	r := &MapRoot{Origin: lines[0]}
	if r.Origin != v.Name() {
		return nil, fmt.Errorf("%w: origin %q, want %q", ErrBadMapRoot, truncate(r.Origin, 80), v.Name())
	}
	if r.Size, err = strconv.ParseUint(lines[1], 10, 64); err != nil || strconv.FormatUint(r.Size, 10) != lines[1] {
		return nil, fmt.Errorf("%w: size %q", ErrBadMapRoot, truncate(lines[1], 40))
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != 32 || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return nil, fmt.Errorf("%w: root %q", ErrBadMapRoot, truncate(lines[2], 60))
	}
	copy(r.Root[:], root)
	if len(lines) == 4 {
		sec, err := strconv.ParseInt(lines[3], 10, 64)
		if err != nil || sec <= 0 || sec > maxMapRootTime || strconv.FormatInt(sec, 10) != lines[3] {
			return nil, fmt.Errorf("%w: time %q", ErrBadMapRoot, truncate(lines[3], 40))
		}
		r.Time = time.Unix(sec, 0).UTC()
	}
	if n.Text != r.Text() {
		return nil, fmt.Errorf("%w: not in its one encoding", ErrBadMapRoot)
	}
	return r, nil
}
