package ledgerclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/testonly"
	tapi "github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

const testOrigin = "example.test/notarize-ledger"

// fakeLog is an in-memory transparency log that serves genuine checkpoints,
// tiles and proofs, so tests can make it lie in precise ways.
type fakeLog struct {
	origin string
	signer note.Signer
	vkey   string
	leaves [][]byte
	tree   *testonly.Tree
	nodes  map[[2]uint64][]byte
}

// newNoteKey returns a signed-note signer and its verifier key for origin.
func newNoteKey(t testing.TB, origin string) (note.Signer, string) {
	t.Helper()
	return noteKeyFrom(t, rand.Reader, origin)
}

// noteKeyFrom is newNoteKey with the key drawn from r.
func noteKeyFrom(t testing.TB, r io.Reader, origin string) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(r, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func newFakeLog(s note.Signer, vkey string) *fakeLog {
	return &fakeLog{origin: s.Name(), signer: s, vkey: vkey, tree: testonly.New(hasher), nodes: map[[2]uint64][]byte{}}
}

func (l *fakeLog) size() uint64 { return uint64(len(l.leaves)) }

func (l *fakeLog) add(data ...[]byte) {
	for _, d := range data {
		l.leaves = append(l.leaves, d)
		l.tree.AppendData(d)
	}
}

// signNote signs a checkpoint body (origin, size, root) with s.
func signNote(t testing.TB, s note.Signer, origin string, size uint64, root []byte) []byte {
	t.Helper()
	body := log.Checkpoint{Origin: origin, Size: size, Hash: root}.Marshal()
	b, err := note.Sign(&note.Note{Text: string(body)}, s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkpointText is the note text of the checkpoint of the given size.
func (l *fakeLog) checkpointText(size uint64) []byte {
	return l.checkpointTextOf(size, l.tree.HashAt(size))
}

func (l *fakeLog) checkpointTextOf(size uint64, root []byte) []byte {
	return log.Checkpoint{Origin: l.origin, Size: size, Hash: root}.Marshal()
}

func (l *fakeLog) checkpointAt(t testing.TB, size uint64) []byte {
	return signNote(t, l.signer, l.origin, size, l.tree.HashAt(size))
}

// node returns the hash of the perfect subtree at (level, index).
func (l *fakeLog) node(level, index uint64) []byte {
	k := [2]uint64{level, index}
	if h, ok := l.nodes[k]; ok {
		return h
	}
	var h []byte
	if level == 0 {
		h = l.tree.LeafHash(index)
	} else {
		h = hasher.HashChildren(l.node(level-1, 2*index), l.node(level-1, 2*index+1))
	}
	l.nodes[k] = h
	return h
}

// tile serves a tlog-tiles hash tile of the log at its current size.
func (l *fakeLog) tile(level, index uint64, p uint8) ([]byte, error) {
	w := uint64(p)
	if w == 0 {
		w = layout.TileWidth
	}
	lvl := level * layout.TileHeight
	if (index*layout.TileWidth+w)<<lvl > l.size() {
		return nil, fmt.Errorf("tile %d/%d.p/%d: %w", level, index, p, os.ErrNotExist)
	}
	var t tapi.HashTile
	for i := range w {
		t.Nodes = append(t.Nodes, l.node(lvl, index*layout.TileWidth+i))
	}
	return t.MarshalText()
}

func (l *fakeLog) receipt(t testing.TB, index uint64, dup bool) api.Receipt {
	p, err := l.tree.InclusionProof(index, l.size())
	if err != nil {
		t.Fatal(err)
	}
	return api.Receipt{Index: index, Duplicate: dup, Entry: l.leaves[index], Checkpoint: string(l.checkpointAt(t, l.size())), InclusionProof: p}
}

// fakeOps serves a fakeLog through the ops interface, with hooks to lie.
type fakeOps struct {
	t   testing.TB
	mu  sync.Mutex
	log *fakeLog
	// info overrides the announced verifier key.
	infoKey string
	// serveSize, when set, serves checkpoints of that size (a rollback).
	serveSize *uint64
	// checkpointHook rewrites every checkpoint served.
	checkpointHook func([]byte) []byte
	tileHook       func(level, index uint64, p uint8, b []byte) []byte
	// tileGate, set before use, runs before each tile is served, outside
	// the fake's lock (it may block); its error is the answer.
	tileGate func(ctx context.Context, level, index uint64, p uint8) error
	// bundleHook, set before use, rewrites every entry bundle served (b,
	// err: the genuine answer), outside the fake's lock: it may block.
	bundleHook  func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error)
	receiptHook func(*api.Receipt)
	lookupHook  func(*api.LookupResponse)
	// pageHook rewrites every lookup page, knowing what was asked.
	pageHook func(lookupQuery, *api.LookupResponse)
	// currentHook rewrites every current-statement answer.
	currentHook func(*api.LookupResponse)
	// noCurrent answers the current endpoint with 404, as an older ledger.
	noCurrent bool
	// rawCurrent, when set, is the whole current-statement answer (for fuzzing).
	rawCurrent []byte
	// queries records the lookup pages asked for.
	queries      []lookupQuery
	lookupCalls  int
	currentCalls int
	// verified caches the verification of leaves by their bytes.
	verified  map[string]*notarize.Verified
	submitErr error
	// rawSubmit and rawLookup, when set, are the whole answers (for fuzzing).
	rawSubmit []byte
	rawLookup []byte
	infoCalls int
	tileCalls int
}

var _ ops = (*fakeOps)(nil)

func newFakeOps(t testing.TB, l *fakeLog) *fakeOps { return &fakeOps{t: t, log: l} }

func (f *fakeOps) setLog(l *fakeLog) { f.mu.Lock(); f.log = l; f.mu.Unlock() }

func (f *fakeOps) grow(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.log.add(fmt.Appendf(nil, "leaf %d", f.log.size()))
	}
}

func (f *fakeOps) cp() []byte {
	size := f.log.size()
	if f.serveSize != nil {
		size = *f.serveSize
	}
	b := f.log.checkpointAt(f.t, size)
	if f.checkpointHook != nil {
		b = f.checkpointHook(b)
	}
	return b
}

func (f *fakeOps) ReadCheckpoint(context.Context) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cp(), nil
}

