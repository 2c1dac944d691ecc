package replica

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// ErrWrongMapRoot is returned (wrapped, in a *WrongMapRootError) once the
// ledger committed a map root (notarize.MapRoot) that is not the root of
// the verifiable index this replica recomputed from the same entries: the
// ledger's proofs of complete lookups cannot be trusted, and the replica
// refuses every lookup from then on (fail closed), keeping the root entry
// as evidence.
var ErrWrongMapRoot = errors.New("SECURITY ERROR: the ledger committed a wrong verifiable-index root")

// WrongMapRootError is signed evidence that the ledger misbehaved: Entry is
// a map-root entry signed by the ledger's key and logged at Index (proven
// included in a checkpoint signed by the same key, Checkpoint), whose root
// differs from Want, the root of the map of the log's first Size entries.
type WrongMapRootError struct {
	Index      uint64
	Size       uint64
	Entry      []byte
	Want       vindex.Hash
	Got        [32]byte
	Checkpoint []byte
}

// Error names the entry and both roots.
func (e *WrongMapRootError) Error() string {
	return fmt.Sprintf("%v: entry %d says the map of the first %d entries has root %s; recomputed from those entries it is %s",
		ErrWrongMapRoot, e.Index, e.Size, base64.StdEncoding.EncodeToString(e.Got[:]), base64.StdEncoding.EncodeToString(e.Want[:]))
}

// Unwrap returns ErrWrongMapRoot.
func (e *WrongMapRootError) Unwrap() error { return ErrWrongMapRoot }

// MapAudit recomputes the ledger's verifiable index (package vindex) from
// the entries the replica follows and checks every map root the ledger
// commits in its log against it. It keeps the map in a bbolt file of its
// own: the tree's nodes, the statements after the last checked root
// (pending until the next root says which of them it covers), how many log
// entries it has observed, and the evidence of any wrong root. A Replica
// given one in its Config closes it.
type MapAudit struct {
	db       *bolt.DB
	verifier note.Verifier

	mu  sync.Mutex
	bad *WrongMapRootError // sticky once found
	n   uint64             // roots checked, since open
}

// bbolt layout of the audit.
var (
	auditNodes    = []byte("nodes")
	auditPending  = []byte("pending")  // index → digest (32) | key ID (32) | secs (8) | nanos (4) | leaf hash (32)
	auditMeta     = []byte("meta")     // observed, position
	auditEvidence = []byte("evidence") // index → JSON of WrongMapRootError
	keyObserved   = []byte("observed")
	keyPosition   = []byte("position")
)

// OpenMapAudit opens (creating if needed) the audit file at path for the
// ledger whose checkpoint verifier key is verifierKey (map roots are signed
// by it).
func OpenMapAudit(path, verifierKey string) (*MapAudit, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return nil, fmt.Errorf("map audit: verifier key: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("map audit: open %s: %w", path, err)
	}
	a := &MapAudit{db: db, verifier: v}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{auditNodes, auditPending, auditMeta, auditEvidence} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		_, raw := tx.Bucket(auditEvidence).Cursor().First()
		if raw != nil {
			a.bad = &WrongMapRootError{}
			return decodeEvidence(raw, a.bad)
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("map audit: open %s: %w", path, err), db.Close())
	}
	return a, nil
}

// Close closes the file.
func (a *MapAudit) Close() error { return a.db.Close() }

// Err returns the evidence of a wrong root, if one was found (ever: it is
// kept in the file).
func (a *MapAudit) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bad == nil {
		return nil
	}
	return a.bad
}

// Evidence returns the wrong root found, or nil.
func (a *MapAudit) Evidence() *WrongMapRootError {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bad
}

// RootsChecked returns how many map roots were checked since Open.
func (a *MapAudit) RootsChecked() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// Observe folds a verified batch into the audit, in log order (entries it
// observed already are skipped, so a batch may be observed again), and
// checks each map-root entry in it. A wrong root is a *WrongMapRootError,
// kept; every later call returns it too.
func (a *MapAudit) Observe(b *ledgerclient.FollowBatch) error {
	if err := a.Err(); err != nil {
		return err
	}
	var found *WrongMapRootError
	checked := uint64(0)
	err := a.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(auditMeta)
		observed := getU64(meta, keyObserved)
		if b.From > observed {
			return fmt.Errorf("map audit: batch from %d, but only %d entries observed", b.From, observed)
		}
		for _, e := range b.Entries {
			if e.Index < observed {
				continue
			}
			switch {
			case notarize.IsMapRoot(e.Leaf):
				ok, wrong, err := a.checkRoot(tx, e, b.Checkpoint.Raw)
				if err != nil {
					return err
				}
				if ok {
					checked++
				}
				if wrong != nil {
					found = wrong
					return a.keepEvidence(tx, wrong)
				}
			case e.Err == nil:
				if err := addPending(tx.Bucket(auditPending), e); err != nil {
					return err
				}
			}
			observed = e.Index + 1
		}
		return meta.Put(keyObserved, u64(observed))
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n += checked
	if found != nil {
		a.bad = found
		return found
	}
	return nil
}

