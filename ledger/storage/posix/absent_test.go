package posix

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
)

func TestAbsentSetHasNoFalseNegatives(t *testing.T) {
	s := newAbsentSet(0) // absentMinKeys: 200,000 keys make it grow twice
	s.setReady()
	key := func(p string, i int) []byte { return h(fmt.Sprint(p, i)) }
	const n = 200_000
	for i := range n {
		s.add(key("in", i))
	}
	if parts, _ := s.size(); parts < 3 {
		t.Fatalf("%d parts after %d keys in a set sized for %d: it did not grow", parts, n, absentMinKeys)
	}
	for i := range n {
		if s.absent(key("in", i)) {
			t.Fatalf("key %d was added and is said to be absent", i)
		}
	}
	fp := 0
	for i := range n {
		if !s.absent(key("out", i)) {
			fp++
		}
	}
	// Three parts at 1 % each: at most ~3 % of absent keys are not answered.
	if rate := float64(fp) / n; rate > 0.04 {
		t.Fatalf("false-positive rate %.3f, want at most 0.04", rate)
	}
}

func TestAbsentSetAnswersOnlyWhenReady(t *testing.T) {
	s := newAbsentSet(0)
	if s.absent(h("never added")) {
		t.Fatal("a set not ready said a key is absent: the scan may not have added it yet")
	}
	s.setReady()
	if !s.absent(h("never added")) {
		t.Fatal("a ready set did not answer for a key it never took")
	}
}

// absentOpen opens the pebble index in dir and waits for its absent-key
// set to be ready.
func absentOpen(t *testing.T, dir string) *pebbleIndex {
	t.Helper()
	x, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.close() })
	absentWait(t, x)
	return x
}

// absentWait waits for x's scan to end and requires the set ready.
func absentWait(t *testing.T, x *pebbleIndex) {
	t.Helper()
	select {
	case <-x.scanDone:
	case <-time.After(time.Minute):
		t.Fatal("the absent-key scan did not end")
	}
	if !x.absent.ready.Load() {
		t.Fatal("the absent-key scan ended without making the set ready")
	}
}