func (f *fakeOps) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	if gate := f.tileGate; gate != nil {
		if err := gate(ctx, level, index, p); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tileCalls++
	b, err := f.log.tile(level, index, p)
	if err != nil && p > 0 {
		b, err = f.log.tile(level, index, 0)
	}
	if err == nil && f.tileHook != nil {
		b = f.tileHook(level, index, p, b)
	}
	return b, err
}

// ReadEntryBundle serves the log's genuine entry bundles (C2SP tlog-tiles:
// each entry as a 2-byte big-endian length and its bytes).
func (f *fakeOps) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	b, err := f.entryBundle(index, p)
	if hook := f.bundleHook; hook != nil {
		return hook(ctx, index, p, b, err)
	}
	return b, err
}

// entryBundle is bundle index of width p (0: full) of the log as it is.
func (f *fakeOps) entryBundle(index uint64, p uint8) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, n := uint64(layout.EntryBundleWidth), uint64(p)
	if n == 0 {
		n = w
	}
	if index*w+n > f.log.size() {
		return nil, os.ErrNotExist
	}
	var b []byte
	for _, l := range f.log.leaves[index*w : index*w+n] {
		b = append(binary.BigEndian.AppendUint16(b, uint16(len(l))), l...)
	}
	return b, nil
}

func (f *fakeOps) Info(context.Context) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.infoCalls++
	k := f.log.vkey
	if f.infoKey != "" {
		k = f.infoKey
	}
	return json.Marshal(api.Info{Origin: f.log.origin, VerifierKey: k, Size: f.log.size(), OpenWrites: true})
}

func (f *fakeOps) Submit(_ context.Context, entry []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.submitErr != nil {
		return nil, f.submitErr
	}
	if f.rawSubmit != nil {
		return f.rawSubmit, nil
	}
	for i, l := range f.log.leaves {
		if bytes.Equal(l, entry) {
			return f.finishReceipt(f.log.receipt(f.t, uint64(i), true))
		}
	}
	f.log.add(bytes.Clone(entry))
	return f.finishReceipt(f.log.receipt(f.t, f.log.size()-1, false))
}

func (f *fakeOps) finishReceipt(r api.Receipt) ([]byte, error) {
	if f.checkpointHook != nil {
		r.Checkpoint = string(f.checkpointHook([]byte(r.Checkpoint)))
	}
	if f.receiptHook != nil {
		f.receiptHook(&r)
	}
	return json.Marshal(r)
}

// matching returns the indexes of the entries of the served tree about d,
// by keyIDs when any are given, in log order, and the served checkpoint.
func (f *fakeOps) matching(d notarize.Digest, keyIDs []string) (string, []uint64) {
	size := f.log.size()
	if f.serveSize != nil {
		size = *f.serveSize
	}
	if f.verified == nil {
		f.verified = map[string]*notarize.Verified{}
	}
	var out []uint64
	for i, leaf := range f.log.leaves[:size] {
		v, ok := f.verified[string(leaf)]
		if !ok {
			if e, err := notarize.ParseEntry(leaf); err == nil {
				v, _ = e.VerifyLogged()
			}
			f.verified[string(leaf)] = v
		}
		if v == nil || v.Statement.Digest() != d || len(keyIDs) > 0 && !slices.Contains(keyIDs, v.KeyID) {
			continue
		}
		out = append(out, uint64(i))
	}
	return string(f.cp()), out
}

