package posix

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
)

// engines opens each index engine's store at a path in dir.
var engines = []struct {
	name string
	open func(dir string) (indexCloser, error)
}{
	{EngineBbolt, func(dir string) (indexCloser, error) { return openIndex(filepath.Join(dir, IndexFile), quiet()) }},
	{EnginePebble, func(dir string) (indexCloser, error) { return openPebbleIndex(filepath.Join(dir, IndexDir), quiet()) }},
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func h(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

func stampAt(sec int64) storage.Stamp { return storage.StampOf(time.Unix(sec, 0)) }

// engineRows are rows that exercise every bucket: two keys about one
// digest, a revocation dated later, a statement dated earlier but logged
// later (not current), a duplicate identity (its first index is kept), an
// entry that does not verify (no digest), a second digest.
func engineRows() []storage.Row {
	d1, d2, k1, k2 := h("d1"), h("d2"), h("k1"), h("k2")
	return []storage.Row{
		{ID: h("s0"), Digest: d1, KeyID: k1, Stamp: stampAt(1000), Status: 1, Data: []byte("e0")},
		{ID: h("s1"), Digest: d1, KeyID: k2, Stamp: stampAt(1001), Status: 1, Data: []byte("e1")},
		{ID: h("s2"), Digest: d1, KeyID: k1, Stamp: stampAt(2000), Status: 2, Data: []byte("e2")}, // revocation
		{ID: h("bad"), Data: []byte("not a statement")},
		{ID: h("s4"), Digest: d1, KeyID: k1, Stamp: stampAt(1500), Status: 1, Data: []byte("e4")}, // older: not current
		{ID: h("s0"), Digest: d1, KeyID: k1, Stamp: stampAt(1000), Status: 1, Data: []byte("e0 again")},
		{ID: h("s6"), Digest: d2, KeyID: k1, Stamp: stampAt(3000), Status: 1, Data: []byte("e6")},
	}
}

// observe renders every lookup of the index over engineRows's digests and
// keys, so that two indexes (two engines, or one before and after a
// reopen or a migration) can be compared as a whole.
func observe(t *testing.T, ix storage.Index) string {
	t.Helper()
	ctx := t.Context()
	var b strings.Builder
	pos, err := ix.Position(ctx)
	fmt.Fprintf(&b, "position %d %v\n", pos, err)
	keys := [][]byte{h("k1"), h("k2")}
	for _, d := range [][]byte{h("d1"), h("d2"), h("none")} {
		for _, below := range []uint64{3, 5, 100} {
			p, err := ix.Page(ctx, d, nil, 0, below, 10)
			fmt.Fprintf(&b, "page %x <%d: %v %v\n", d[:2], below, p, err)
			p, err = ix.Page(ctx, d, nil, 1, below, 2)
			fmt.Fprintf(&b, "page %x [1,%d) n2: %v %v\n", d[:2], below, p, err)
			p, err = ix.Page(ctx, d, keys, 0, below, 10)
			fmt.Fprintf(&b, "page %x keys <%d: %v %v\n", d[:2], below, p, err)
			p, err = ix.Page(ctx, d, keys[:1], 2, below, 1)
			fmt.Fprintf(&b, "page %x k1 [2,%d) n1: %v %v\n", d[:2], below, p, err)
			c, err := ix.Current(ctx, d, keys, below)
			fmt.Fprintf(&b, "current %x <%d: %v %v\n", d[:2], below, c, err)
		}
		for _, k := range keys {
			s, st, ok, err := ix.Latest(ctx, d, k)
			fmt.Fprintf(&b, "latest %x %x: %d %d %v %v\n", d[:2], k[:2], s.Seconds(), st, ok, err)
		}
	}
	for _, k := range append(keys, h("k3")) {
		rows, err := ix.KeyDigests(ctx, k, nil, 10)
		fmt.Fprintf(&b, "keydigests %x: %v %v\n", k[:2], rows, err)
		if len(rows) > 0 {
			rows, err = ix.KeyDigests(ctx, k, rows[0].Digest, 10)
			fmt.Fprintf(&b, "keydigests %x after: %v %v\n", k[:2], rows, err)
		}
	}
	for _, id := range []string{"s0", "s1", "s2", "bad", "s4", "s6", "s7", "none"} {
		i, ok, err := ix.IndexOf(ctx, h(id))
		fmt.Fprintf(&b, "indexof %s: %d %v %v\n", id, i, ok, err)
	}
	var got []string
	err = ix.Entries(ctx, []uint64{0, 3, 5, 6}, func(i uint64, data []byte) bool {
		got = append(got, fmt.Sprintf("%d=%s", i, data))
		return true
	})
	fmt.Fprintf(&b, "entries %v %v\n", got, err)
	return b.String()
}

// TestLatestIsTheNewestStatement: Latest, which reads the key's row of the
// keys index, answers for every (digest, key) the statement a scan of all
// the rows would pick (the greatest signed timestamp, to the nanosecond,
// ties broken by the greater index: the bytime rows' byte order, computed
// here without storage.Newer), over writes in several batches whose
// timestamps repeat and run backwards, with replayed identities, after a
// reopen too, and answers nothing for a pair without a statement (another
// key's digest, an unverified entry).
func TestLatestIsTheNewestStatement(t *testing.T) {
	ctx := t.Context()
	digests := [][]byte{h("d0"), h("d1"), h("d2")}
	keys := [][]byte{h("k0"), h("k1"), h("k2")}
	rnd := rand.New(rand.NewPCG(1, 2))
	var rows []storage.Row
	for i := range 300 {
		switch {
		case i%37 == 0:
			rows = append(rows, storage.Row{ID: h(fmt.Sprint("bad", i)), Data: []byte("not a statement")})
			continue
		case i%23 == 0 && i > 0 && rows[i-1].Digest != nil: // a replay: the same identity, logged again
			r := rows[i-1]
			r.Data = fmt.Appendf(nil, "e%d again", i)
			rows = append(rows, r)
			continue
		}
		d, k := rnd.IntN(len(digests)), rnd.IntN(len(keys)-1) // k2 never signs
		rows = append(rows, storage.Row{
			ID: h(fmt.Sprint("s", i)), Digest: digests[d], KeyID: keys[k],
			Stamp:  storage.StampOf(time.Unix(1000+int64(rnd.IntN(4)), int64(rnd.IntN(2))*1e8)), // 8 stamps: many ties at the top
			Status: byte(1 + rnd.IntN(3)), Data: fmt.Appendf(nil, "e%d", i),
		})
	}
	order := func(s storage.Stamp, idx uint64) []byte { return binary.BigEndian.AppendUint64(bytes.Clone(s[:]), idx) }
	type want struct {
		order  []byte
		stamp  storage.Stamp
		status byte
	}
	model := map[[2]string]want{}
	for i, r := range rows {
		if r.Digest == nil {
			continue
		}
		pk := [2]string{string(r.Digest), string(r.KeyID)}
		if cur, ok := model[pk]; !ok || bytes.Compare(order(r.Stamp, uint64(i)), cur.order) > 0 {
			model[pk] = want{order(r.Stamp, uint64(i)), r.Stamp, r.Status}
		}
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			dir := t.TempDir()
			ix, err := e.open(dir)
			if err != nil {
				t.Fatal(err)
			}
			check := func(when string) {
				t.Helper()
				for _, d := range append(digests, h("none")) {
					for _, k := range keys {
						s, st, ok, err := ix.Latest(ctx, d, k)
						if err != nil {
							t.Fatal(err)
						}
						w, wok := model[[2]string{string(d), string(k)}]
						if ok != wok || s != w.stamp || st != w.status {
							t.Fatalf("%s: latest %x %x: %v %d %v, want %v %d %v (order %x)",
								when, d[:2], k[:2], s.Time(), st, ok, w.stamp.Time(), w.status, wok, w.order)
						}
					}
				}
			}
			for next := 0; next < len(rows); next += 41 {
				end := min(next+41, len(rows))
				if ok, err := ix.Write(ctx, uint64(next), rows[next:end]); !ok || err != nil {
					t.Fatalf("write at %d: %v %v", next, ok, err)
				}
			}
			check("written")
			if err := ix.close(); err != nil {
				t.Fatal(err)
			}
			if ix, err = e.open(dir); err != nil {
				t.Fatal(err)
			}
			defer ix.close()
			check("reopened")
		})
	}
}

