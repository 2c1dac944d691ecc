package posix

// Red team 24 (helper-108): attacks on the pebble index's absent-key set
// (absent.go). Every test here waits for the scans it starts (close, or
// absentOpen), so that no scan goroutine outlives its test and runs
// another test's scanAbsentHook.
//
// TestRedteam24AbsentAnswersAfterClose and
// TestRedteam24AbsentAnswersDamagedStore failed on the set's first commit
// (5b68152): a lookup answered from the set skipped the store's guards, so
// a closed or damaged store answered "not indexed" instead of ErrClosed /
// ErrPebbleDamaged. IndexOf and Latest now acquire the store before they
// consult the set (pebbleIndex.lookup).

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/notarize/docker-notarize/internal/pebblestore"
	"github.com/notarize/docker-notarize/ledger/storage"
)

// rtCur is the current statement of a (key, digest) pair.
type rtCur struct {
	stamp  storage.Stamp
	idx    uint64
	status byte
}

// rtModel is what the index must answer: the first index of each identity
// and the newest statement (storage.Newer) of each (key, digest) pair.
type rtModel struct {
	next  uint64
	first map[string]uint64
	cur   map[[2]string]rtCur // {keyID, digest}
}

func newRTModel() *rtModel {
	return &rtModel{first: map[string]uint64{}, cur: map[[2]string]rtCur{}}
}

func (m *rtModel) apply(rows []storage.Row) {
	for i, r := range rows {
		idx := m.next + uint64(i)
		if _, ok := m.first[string(r.ID)]; !ok {
			m.first[string(r.ID)] = idx
		}
		if r.Digest == nil {
			continue
		}
		pk := [2]string{string(r.KeyID), string(r.Digest)}
		if c, ok := m.cur[pk]; !ok || storage.Newer(r.Stamp, idx, c.stamp, c.idx) {
			m.cur[pk] = rtCur{r.Stamp, idx, r.Status}
		}
	}
	m.next += uint64(len(rows))
}

// write writes rows at the model's position and applies them.
func (m *rtModel) write(t *testing.T, x storage.Index, rows ...storage.Row) {
	t.Helper()
	if ok, err := x.Write(t.Context(), m.next, rows); err != nil || !ok {
		t.Fatalf("write at %d: %v %v", m.next, ok, err)
	}
	m.apply(rows)
}