func absentWrite(t *testing.T, x storage.Index, rows ...storage.Row) {
	t.Helper()
	pos, err := x.Position(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := x.Write(t.Context(), pos, rows); err != nil || !ok {
		t.Fatalf("write at %d: %v %v", pos, ok, err)
	}
}

// absentCheck holds the two answers the set may skip a read for: the first
// index of identity id, and the current statement of key k about digest d.
func absentCheck(t *testing.T, x storage.Index, what string, id []byte, wantIdx uint64, d, k []byte, wantStamp int64, wantStatus byte) {
	t.Helper()
	idx, ok, err := x.IndexOf(t.Context(), id)
	if err != nil || !ok || idx != wantIdx {
		t.Errorf("%s: IndexOf = %d %v %v, want %d (the first entry of the identity)", what, idx, ok, err, wantIdx)
	}
	s, st, ok, err := x.Latest(t.Context(), d, k)
	if err != nil || !ok || s.Seconds() != wantStamp || st != wantStatus {
		t.Errorf("%s: Latest = %d %d %v %v, want %d %d (the newest statement)", what, s.Seconds(), st, ok, err, wantStamp, wantStatus)
	}
}

// An attacker replays a statement, or logs an older one to take the place
// of a revocation, after the ledger restarted: the index's rows written
// before the restart must be in the set its scan rebuilt, or the skipped
// reads would index the replay as new and make the older statement current.
func TestRedteam24AbsentSetCoversRowsBeforeRestart(t *testing.T) {
	dir := t.TempDir()
	d, k := h("d"), h("k")
	x := absentOpen(t, dir)
	absentWrite(t, x,
		storage.Row{ID: h("sign"), Digest: d, KeyID: k, Stamp: stampAt(1000), Status: 1, Data: []byte("trusted")},
		storage.Row{ID: h("revoke"), Digest: d, KeyID: k, Stamp: stampAt(2000), Status: 2, Data: []byte("untrusted")})
	if err := x.close(); err != nil {
		t.Fatal(err)
	}
	x = absentOpen(t, dir)
	absentWrite(t, x,
		storage.Row{ID: h("revoke"), Digest: d, KeyID: k, Stamp: stampAt(2000), Status: 2, Data: []byte("untrusted, replayed")},
		storage.Row{ID: h("old"), Digest: d, KeyID: k, Stamp: stampAt(1500), Status: 1, Data: []byte("trusted, dated before the revocation")})
	absentCheck(t, x, "after a restart", h("revoke"), 1, d, k, 2000, 2)
}

// A statement logged twice in one batch (a replay appended before the
// first was indexed): the second must find the first's row in the batch,
// though the set said the identity was absent when the batch began.
func TestRedteam24AbsentSetSeesEarlierRowsOfTheBatch(t *testing.T) {
	d, k := h("d"), h("k")
	x := absentOpen(t, t.TempDir())
	absentWrite(t, x,
		storage.Row{ID: h("revoke"), Digest: d, KeyID: k, Stamp: stampAt(2000), Status: 2, Data: []byte("untrusted")},
		storage.Row{ID: h("revoke"), Digest: d, KeyID: k, Stamp: stampAt(2000), Status: 2, Data: []byte("untrusted again")},
		storage.Row{ID: h("old"), Digest: d, KeyID: k, Stamp: stampAt(1500), Status: 1, Data: []byte("trusted, dated before")})
	absentCheck(t, x, "one batch", h("revoke"), 0, d, k, 2000, 2)
}

// openHeldScan opens the pebble index in dir with its absent-key scan held
// once its snapshot is taken; release lets the scan go on.
func openHeldScan(t *testing.T, dir string) (x *pebbleIndex, release func()) {
	t.Helper()
	held, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() { once.Do(func() { close(held); <-resume }) }
	scanAbsentHook.Store(&hook)
	t.Cleanup(func() { scanAbsentHook.Store(nil) }) // after x's close: cleanups run last first
	x, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	var released sync.Once
	release = func() { released.Do(func() { close(resume) }) }
	t.Cleanup(func() { release(); _ = x.close() })
	<-held
	return x, release
}

// The scan reads a snapshot: rows written while it runs are not in it.
// Write must add them itself, ready or not, or the set, once ready, would
// call them absent.
func TestRedteam24AbsentSetTakesWritesDuringItsScan(t *testing.T) {
	dir := t.TempDir()
	d, k := h("d"), h("k")
	x := absentOpen(t, dir)
	absentWrite(t, x, storage.Row{ID: h("sign"), Digest: d, KeyID: k, Stamp: stampAt(1000), Status: 1, Data: []byte("trusted")})
	if err := x.close(); err != nil {
		t.Fatal(err)
	}

	y, release := openHeldScan(t, dir)
	// Reads while the scan is held go to pebble: the set is not ready.
	absentCheck(t, y, "while the scan runs", h("sign"), 0, d, k, 1000, 1)
	absentWrite(t, y, storage.Row{ID: h("revoke"), Digest: d, KeyID: k, Stamp: stampAt(2000), Status: 2, Data: []byte("untrusted")})
	release()
	absentWait(t, y)
	absentWrite(t, y,
		storage.Row{ID: h("revoke"), Digest: d, KeyID: k, Stamp: stampAt(2000), Status: 2, Data: []byte("untrusted, replayed")},
		storage.Row{ID: h("old"), Digest: d, KeyID: k, Stamp: stampAt(1500), Status: 1, Data: []byte("trusted, dated before the revocation")})
	absentCheck(t, y, "after the scan", h("revoke"), 1, d, k, 2000, 2)
}

// BenchmarkAbsentReads measures a new statement's two index reads (its
// identity, its key's row about its digest) on a pebble index of 200,000
// entries, answered by the absent-key set (set) and by pebble (pebble: the
// set made unready, as before the scan ends).
func BenchmarkAbsentReads(b *testing.B) {
	dir := b.TempDir()
	x, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		b.Fatal(err)
	}
	defer x.close()
	<-x.scanDone
	k := h("k")
	for c := range 200 {
		rows := make([]storage.Row, 1000)
		for i := range rows {
			n := uint64(c*1000 + i)
			id := h(fmt.Sprint("s", n))
			rows[i] = storage.Row{ID: id, Digest: h(fmt.Sprint("d", n)), KeyID: k, Stamp: stampAt(1000), Status: 1,
				Data: binary.BigEndian.AppendUint64(make([]byte, 0, 600), n)[:600]}
		}
		if ok, err := x.Write(b.Context(), uint64(c*1000), rows); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
	for _, mode := range []string{"set", "pebble"} {
		b.Run(mode, func(b *testing.B) {
			x.absent.ready.Store(mode == "set")
			defer x.absent.ready.Store(true)
			i := 0
			for b.Loop() {
				i++
				if _, ok, err := x.IndexOf(b.Context(), h(fmt.Sprint("new", i))); err != nil || ok {
					b.Fatal(ok, err)
				}
				if _, _, ok, err := x.Latest(b.Context(), h(fmt.Sprint("nd", i)), k); err != nil || ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