// TestIndexEnginesAgree: the pebble index answers every lookup exactly as
// the bbolt one over the same writes (current statements, a revocation,
// bounds, paging, an unverified entry, a duplicate identity), and the
// behaviour each must have holds for both: the current statement is the
// latest signed, the first index of an identity is kept, a missing entry
// is an error, a Write at a stale position reports false and writes
// nothing, and a reopened index sees everything a returned Write wrote.
func TestIndexEnginesAgree(t *testing.T) {
	ctx := t.Context()
	seen := map[string]string{}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			dir := t.TempDir()
			ix, err := e.open(dir)
			if err != nil {
				t.Fatal(err)
			}
			rows := engineRows()
			if ok, err := ix.Write(ctx, 0, rows[:3]); !ok || err != nil {
				t.Fatalf("write: %v %v", ok, err)
			}
			if ok, err := ix.Write(ctx, 3, rows[3:]); !ok || err != nil {
				t.Fatalf("write: %v %v", ok, err)
			}
			before := observe(t, ix)
			for _, want := range []string{
				"position 7 <nil>",
				"current " + fmt.Sprintf("%x", h("d1")[:2]) + " <100: [2 1] <nil>", // the revocation is k1's current
				"indexof s0: 0 true", // the first index of a duplicate
				"entries [0=e0 3=not a statement 5=e0 again 6=e6] <nil>",
			} {
				if !strings.Contains(before, want) {
					t.Fatalf("missing %q in\n%s", want, before)
				}
			}
			if s, st, ok, _ := ix.Latest(ctx, h("d1"), h("k1")); !ok || st != 2 || s.Seconds() != 2000 {
				t.Fatalf("latest of k1 about d1: %d %d %v, want the revocation", s.Seconds(), st, ok)
			}
			if err := ix.Entries(ctx, []uint64{7}, func(uint64, []byte) bool { return true }); err == nil {
				t.Fatal("a missing entry was no error")
			}
			// A Write at a stale position writes nothing.
			stale := []storage.Row{{ID: h("s7"), Digest: h("d1"), KeyID: h("k2"), Stamp: stampAt(9000), Status: 2, Data: []byte("e7")}}
			if ok, err := ix.Write(ctx, 5, stale); ok || err == nil {
				t.Fatalf("stale write: %v %v, want false and an error", ok, err)
			}
			if got := observe(t, ix); got != before {
				t.Fatalf("a stale write changed the index:\n%s\nwant\n%s", got, before)
			}
			if err := ix.close(); err != nil {
				t.Fatal(err)
			}
			ix, err = e.open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ix.close()
			if got := observe(t, ix); got != before {
				t.Fatalf("after reopening:\n%s\nwant\n%s", got, before)
			}
			seen[e.name] = before
		})
	}
	if len(seen) == 2 && seen[EngineBbolt] != seen[EnginePebble] {
		t.Fatalf("engines disagree:\nbbolt\n%s\npebble\n%s", seen[EngineBbolt], seen[EnginePebble])
	}
}