// verify checks every identity and pair of the model, and that never
// written ones are not found.
func (m *rtModel) verify(t *testing.T, x storage.Index, what string) {
	t.Helper()
	bad := 0
	for id, want := range m.first {
		got, ok, err := x.IndexOf(t.Context(), []byte(id))
		if err != nil || !ok || got != want {
			if bad++; bad < 5 {
				t.Errorf("%s: IndexOf(%x) = %d %v %v, want %d", what, id[:4], got, ok, err, want)
			}
		}
	}
	for pk, want := range m.cur {
		s, st, ok, err := x.Latest(t.Context(), []byte(pk[1]), []byte(pk[0]))
		if err != nil || !ok || s != want.stamp || st != want.status {
			if bad++; bad < 10 {
				t.Errorf("%s: Latest(%x, %x) = %d %d %v %v, want %d %d", what, pk[1][:4], pk[0][:4], s.Seconds(), st, ok, err, want.stamp.Seconds(), want.status)
			}
		}
	}
	for i := range 100 {
		if _, ok, err := x.IndexOf(t.Context(), h(fmt.Sprint("never-", i))); ok || err != nil {
			t.Errorf("%s: a never written identity found: %v %v", what, ok, err)
		}
		if _, _, ok, err := x.Latest(t.Context(), h(fmt.Sprint("never-d-", i)), h("rk0")); ok || err != nil {
			t.Errorf("%s: a never written pair found: %v %v", what, ok, err)
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d wrong answers", what, bad)
	}
}

// rtBase returns n rows over 7 keys and 300 digests, stamps 1000..1049.
func rtBase(from, n int) []storage.Row {
	rows := make([]storage.Row, n)
	for j := range rows {
		i := from + j
		rows[j] = storage.Row{ID: h(fmt.Sprint("rb", i)), Digest: h(fmt.Sprint("rd", i%300)), KeyID: h(fmt.Sprint("rk", i%7)),
			Stamp: stampAt(int64(1000 + i%50)), Status: byte(1 + i%3), Data: fmt.Appendf(nil, "base %d", i)}
	}
	return rows
}

// The scan of a store of 16,000 keys races a writer that logs new
// statements, replays (of rows before the open, of rows written during the
// scan, twice in one batch), older statements about pairs with a newer
// revocation, and readers that look up every identity and pair whose
// Write returned: no lookup may answer "absent" for one, before, during or
// after the set becomes ready; afterwards (and after a reopen) every
// answer matches the model.
func TestRedteam24AbsentScanRacesWritersAndReaders(t *testing.T) {
	dir := t.TempDir()
	m := newRTModel()
	x := absentOpen(t, dir)
	for c := range 8 {
		m.write(t, x, rtBase(c*1000, 1000)...)
	}
	if err := x.close(); err != nil {
		t.Fatal(err)
	}

	// Let writes land between the snapshot and the first key read.
	var once sync.Once
	hook := func() { once.Do(func() { time.Sleep(300 * time.Millisecond) }) }
	scanAbsentHook.Store(&hook)
	t.Cleanup(func() { scanAbsentHook.Store(nil) }) // after y's close (cleanups run last first)
	y, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = y.close() })

	type pub struct {
		id  []byte
		idx uint64
	}
	var (
		pubMu    sync.Mutex
		pubIDs   []pub
		pubPairs [][2][]byte // {keyID, digest}
	)
	publish := func() { // under the writer: m is not written meanwhile
		pubMu.Lock()
		defer pubMu.Unlock()
		pubIDs = pubIDs[:0]
		for id, idx := range m.first {
			pubIDs = append(pubIDs, pub{[]byte(id), idx})
		}
		pubPairs = pubPairs[:0]
		for pk := range m.cur {
			pubPairs = append(pubPairs, [2][]byte{[]byte(pk[0]), []byte(pk[1])})
		}
	}
	publish()

	var stop atomic.Bool
	var readErr atomic.Pointer[string]
	fail := func(s string) { readErr.CompareAndSwap(nil, &s) }
	var wg sync.WaitGroup
	var reads atomic.Int64
	for r := range 2 {
		wg.Go(func() {
			for i := r; !stop.Load(); i++ {
				pubMu.Lock()
				p := pubIDs[(i*7919)%len(pubIDs)]
				pk := pubPairs[(i*104729)%len(pubPairs)]
				pubMu.Unlock()
				got, ok, err := y.IndexOf(t.Context(), p.id)
				if err != nil || !ok || got != p.idx {
					fail(fmt.Sprintf("IndexOf(%x) = %d %v %v, want %d (ready %v)", p.id[:4], got, ok, err, p.idx, y.absent.ready.Load()))
				}
				if _, _, ok, err := y.Latest(t.Context(), pk[1], pk[0]); err != nil || !ok {
					fail(fmt.Sprintf("Latest(%x, %x) = %v %v, want a row (ready %v)", pk[1][:4], pk[0][:4], ok, err, y.absent.ready.Load()))
				}
				reads.Add(1)
			}
		})
	}

	after, before := 0, 0
	for b := 0; b < 2000 && after < 20; b++ {
		var rows []storage.Row
		for j := range 40 { // new statements, some of them revocations dated late
			n := b*40 + j
			st, sec := byte(1), int64(1100+n%10)
			if j%5 == 0 {
				st, sec = 2, 9000
			}
			rows = append(rows, storage.Row{ID: h(fmt.Sprint("rn", n)), Digest: h(fmt.Sprint("rd", n%300)), KeyID: h(fmt.Sprint("rk", n%7)),
				Stamp: stampAt(sec), Status: st, Data: fmt.Appendf(nil, "new %d", n)})
		}
		for j := range 15 { // replays of rows from before the open
			r := rtBase((b*15+j)*13%20000, 1)[0]
			r.Data = []byte("replayed")
			rows = append(rows, r)
		}
		if b > 0 {
			for j := range 15 { // replays of rows written during the scan
				n := (b-1)*40 + j
				rows = append(rows, storage.Row{ID: h(fmt.Sprint("rn", n)), Digest: h(fmt.Sprint("rd", n%300)), KeyID: h(fmt.Sprint("rk", n%7)),
					Stamp: stampAt(1), Status: 1, Data: []byte("replayed, a wrong stamp")})
			}
		}
		rows = append(rows, rows[0], rows[1]) // twice in one batch
		for j := range 20 {                   // older statements, dated before every revocation
			n := b*40 + j
			rows = append(rows, storage.Row{ID: h(fmt.Sprint("ro", n)), Digest: h(fmt.Sprint("rd", n%300)), KeyID: h(fmt.Sprint("rk", n%7)),
				Stamp: stampAt(999), Status: 1, Data: []byte("older")})
		}
		m.write(t, y, rows...)
		publish()
		select {
		case <-y.scanDone:
			after++
		default:
			before++
		}
	}
	stop.Store(true)
	wg.Wait()
	if s := readErr.Load(); s != nil {
		t.Fatalf("a concurrent read missed a row that was written: %s", *s)
	}
	absentWait(t, y)
	t.Logf("%d reads, %d entries, %d batches written before the scan ended", reads.Load(), m.next, before)
	if before == 0 {
		t.Error("no batch was written while the scan ran: the test raced nothing")
	}
	m.verify(t, y, "after the scan")
	if err := y.close(); err != nil {
		t.Fatal(err)
	}
	scanAbsentHook.Store(nil)
	z := absentOpen(t, dir)
	m.verify(t, z, "reopened")
}