// addPending keeps a verified statement until a root covers it.
func addPending(pb *bolt.Bucket, e ledgerclient.FollowedEntry) error {
	dh, err := hex.DecodeString(e.Record.Statement.Digest().Hex())
	if err != nil || len(dh) != 32 {
		return fmt.Errorf("map audit: entry %d: bad digest", e.Index)
	}
	kid, err := hex.DecodeString(e.Record.KeyID)
	if err != nil || len(kid) != 32 {
		return fmt.Errorf("map audit: entry %d: bad key ID", e.Index)
	}
	ts := e.Record.Statement.Predicate.Timestamp
	lh := vindex.EntryLeafHash(e.Leaf)
	v := make([]byte, 0, 32+32+12+32)
	v = append(v, dh...)
	v = append(v, kid...)
	v = binary.BigEndian.AppendUint64(v, uint64(ts.Unix()))
	v = binary.BigEndian.AppendUint32(v, uint32(ts.Nanosecond()))
	v = append(v, lh[:]...)
	return pb.Put(u64(e.Index), v)
}

// checkRoot checks the map-root entry e: ok reports that it was a root
// signed by the ledger and checked; wrong is set when its root is wrong.
// It folds the pending statements the root covers into the map.
func (a *MapAudit) checkRoot(tx *bolt.Tx, e ledgerclient.FollowedEntry, cp []byte) (ok bool, wrong *WrongMapRootError, err error) {
	mr, perr := notarize.ParseMapRoot(e.Leaf, a.verifier)
	if perr != nil {
		// Not signed by the ledger's key: it proves nothing, and no
		// client believes it either (ParseMapRoot there too).
		return false, nil, nil
	}
	meta := tx.Bucket(auditMeta)
	pos := getU64(meta, keyPosition)
	nodes := auditNodeStore{tx.Bucket(auditNodes)}
	evidence := func(want vindex.Hash) *WrongMapRootError {
		return &WrongMapRootError{Index: e.Index, Size: mr.Size, Entry: e.Leaf, Want: want, Got: mr.Root, Checkpoint: cp}
	}
	if mr.Size > e.Index || mr.Size < pos {
		// A root of entries after itself, or of fewer entries than a root
		// already checked: no honest ledger commits one.
		root, err := vindex.Root(nodes)
		if err != nil {
			return false, nil, err
		}
		return true, evidence(root), nil
	}
	batch := vindex.NewBatch(nodes)
	pb := tx.Bucket(auditPending)
	var done [][]byte
	c := pb.Cursor()
	for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) < mr.Size; k, v = c.Next() {
		if len(v) != 108 {
			return false, nil, fmt.Errorf("map audit: pending record of %d bytes", len(v))
		}
		d := notarize.Digest("sha256:" + hex.EncodeToString(v[:32]))
		ts := time.Unix(int64(binary.BigEndian.Uint64(v[64:])), int64(binary.BigEndian.Uint32(v[72:]))).UTC()
		if err := batch.AddStatement(binary.BigEndian.Uint64(k), d, hex.EncodeToString(v[32:64]), ts, vindex.Hash(v[76:108])); err != nil {
			return false, nil, err
		}
		done = append(done, k)
	}
	root, writes, err := vindex.Apply(nodes, batch.Updates())
	if err != nil {
		return false, nil, err
	}
	if root != mr.Root {
		return true, evidence(root), nil
	}
	for _, w := range writes {
		if err := nodes.write(w); err != nil {
			return false, nil, err
		}
	}
	for _, k := range done {
		if err := pb.Delete(k); err != nil {
			return false, nil, err
		}
	}
	return true, nil, meta.Put(keyPosition, u64(mr.Size))
}

// keepEvidence stores w in the file.
func (a *MapAudit) keepEvidence(tx *bolt.Tx, w *WrongMapRootError) error {
	return tx.Bucket(auditEvidence).Put(u64(w.Index), encodeEvidence(w))
}

// auditNodeStore is the map's nodes in the audit file.
type auditNodeStore struct{ b *bolt.Bucket }

// ReadNode implements vindex.NodeReader.
func (s auditNodeStore) ReadNode(id vindex.NodeID) (vindex.Node, bool, error) {
	v := s.b.Get(id.Bytes())
	if v == nil {
		return vindex.Node{}, false, nil
	}
	n, err := vindex.UnmarshalNode(v)
	return n, err == nil, err
}

func (s auditNodeStore) write(w vindex.NodeWrite) error {
	if w.Delete {
		return s.b.Delete(w.ID.Bytes())
	}
	return s.b.Put(w.ID.Bytes(), w.Node.Marshal())
}

// encodeEvidence is index | size | want | got | entry length | entry | checkpoint.
func encodeEvidence(w *WrongMapRootError) []byte {
	b := u64(w.Index)
	b = append(b, u64(w.Size)...)
	b = append(b, w.Want[:]...)
	b = append(b, w.Got[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(w.Entry)))
	b = append(b, w.Entry...)
	return append(b, w.Checkpoint...)
}

func decodeEvidence(b []byte, w *WrongMapRootError) error {
	if len(b) < 8+8+32+32+4 {
		return errors.New("map audit: corrupt evidence")
	}
	w.Index, w.Size = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	copy(w.Want[:], b[16:48])
	copy(w.Got[:], b[48:80])
	n := int(binary.BigEndian.Uint32(b[80:]))
	if len(b) < 84+n {
		return errors.New("map audit: corrupt evidence")
	}
	w.Entry = append([]byte(nil), b[84:84+n]...)
	w.Checkpoint = append([]byte(nil), b[84+n:]...)
	return nil
}