// TestIndexEnginesFormat: a store of a newer format is refused by both
// engines; the pebble store of an older format is emptied (rebuilt from
// the log), as the bbolt one is.
func TestIndexEnginesFormat(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	ix, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := ix.Write(ctx, 0, engineRows()); !ok || err != nil {
		t.Fatal(ok, err)
	}
	setFormat := func(f uint64) {
		if err := ix.s.DB().Set(pkey(pfxMeta, formatKey), be64(f), nil); err != nil {
			t.Fatal(err)
		}
		if err := ix.close(); err != nil {
			t.Fatal(err)
		}
	}
	setFormat(pebbleFormat + 1)
	if _, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet()); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("a newer format: %v", err)
	}
	if ix, err = openPebbleIndex(filepath.Join(dir, IndexDir), quiet()); err == nil {
		t.Fatal("reopened a newer format")
	}
	// Rewrite it as format 0 through the raw database.
	db, err := openPebble(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(pkey(pfxMeta, formatKey), be64(0), nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ix, err = openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer ix.close()
	if pos, _ := ix.Position(ctx); pos != 0 {
		t.Fatalf("an older format kept position %d, want a rebuild from 0", pos)
	}
	if _, ok, _ := ix.IndexOf(ctx, h("s0")); ok {
		t.Fatal("an older format kept its rows")
	}
}

// TestEngineSelection: a new directory gets the configured engine (else
// NewEngine, else bbolt); an existing one keeps its
// engine, and asking for the other is ErrEngineMismatch naming the
// migration command; a directory holding both is refused.
func TestEngineSelection(t *testing.T) {
	ctx := t.Context()
	open := func(dir, engine, newEngine string) (*Storage, error) {
		return New(ctx, Config{Dir: dir, Engine: engine, NewEngine: newEngine, Logger: quiet()})
	}
	for _, c := range []struct{ engine, newEngine, want string }{
		{"", "", EngineBbolt}, {EnginePebble, "", EnginePebble}, {"", EnginePebble, EnginePebble}, {EngineBbolt, EnginePebble, EngineBbolt},
	} {
		dir := t.TempDir()
		st, err := open(dir, c.engine, c.newEngine)
		if err != nil {
			t.Fatal(err)
		}
		if st.IndexEngine() != c.want {
			t.Fatalf("engine %q, new engine %q: %s, want %s", c.engine, c.newEngine, st.IndexEngine(), c.want)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		other := map[string]string{EngineBbolt: EnginePebble, EnginePebble: EngineBbolt}[c.want]
		// NewEngine picks only for a new directory.
		if st, err = open(dir, "", other); err != nil || st.IndexEngine() != c.want {
			t.Fatalf("reopen: %v", err)
		}
		_ = st.Close()
		_, err = open(dir, other, "")
		if !errors.Is(err, ErrEngineMismatch) || !strings.Contains(err.Error(), "migrate-index --data "+dir) {
			t.Fatalf("the other engine on a %s directory: %v", c.want, err)
		}
	}
	if err := (Config{Dir: "x", Engine: "rocksdb"}).Validate(); err == nil {
		t.Fatal("an unknown engine was valid")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, IndexFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, IndexDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := open(dir, "", ""); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("both stores: %v", err)
	}
}

// TestMigrateIndex: a bbolt index migrated to pebble answers every lookup
// as before; a migration interrupted midway leaves the bbolt index in use
// and whole, and the next run starts over and completes; a second run has
// nothing to do; a migration refuses an index held by a running ledger.
func TestMigrateIndex(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bx, err := openIndex(filepath.Join(dir, IndexFile), quiet())
	if err != nil {
		t.Fatal(err)
	}
	var rows []storage.Row
	for i := range 300 { // enough for several small batches
		rows = append(rows, storage.Row{ID: h(fmt.Sprint("x", i)), Digest: h(fmt.Sprint("dx", i%7)), KeyID: h(fmt.Sprint("k", i%3+1)),
			Stamp: stampAt(int64(5000 + i)), Status: byte(1 + i%2), Data: []byte(fmt.Sprint("row ", i))})
	}
	rows = append(engineRows(), rows...)
	if ok, err := bx.Write(ctx, 0, rows); !ok || err != nil {
		t.Fatal(ok, err)
	}
	want := observe(t, bx)
	if _, err := MigrateIndex(ctx, dir, quiet()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("migrating a held index: %v", err)
	}
	if err := bx.close(); err != nil {
		t.Fatal(err)
	}

	// Interrupted after its first batch.
	defer func(n int) { migrateBatchBytes, migrateBatchHook = n, nil }(migrateBatchBytes)
	migrateBatchBytes = 2048
	batches := 0
	migrateBatchHook = func(int) error {
		if batches++; batches == 2 {
			return errors.New("killed")
		}
		return nil
	}
	if _, err := MigrateIndex(ctx, dir, quiet()); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("interrupted migration: %v", err)
	}
	if e, err := DirEngine(dir); e != EngineBbolt || err != nil {
		t.Fatalf("after an interrupted migration the engine is %q (%v), want bbolt", e, err)
	}
	st, err := New(ctx, Config{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if got := observe(t, st.Index()); got != want {
		t.Fatalf("the bbolt index after an interrupted migration:\n%s\nwant\n%s", got, want)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	migrateBatchHook = nil
	res, err := MigrateIndex(ctx, dir, quiet())
	if err != nil || !res.Done || res.Rows == 0 {
		t.Fatalf("migration: %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(dir, IndexFile+OldSuffix)); err != nil {
		t.Fatalf("the old index was not kept aside: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, IndexDir+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the temporary store is left: %v", err)
	}
	st, err = New(ctx, Config{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if st.IndexEngine() != EnginePebble {
		t.Fatalf("engine %s after the migration", st.IndexEngine())
	}
	if got := observe(t, st.Index()); got != want {
		t.Fatalf("the migrated index:\n%s\nwant\n%s", got, want)
	}
	// It keeps working: the follower's next write.
	if ok, err := st.Index().Write(ctx, uint64(len(rows)), []storage.Row{{ID: h("next"), Data: []byte("n")}}); !ok || err != nil {
		t.Fatalf("write after migration: %v %v", ok, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if res, err := MigrateIndex(ctx, dir, quiet()); err != nil || res.Done {
		t.Fatalf("a second migration: %+v %v", res, err)
	}

	// Stopped between its two renames: the complete pebble store beside
	// the bbolt file. The ledger refuses the directory; the next run
	// only moves the bbolt file aside.
	if err := os.Rename(filepath.Join(dir, IndexFile+OldSuffix), filepath.Join(dir, IndexFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Config{Dir: dir, Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("both stores: %v", err)
	}
	if res, err := MigrateIndex(ctx, dir, quiet()); err != nil || !res.Done || res.Rows != 0 {
		t.Fatalf("finishing an interrupted migration: %+v %v", res, err)
	}
	if e, err := DirEngine(dir); e != EnginePebble || err != nil {
		t.Fatalf("after finishing: %q %v", e, err)
	}
}
