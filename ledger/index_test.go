package ledger

import (
	"context"
	"crypto/sha256"
	"errors"
	"math"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// fakeLog is an in-memory tessera.LogReader over a list of entries, enough
// for the follower: entry bundles and the integrated size.
type fakeLog struct {
	mu      sync.Mutex
	entries [][]byte
}

func (f *fakeLog) append(e ...[]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, e...)
}

func (f *fakeLog) ReadCheckpoint(context.Context) ([]byte, error) { return nil, os.ErrNotExist }
func (f *fakeLog) ReadTile(context.Context, uint64, uint64, uint8) ([]byte, error) {
	return nil, os.ErrNotExist
}
func (f *fakeLog) NextIndex(ctx context.Context) (uint64, error) { return f.IntegratedSize(ctx) }
func (f *fakeLog) IntegratedSize(context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return uint64(len(f.entries)), nil
}

func (f *fakeLog) ReadEntryBundle(_ context.Context, index uint64, p uint8) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	first := index * layout.EntryBundleWidth
	n := uint64(p)
	if n == 0 {
		n = layout.EntryBundleWidth
	}
	if first+n > uint64(len(f.entries)) {
		return nil, os.ErrNotExist
	}
	var b []byte
	for i := first; i < first+n; i++ {
		b = append(b, tessera.NewEntry(f.entries[i]).MarshalBundleData(i)...)
	}
	return b, nil
}

func sha256IDs(bundle []byte) ([][]byte, error) {
	var eb api.EntryBundle
	if err := eb.UnmarshalText(bundle); err != nil {
		return nil, err
	}
	ids := make([][]byte, len(eb.Entries))
	for i, e := range eb.Entries {
		h := sha256.Sum256(e)
		ids[i] = h[:]
	}
	return ids, nil
}

// follow runs the store's follower over lr until the returned stop is called.
func follow(t *testing.T, st *testIndex, lr tessera.LogReader) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	f := st.Follower(sha256IDs)
	go f.Follow(ctx, lr)
	return func() {
		cancel()
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}
}

func waitProcessed(t *testing.T, st *testIndex, n uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := st.WaitProcessed(ctx, n); err != nil {
		t.Fatal(err)
	}
}

func TestIndexFollowerResumes(t *testing.T) {
	dir := t.TempDir()
	s := newTestSigner(t)
	d1, d2 := randomDigest(t), randomDigest(t)
	lg := &fakeLog{}
	var want1, want2 []uint64
	add := func(n int) {
		for range n {
			d := d2
			if len(lg.entries)%3 == 0 {
				d = d1
				want1 = append(want1, uint64(len(lg.entries)))
			} else {
				want2 = append(want2, uint64(len(lg.entries)))
			}
			lg.append(mustMarshal(t, s.sign(t, d, notarize.StatusTrusted, time.Now())))
		}
	}
	add(300) // crosses an entry bundle boundary

	st, err := openTestIndex(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	stop := follow(t, st, lg)
	waitProcessed(t, st, 300)
	add(20) // a partial bundle the follower must pick up later
	waitProcessed(t, st, 320)
	stop()

	st, err = openTestIndex(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Processed(); got != 320 {
		t.Fatalf("reopened index processed %d, want 320", got)
	}
	add(5)
	stop = follow(t, st, lg)
	defer stop()
	waitProcessed(t, st, 325)
	for _, tc := range []struct {
		d    notarize.Digest
		want []uint64
	}{{d1, want1}, {d2, want2}, {randomDigest(t), nil}} {
		got, err := st.Page(t.Context(), tc.d, nil, 0, math.MaxUint64, 1000)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Fatalf("Lookup(%s) = %v, %v; want %v", tc.d, got, err, tc.want)
		}
	}
	// Every entry's statement identity maps to the first index of that
	// statement (entries signed in the same second are the same statement).
	first := map[[32]byte]uint64{}
	for i, e := range lg.entries {
		id := [32]byte(indexEntry(e).ID)
		if _, ok := first[id]; !ok {
			first[id] = uint64(i)
		}
		idx, ok, err := st.indexOf(t.Context(), id)
		if err != nil || !ok || idx != first[id] {
			t.Fatalf("identity of entry %d: %d %v %v", i, idx, ok, err)
		}
	}
}

func TestIndexAheadOfLog(t *testing.T) {
	dir := t.TempDir()
	s := newTestSigner(t)
	lg := &fakeLog{}
	for range 3 {
		lg.append(mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	}
	st, err := openTestIndex(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	stop := follow(t, st, lg)
	waitProcessed(t, st, 3)
	stop()
	st, err = openTestIndex(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	f := st.Follower(sha256IDs).(*indexFollower)
	if _, err := f.step(t.Context(), &fakeLog{}); err == nil {
		t.Fatal("follower accepted a log shorter than its index")
	}
}

func TestAntispamDecorator(t *testing.T) {
	st, err := openTestIndex(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lg := &fakeLog{}
	known := []byte(`known entry`)
	lg.append([]byte(`first`), known)
	stop := follow(t, st, lg)
	defer stop()
	waitProcessed(t, st, 2)

	calls := 0
	add := st.Decorator()(func(context.Context, *tessera.Entry) tessera.IndexFuture {
		calls++
		return func() (tessera.Index, error) { return tessera.Index{Index: 99}, nil }
	})
	for _, tc := range []struct {
		name      string
		entry     []byte
		pushback  bool
		want      tessera.Index
		wantErr   error
		wantCalls int
	}{
		{"known entry is a duplicate", known, false, tessera.Index{Index: 1, IsDup: true}, nil, 0},
		{"new entry goes through", []byte(`new`), false, tessera.Index{Index: 99}, nil, 1},
		{"pushback while behind", []byte(`new`), true, tessera.Index{}, tessera.ErrPushback, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls = 0
			st.pushback.Store(tc.pushback)
			defer st.pushback.Store(false)
			got, err := add(t.Context(), tessera.NewEntry(tc.entry))()
			if !errors.Is(err, tc.wantErr) || got != tc.want || calls != tc.wantCalls {
				t.Fatalf("got %+v, %v after %d calls; want %+v, %v after %d", got, err, calls, tc.want, tc.wantErr, tc.wantCalls)
			}
		})
	}
}

func TestWaitProcessedHonoursContext(t *testing.T) {
	st, err := openTestIndex(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := st.WaitProcessed(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	st.advance(5)
	if err := st.WaitProcessed(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
}