// Rows whose Write ran while the scan was held after its snapshot: a new
// identity (added by Write), its replay in a later Write while the set is
// still not ready (found in pebble, so not added again), a pair written
// before the open and its older statement: once ready, the set holds them.
func TestRedteam24AbsentWritesWhileScanHeld(t *testing.T) {
	dir := t.TempDir()
	m := newRTModel()
	x := absentOpen(t, dir)
	m.write(t, x, rtBase(0, 500)...)
	if err := x.close(); err != nil {
		t.Fatal(err)
	}
	y, release := openHeldScan(t, dir)
	d, k := h("held-d"), h("held-k")
	m.write(t, y, storage.Row{ID: h("held-sign"), Digest: d, KeyID: k, Stamp: stampAt(1000), Status: 1, Data: []byte("t")})
	m.write(t, y, storage.Row{ID: h("held-revoke"), Digest: d, KeyID: k, Stamp: stampAt(2000), Status: 2, Data: []byte("u")},
		storage.Row{ID: h("held-sign"), Digest: d, KeyID: k, Stamp: stampAt(1000), Status: 1, Data: []byte("t again")})
	m.write(t, y, storage.Row{ID: h("held-revoke"), Digest: d, KeyID: k, Stamp: stampAt(2000), Status: 2, Data: []byte("u again")},
		rtBase(3, 1)[0], // a replay of a row from before the open
		storage.Row{ID: h("held-old"), Digest: h("rd3"), KeyID: h("rk3"), Stamp: stampAt(1), Status: 1, Data: []byte("older")})
	m.verify(t, y, "while the scan is held")
	release()
	absentWait(t, y)
	m.write(t, y, storage.Row{ID: h("held-revoke"), Digest: d, KeyID: k, Stamp: stampAt(2000), Status: 2, Data: []byte("u thrice")},
		storage.Row{ID: h("held-old2"), Digest: d, KeyID: k, Stamp: stampAt(1500), Status: 1, Data: []byte("older")})
	m.verify(t, y, "after the scan")
	absentCheck(t, y, "after the scan", h("held-revoke"), 501, d, k, 2000, 2)
}