// proven returns entry i of the served tree with its inclusion proof.
func (f *fakeOps) proven(i uint64) api.LookupEntry {
	size := f.log.size()
	if f.serveSize != nil {
		size = *f.serveSize
	}
	p, err := f.log.tree.InclusionProof(i, size)
	if err != nil {
		f.t.Fatal(err)
	}
	return api.LookupEntry{Index: i, Entry: f.log.leaves[i], InclusionProof: p}
}

// Lookup serves one page as the ledger does: entries after q.after, at most
// q.limit (api.DefaultLookupLimit without one), Next set when more match.
func (f *fakeOps) Lookup(_ context.Context, d notarize.Digest, q lookupQuery) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookupCalls++
	f.queries = append(f.queries, q)
	if f.rawLookup != nil {
		return f.rawLookup, nil
	}
	cp, all := f.matching(d, q.keyIDs)
	resp := api.LookupResponse{Digest: d.String(), Checkpoint: cp, Entries: []api.LookupEntry{}}
	limit := q.limit
	if limit == 0 {
		limit = api.DefaultLookupLimit
	}
	for _, i := range all {
		if q.after != nil && i <= *q.after {
			continue
		}
		if len(resp.Entries) == limit {
			next := resp.Entries[len(resp.Entries)-1].Index
			resp.Next = &next
			break
		}
		resp.Entries = append(resp.Entries, f.proven(i))
	}
	if f.lookupHook != nil {
		f.lookupHook(&resp)
	}
	if f.pageHook != nil {
		f.pageHook(q, &resp)
	}
	return json.Marshal(resp)
}

// Current serves each asked key's current statement, or the 404 of a ledger
// without the endpoint when noCurrent is set.
func (f *fakeOps) Current(_ context.Context, d notarize.Digest, keyIDs []string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.currentCalls++
	if f.noCurrent {
		return nil, &APIError{StatusCode: http.StatusNotFound, Code: api.CodeNotFound, Message: "no such path"}
	}
	if f.rawCurrent != nil {
		return f.rawCurrent, nil
	}
	cp, all := f.matching(d, keyIDs)
	resp := api.LookupResponse{Digest: d.String(), Checkpoint: cp, Entries: []api.LookupEntry{}}
	var recs []notarize.Record
	for _, i := range all {
		v := f.verified[string(f.log.leaves[i])]
		recs = append(recs, notarize.Record{Index: i, KeyID: v.KeyID, Statement: v.Statement})
	}
	for _, r := range recs {
		if cur, _ := notarize.Current(recs, d, r.KeyID); cur.Index == r.Index {
			resp.Entries = append(resp.Entries, f.proven(r.Index))
		}
	}
	if f.currentHook != nil {
		f.currentHook(&resp)
	}
	return json.Marshal(resp)
}

// Entries for tests.

var (
	digestA = notarize.DigestOf([]byte("image a"))
	digestB = notarize.DigestOf([]byte("image b"))
)

// newEntrySigner and signEntry are notarizetest's helpers under the names
// this package's tests use.
func newEntrySigner(t testing.TB) signature.SignerVerifier { return notarizetest.NewSigner(t) }

func signEntry(t testing.TB, s signature.Signer, d notarize.Digest, st notarize.Status, at time.Time) *notarize.Entry {
	return notarizetest.Entry(t, s, d, st, at)
}

func marshal(t testing.TB, e *notarize.Entry) []byte {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testClient returns a client of the fake ledger with its state in home.
func testClient(t testing.TB, f *fakeOps, home, key string) *Client {
	t.Helper()
	c, err := newTestClient(t, f, home, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newTestClient(t testing.TB, f *fakeOps, home, key string) (*Client, error) {
	t.Helper()
	cfg := Config{URL: "https://ledger.test", Home: home, VerifierKey: key}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return newClient(t.Context(), cfg.withDefaults(), "https://ledger.test", f)
}

func stateBytes(t testing.TB, home, origin string) []byte {
	t.Helper()
	// The state is kept per (origin, key): find the one of origin.
	states, err := newStore(home).states()
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, st := range states {
		if keyOrigin(st.vkey) != origin || !st.hasCheckpoint {
			continue
		}
		if b != nil {
			t.Fatalf("more than one state of %q", origin)
		}
		if b, err = os.ReadFile(newStore(home).checkpointPath(st.vkey)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}