// An index of an older format is emptied (DeleteRange) at open, before the
// set exists, and rebuilt by Write from the log: the set, built from the
// emptied store, must then hold the rebuilt rows (replays and older
// statements after the rebuild, and after a reopen).
func TestRedteam24AbsentFormatUpgradeRebuild(t *testing.T) {
	dir := t.TempDir()
	rows := append(rtBase(0, 300),
		storage.Row{ID: h("up-revoke"), Digest: h("rd0"), KeyID: h("rk0"), Stamp: stampAt(5000), Status: 2, Data: []byte("u")})
	x := absentOpen(t, dir)
	absentWrite(t, x, rows...)
	if err := x.close(); err != nil {
		t.Fatal(err)
	}
	db, err := openPebble(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(pkey(pfxMeta, formatKey), be64(0), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	y := absentOpen(t, dir)
	if pos, err := y.Position(t.Context()); pos != 0 || err != nil {
		t.Fatalf("position after the upgrade: %d %v", pos, err)
	}
	if _, ok, err := y.IndexOf(t.Context(), h("rb0")); ok || err != nil {
		t.Fatalf("an emptied index still answers: %v %v", ok, err)
	}
	m := newRTModel()
	m.write(t, y, rows[:150]...) // the follower rebuilds from the log
	m.write(t, y, rows[150:]...)
	m.write(t, y, rows[7], rows[len(rows)-1],
		storage.Row{ID: h("up-old"), Digest: h("rd0"), KeyID: h("rk0"), Stamp: stampAt(1500), Status: 1, Data: []byte("older")})
	m.verify(t, y, "rebuilt")
	absentCheck(t, y, "rebuilt", h("up-revoke"), 300, h("rd0"), h("rk0"), 5000, 2)
	if err := y.close(); err != nil {
		t.Fatal(err)
	}
	m.verify(t, absentOpen(t, dir), "rebuilt, reopened")
}

// A bbolt index migrated to pebble (migrate-index writes the copy's rows
// itself, not through Write): the set of the index opened on the copy is
// its scan's, and must hold every migrated row.
func TestRedteam24AbsentMigratedIndex(t *testing.T) {
	dir := t.TempDir()
	bx, err := openIndex(filepath.Join(dir, IndexFile), quiet())
	if err != nil {
		t.Fatal(err)
	}
	m := newRTModel()
	rows := append(rtBase(0, 400),
		storage.Row{ID: h("mg-revoke"), Digest: h("rd1"), KeyID: h("rk1"), Stamp: stampAt(5000), Status: 2, Data: []byte("u")})
	m.write(t, bx, rows...)
	if err := bx.close(); err != nil {
		t.Fatal(err)
	}
	if res, err := MigrateIndex(t.Context(), dir, quiet()); err != nil || !res.Done {
		t.Fatalf("migration: %+v %v", res, err)
	}
	x := absentOpen(t, dir)
	m.verify(t, x, "migrated")
	m.write(t, x, rows[9], rows[len(rows)-1],
		storage.Row{ID: h("mg-old"), Digest: h("rd1"), KeyID: h("rk1"), Stamp: stampAt(1500), Status: 1, Data: []byte("older")})
	m.verify(t, x, "migrated, then replays")
	absentCheck(t, x, "migrated", h("mg-revoke"), 400, h("rd1"), h("rk1"), 5000, 2)
}

// The set's chain grows (a new part each time the newest fills): rows
// whose keys went into every part, replayed and contradicted by older
// statements after the growth, are all found.
func TestRedteam24AbsentChainGrowth(t *testing.T) {
	dir := t.TempDir()
	x := absentOpen(t, dir)
	m := newRTModel()
	for c := range 3 {
		x.absent.mu.Lock()
		x.absent.room = 1 // the next key fills the part; the one after it starts a new part
		x.absent.mu.Unlock()
		var rows []storage.Row
		for j := range 5 {
			rows = append(rows, storage.Row{ID: h(fmt.Sprint("cg", c, "-", j)), Digest: h(fmt.Sprint("cgd", c)), KeyID: h(fmt.Sprint("cgk", j)),
				Stamp: stampAt(int64(2000 + c)), Status: 2, Data: []byte("revocation")})
		}
		m.write(t, x, rows...)
	}
	if parts, bytes := x.absent.size(); parts < 4 {
		t.Fatalf("%d parts (%d bytes): the chain did not grow", parts, bytes)
	}
	var again []storage.Row
	for c := range 3 {
		for j := range 5 {
			again = append(again,
				storage.Row{ID: h(fmt.Sprint("cg", c, "-", j)), Digest: h(fmt.Sprint("cgd", c)), KeyID: h(fmt.Sprint("cgk", j)), Stamp: stampAt(int64(2000 + c)), Status: 2, Data: []byte("replay")},
				storage.Row{ID: h(fmt.Sprint("cgo", c, "-", j)), Digest: h(fmt.Sprint("cgd", c)), KeyID: h(fmt.Sprint("cgk", j)), Stamp: stampAt(1000), Status: 1, Data: []byte("older")})
		}
	}
	m.write(t, x, again...)
	m.verify(t, x, "grown")
}

// A Write that fails after it added keys to the set (a corrupt keys row
// met in keyCurrent, after the batch's first identity was added) leaves
// false positives only: the identity is not indexed, the position did not
// move, and writing the batch again indexes it.
func TestRedteam24AbsentWriteFailsAfterAdding(t *testing.T) {
	dir := t.TempDir()
	m := newRTModel()
	x := absentOpen(t, dir)
	m.write(t, x, rtBase(0, 50)...)
	if err := x.close(); err != nil {
		t.Fatal(err)
	}
	db, err := openPebble(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(pkey(pfxKeys, h("wf-k"), h("wf-d")), []byte("corrupt"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	y := absentOpen(t, dir)
	fresh := storage.Row{ID: h("wf-fresh"), Digest: h("wf-d2"), KeyID: h("wf-k2"), Stamp: stampAt(3000), Status: 2, Data: []byte("u")}
	bad := storage.Row{ID: h("wf-bad"), Digest: h("wf-d"), KeyID: h("wf-k"), Stamp: stampAt(3000), Status: 1, Data: []byte("t")}
	if ok, err := y.Write(t.Context(), m.next, []storage.Row{fresh, bad}); ok || err == nil {
		t.Fatalf("a batch meeting a corrupt keys row: %v %v, want an error", ok, err)
	}
	if y.absent.absent(pkey(pfxIDs, fresh.ID)) {
		t.Fatal("the failed Write did not add its first identity (the test does not reach the path)")
	}
	if _, ok, err := y.IndexOf(t.Context(), fresh.ID); ok || err != nil {
		t.Fatalf("an identity of a failed Write: %v %v, want not indexed", ok, err)
	}
	if pos, err := y.Position(t.Context()); pos != m.next || err != nil {
		t.Fatalf("position after a failed Write: %d %v, want %d", pos, err, m.next)
	}
	m.write(t, y, fresh)
	m.write(t, y, fresh, storage.Row{ID: h("wf-old"), Digest: fresh.Digest, KeyID: fresh.KeyID, Stamp: stampAt(1000), Status: 1, Data: []byte("older")})
	m.verify(t, y, "after the failed Write")
}

// close while the scan runs (from three goroutines at once, and again):
// every close returns, the scan has returned, and the closed index fails
// reads of stored keys with ErrClosed. Storage.Close twice as well.
func TestRedteam24AbsentCloseDuringScan(t *testing.T) {
	dir := t.TempDir()
	x := absentOpen(t, dir)
	for c := range 20 {
		absentWrite(t, x, rtBase(c*1000, 1000)...)
	}
	if err := x.close(); err != nil {
		t.Fatal(err)
	}
	readyCount := 0
	for range 5 {
		y, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 3)
		for range 3 {
			go func() { errs <- y.close() }()
		}
		for range 3 {
			select {
			case err := <-errs:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("close did not return while the scan ran")
			}
		}
		select {
		case <-y.scanDone:
		default:
			t.Fatal("close returned before the scan did")
		}
		if y.absent.ready.Load() {
			readyCount++
		}
		if err := y.close(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := y.IndexOf(t.Context(), h("rb5")); !errors.Is(err, pebblestore.ErrClosed) {
			t.Fatalf("IndexOf of a stored identity after close: %v, want ErrClosed", err)
		}
	}
	t.Logf("the scan finished before close in %d of 5 runs", readyCount)
	st, err := New(t.Context(), Config{Dir: dir, Engine: EnginePebble, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("a second Storage.Close: %v", err)
	}
}

// Memory: the set of an index of 10,000,000 entries, as openPebbleIndex
// sizes it (2*pos + 1<<20 keys at 1 %), is one part of about 25 MB.
func TestRedteam24AbsentSetMemoryAt10M(t *testing.T) {
	const pos = 10_000_000
	s := newAbsentSet(uint(min(2*uint64(pos)+1<<20, 1<<40)))
	parts, size := s.size()
	t.Logf("10M entries: %d part(s), %.1f MB", parts, float64(size)/1e6)
	if parts != 1 || size > 32<<20 {
		t.Fatalf("10M entries: %d parts, %d bytes", parts, size)
	}
}

// A lookup after close must fail with pebblestore.ErrClosed, as
// TestPebbleFixReadAfterClose requires of a read that reaches a closed
// index (it checks a stored key only), for a key the set lacks too (it
// answered "not indexed" on 5b68152).
func TestRedteam24AbsentAnswersAfterClose(t *testing.T) {
	x := absentOpen(t, t.TempDir())
	absentWrite(t, x, rtBase(0, 10)...)
	if err := x.close(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := x.IndexOf(t.Context(), h("after-close")); !errors.Is(err, pebblestore.ErrClosed) {
		t.Errorf("IndexOf of a new identity on a closed index: %v %v, want ErrClosed", ok, err)
	}
	if _, _, ok, err := x.Latest(t.Context(), h("after-close-d"), h("rk0")); !errors.Is(err, pebblestore.ErrClosed) {
		t.Errorf("Latest of a new pair on a closed index: %v %v, want ErrClosed", ok, err)
	}
}

// Once pebble reported a corruption, "every later use of the store" must
// fail (ErrPebbleDamaged; TestPebbleFixCorruptionFailsReads:
// "a lookup never answers from a store that reported corruption"), so the
// ledger refuses a submission at its identity look-up instead of
// appending it to the log. Answered from memory, a key the set lacks was
// "not indexed", and a new statement passed the duplicate, self-revocation
// and current-status checks of a damaged index. The corruption here is in
// the data rows' blocks only (the scan of the identity and keys rows
// succeeds); a read of an entry's bytes reports it. It failed on 5b68152.
func TestRedteam24AbsentAnswersDamagedStore(t *testing.T) {
	dir := t.TempDir()
	x := absentOpen(t, dir)
	var rows []storage.Row
	for i := range 400 { // 800 kB of incompressible 'd' rows, which sort first in the sstable
		data := make([]byte, 2000)
		_, _ = rand.Read(data)
		rows = append(rows, storage.Row{ID: h(fmt.Sprint("dm", i)), Digest: h("dm-d"), KeyID: h("dm-k"), Stamp: stampAt(int64(1000 + i)), Status: 1, Data: data})
	}
	absentWrite(t, x, rows...)
	if err := x.s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := x.close(); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, IndexDir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no sstable")
	}
	for _, p := range ssts {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(b) / 10; i < len(b)*4/10; i += 97 {
			b[i] ^= 0x5a
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	y, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Skipf("the damaged index did not open (%v): the setup did not reach the case", err)
	}
	t.Cleanup(func() { _ = y.close() })
	<-y.scanDone
	if !y.absent.ready.Load() {
		t.Skip("the scan met the corruption: the setup did not reach the case")
	}
	idx := make([]uint64, 400)
	for i := range idx {
		idx[i] = uint64(i)
	}
	if err := y.Entries(t.Context(), idx, func(uint64, []byte) bool { return true }); !errors.Is(err, ErrPebbleDamaged) {
		t.Skipf("reading the entries did not report the corruption (%v): the setup did not reach the case", err)
	}
	if _, _, err := y.IndexOf(t.Context(), h("dm5")); !errors.Is(err, ErrPebbleDamaged) {
		t.Fatalf("a stored identity on the damaged index: %v, want ErrPebbleDamaged", err)
	}
	if _, ok, err := y.IndexOf(t.Context(), h("a new statement")); !errors.Is(err, ErrPebbleDamaged) {
		t.Errorf("IndexOf of a new identity on a damaged index: %v %v, want ErrPebbleDamaged", ok, err)
	}
	if _, _, ok, err := y.Latest(t.Context(), h("a new digest"), h("dm-k")); !errors.Is(err, ErrPebbleDamaged) {
		t.Errorf("Latest of a new pair on a damaged index: %v %v, want ErrPebbleDamaged", ok, err)
	}
}
