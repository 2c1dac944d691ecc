package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// stallLookup asks tl for path from the local address from (127.0.0.x)
// with a 4 KiB receive buffer, and never reads the answer.
func stallLookup(t *testing.T, tl *testLedger, from, path string) net.Conn {
	t.Helper()
	host := strings.TrimPrefix(tl.url, "http://")
	dialer := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			}); err != nil {
				return err
			}
			return serr
		},
	}
	c, err := dialer.DialContext(t.Context(), "tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitTotalHeld waits until the answer budget holds at least n bytes.
func waitTotalHeld(t *testing.T, tl *testLedger, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, _ := tl.answers.inUse("")
		if h >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the answer budget holds %d bytes, want %d", h, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// liveHeap returns the heap in use after two collections: encoding/json
// keeps the buffers of recent encodings in a sync.Pool until a second
// one, which is garbage, not what stalled readers hold.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// lookupFrom GETs a lookup answer at path from the local address from.
func lookupFrom(t *testing.T, tl *testLedger, from, path string) *api.LookupResponse {
	t.Helper()
	status, _, b := fetchFrom(t, tl, from, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s from %s: %d %s", path, from, status, b[:min(len(b), 200)])
	}
	lr, err := api.UnmarshalLookupAnswer(b)
	if err != nil {
		t.Fatal(err)
	}
	return lr
}

// fetchFrom GETs path from the local address from and returns the status,
// the Retry-After header and the body.
func fetchFrom(t *testing.T, tl *testLedger, from, path string) (int, string, []byte) {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, tl.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), b
}

// waitHeld waits until client holds want bytes of the tail budget.
func waitHeld(t *testing.T, tl *testLedger, client string, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		held, byClient := tl.tails.inUse(client)
		if byClient == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d bytes of inline tails (all: %d), want %d", client, byClient, held, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fullTailLedger returns a ledger whose current answer for alice about d
// carries a full inline tail (about api.MaxInlineTailBytes), the path of
// that answer, and the tail's size.
func fullTailLedger(t *testing.T) (*testLedger, string, int64) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a 4 MiB tail")
	}
	tl, alice, d := inlineTailLedgerN(t, api.MaxInlineBundles*layout.EntryBundleWidth, 1000)
	q := url.Values{api.QueryKeyID: {alice.keyID}, api.QueryTail: {api.TailInline}}
	path := api.PathDigests + string(d) + api.PathCurrentSuffix + "?" + q.Encode()
	lr := lookupFrom(t, tl, "127.0.0.1", path)
	if lr.Map == nil || lr.Map.Tail == nil {
		t.Fatal("the current lookup carries no inline tail")
	}
	return tl, path, int64(tailSize(lr.Map.Tail))
}

// TestInlineTailHeldBudget: the inline tails of answers not yet written
// are bounded per client (red team 7, F1): a client whose share is held by
// an answer it does not read gets its next answers without the inline
// tail (the client then fetches the tiles), another client still gets it,
// and the share comes back once the stalled answer ends.
func TestInlineTailHeldBudget(t *testing.T) {
	tl, path, size := fullTailLedger(t)
	tl.tails.client = size + api.MaxInlineTailBytes/2 // one full tail per client
	tl.answers.writeTimeout = time.Hour

	stalled := stallLookup(t, tl, "127.0.0.1", path)
	waitHeld(t, tl, "127.0.0.1", size)
	if lr := lookupFrom(t, tl, "127.0.0.1", path); lr.Map == nil || lr.Map.Tail != nil || len(lr.Entries) == 0 {
		t.Fatalf("past its share, a client's answer: map %v, entries %d; want the answer without its inline tail", lr.Map != nil, len(lr.Entries))
	}
	if lr := lookupFrom(t, tl, "127.0.0.2", path); lr.Map == nil || lr.Map.Tail == nil {
		t.Fatal("another client lost its inline tail to the first client's stalled answer")
	}
	waitHeld(t, tl, "127.0.0.2", 0) // written: given back
	_ = stalled.Close()             // the stalled write fails: the share comes back
	waitHeld(t, tl, "127.0.0.1", 0)
	if held, _ := tl.tails.inUse(""); held != 0 {
		t.Fatalf("%d bytes of inline tails still held with every answer ended", held)
	}
	if lr := lookupFrom(t, tl, "127.0.0.1", path); lr.Map == nil || lr.Map.Tail == nil {
		t.Fatal("the client's inline tail did not come back with its share")
	}
}

// TestLookupWriteDeadline: an answer whose client does not read is given
// up at its write deadline: the connection is closed and the inline
// tail's share given back, while the client still holds the connection
// open (red team 7, F1: with no deadline, it was held for as long).
func TestLookupWriteDeadline(t *testing.T) {
	tl, path, size := fullTailLedger(t)
	tl.answers.writeTimeout, tl.answers.writeRate = 300*time.Millisecond, 1<<40

	stalled := stallLookup(t, tl, "127.0.0.1", path)
	deadline := time.Now().Add(20 * time.Second)
	for { // built, then given up at the deadline
		if _, byClient := tl.tails.inUse("127.0.0.1"); byClient == 0 && time.Since(deadline.Add(-20*time.Second)) > time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled answer still holds its inline tail past its write deadline")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stalled.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, stalled)
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the ledger kept the stalled connection open past the answer's write deadline (%d bytes read)", n)
	}
	if n >= size {
		t.Fatalf("the stalled client read %d bytes, the whole answer (tail %d): the write deadline did not end it", n, size)
	}
}

// keyPageTemplate is a POSIX ledger directory seeded once with one key's
// 160 large statements (16 s under the race detector), which
// keyPageLedger copies for each test; TestMain removes it.
var keyPageTemplate struct {
	once       sync.Once
	dir, keyID string
}

// keyPageStatements is how many statements keyPageTemplate's key made.
const keyPageStatements = 160

// keyPageLedger returns a ledger whose key lookup for one key answers one
// page of about 6 MiB, and that lookup's path.
func keyPageLedger(t *testing.T) (*testLedger, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds 6 MiB answers")
	}
	keyPageTemplate.once.Do(func() {
		dir, err := os.MkdirTemp("", "ledger-keypage-")
		if err != nil {
			t.Fatal(err)
		}
		keyPageTemplate.dir = dir
		tl := startLedgerIn(t, dir, Config{})
		owner := newTestSigner(t)
		now := time.Now().Add(-time.Hour)
		var entries []*notarize.Entry
		for range keyPageStatements {
			entries = append(entries, owner.signLarge(t, randomDigest(t), notarize.StatusTrusted, now))
		}
		appendAll(t, tl, entries)
		tl.close(t)
		keyPageTemplate.keyID = owner.keyID
	})
	if keyPageTemplate.keyID == "" {
		t.Fatal("the key page ledger was not seeded (see the first test that asked for it)")
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(keyPageTemplate.dir)); err != nil {
		t.Fatal(err)
	}
	tl := startLedgerIn(t, dir, Config{})
	q := url.Values{api.QueryLimit: {fmt.Sprint(api.MaxLookupLimit)}}
	return tl, api.PathKeys + keyPageTemplate.keyID + api.PathKeyDigestsSuffix + "?" + q.Encode()
}

// getFrom is fetchFrom with the body's length.
func getFrom(t *testing.T, tl *testLedger, from, path string) (int, string, int) {
	t.Helper()
	status, retry, b := fetchFrom(t, tl, from, path)
	return status, retry, len(b)
}

// waitAnswersHeld waits until client holds a share of the answer budget
// (want true) or none (want false).
func waitAnswersHeld(t *testing.T, tl *testLedger, client string, want bool) int64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, byClient := tl.answers.inUse(client)
		if (byClient > 0) == want {
			return byClient
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d bytes of the answer budget, want held: %v", client, byClient, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAnswerHeldBudget: the answers built and not yet written are bounded
// per client (red team 15): a client whose share is held by a large answer
// it does not read is refused its next large answer (503, Retry-After)
// while its small ones still fit, another client is served, and the share
// comes back once the stalled answer ends.
func TestAnswerHeldBudget(t *testing.T) {
	t.Parallel()
	tl, path := keyPageLedger(t)
	_, _, size := getFrom(t, tl, "127.0.0.1", path)
	if size < 4<<20 {
		t.Fatalf("the key lookup answers %d bytes, want a page of several MiB", size)
	}
	tl.answers.client = int64(size) + int64(size)/2 // one page per client
	tl.answers.writeTimeout = time.Hour

	stalled := stallLookup(t, tl, "127.0.0.1", path)
	if held := waitAnswersHeld(t, tl, "127.0.0.1", true); held != int64(size) {
		t.Fatalf("the stalled answer holds %d bytes, want %d", held, size)
	}
	if status, retry, _ := getFrom(t, tl, "127.0.0.1", path); status != http.StatusServiceUnavailable || retry != "1" {
		t.Fatalf("past its share, a client's next page: %d, Retry-After %q; want 503 with Retry-After 1", status, retry)
	}
	if status, _, _ := getFrom(t, tl, "127.0.0.1", "/"+layout.CheckpointPath); status != http.StatusOK {
		t.Fatalf("a small answer within what is left of the client's share: %d", status)
	}
	if status, _, n := getFrom(t, tl, "127.0.0.2", path); status != http.StatusOK || n != size {
		t.Fatalf("another client: %d, %d bytes; want 200 and the whole page", status, n)
	}
	waitAnswersHeld(t, tl, "127.0.0.2", false) // written: given back
	_ = stalled.Close()                        // the stalled write fails: the share comes back
	waitAnswersHeld(t, tl, "127.0.0.1", false)
	if held, _ := tl.answers.inUse(""); held != 0 {
		t.Fatalf("%d bytes of answers still held with every answer ended", held)
	}
	if status, _, n := getFrom(t, tl, "127.0.0.1", path); status != http.StatusOK || n != size {
		t.Fatalf("the client's page did not come back with its share: %d, %d bytes", status, n)
	}
}

// TestAnswerWriteDeadlines: a key lookup answer and an entry bundle
// (streamed from its file) whose client does not read are given up at
// their write deadline (red team 15: the key lookup and the log's resources had none,
// and were held for as long as the connection stayed open).
func TestAnswerWriteDeadlines(t *testing.T) {
	t.Parallel()
	tl, keyPath := keyPageLedger(t)
	tl.answers.writeTimeout, tl.answers.writeRate = 300*time.Millisecond, 1<<40
	bundle := bundlePath(t, tl)
	if status, _, n := getFrom(t, tl, "127.0.0.1", bundle); status != http.StatusOK || n < 4<<20 {
		t.Fatalf("GET %s: %d, %d bytes; want a bundle of several MiB", bundle, status, n)
	}
	for _, path := range []string{keyPath, bundle} {
		t.Run(strings.TrimPrefix(path, "/")[:10], func(t *testing.T) {
			start := time.Now()
			stalled := stallLookup(t, tl, "127.0.0.3", path)
			if path == keyPath {
				waitAnswersHeld(t, tl, "127.0.0.3", true)
				waitAnswersHeld(t, tl, "127.0.0.3", false) // given up at the deadline
			} else {
				time.Sleep(time.Second) // a bundle is streamed from its file: it holds no budget
			}
			if err := stalled.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, stalled)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the ledger kept the stalled connection open past the answer's write deadline (%d bytes read)", n)
			}
			if n >= 4<<20 {
				t.Fatalf("the stalled client read %d bytes, the whole answer: the write deadline did not end it", n)
			}
			t.Logf("given up after %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

// bundlePath returns the path of the (partial) entry bundle 0 of tl.
func bundlePath(t *testing.T, tl *testLedger) string {
	t.Helper()
	return "/" + layout.EntriesPath(0, firstWidth(t, tl))
}

// tilePath returns the path of the (partial) level-0 tile 0 of tl.
func tilePath(t *testing.T, tl *testLedger) string {
	t.Helper()
	return "/" + layout.TilePath(0, 0, firstWidth(t, tl))
}

// firstWidth returns the partial width of tl's first bundle and tile (0:
// full).
func firstWidth(t *testing.T, tl *testLedger) uint8 {
	t.Helper()
	raw, err := tl.reader.ReadCheckpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	size, err := strconv.ParseUint(strings.Split(string(raw), "\n")[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return uint8(min(size, layout.EntryBundleWidth) % layout.EntryBundleWidth)
}

// TestAnswerBudgetQueuesParallelReads: a follower reads tiles (and, on
// storage without files, entry bundles) several at once; past its share
// of the answer budget its reads wait for its own earlier ones to be
// written, they are not refused (a replica would otherwise never catch
// up). The share here holds one tile's reservation at a time.
func TestAnswerBudgetQueuesParallelReads(t *testing.T) {
	t.Parallel()
	tl, _ := keyPageLedger(t)
	tile := tilePath(t, tl)
	tl.answers.client = maxTileBytes // one tile read at a time
	tl.answers.small = 0             // and no reserve
	// The client's share is held (its earlier reads being written) when
	// its next reads arrive; it is given back a moment later.
	earlier := []heldShare{{"127.0.0.6", 1}}
	if !tl.answers.takeShares(earlier, maxTileBytes) {
		t.Fatal("hold the share")
	}
	time.AfterFunc(200*time.Millisecond, func() { tl.answers.giveShares(earlier, maxTileBytes) })
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range 8 {
		wg.Go(func() { codes[i], _, _ = getFrom(t, tl, "127.0.0.6", tile) })
	}
	wg.Wait()
	for i := range 8 {
		if codes[i] != http.StatusOK {
			t.Fatalf("parallel tile read %d: %d; want 200 (codes %v)", i, codes[i], codes)
		}
	}
	if held, _ := tl.answers.inUse(""); held != 0 {
		t.Fatalf("%d bytes still held after every read was written", held)
	}
}

// TestAnswerBudgetWaitBounded: a client whose share is held (by answers
// it does not read) waits for room for a tile at most the budget's wait,
// then gets 503 with Retry-After, holding nothing more; another client
// reads the tile at once.
func TestAnswerBudgetWaitBounded(t *testing.T) {
	t.Parallel()
	tl, _ := keyPageLedger(t)
	tile := tilePath(t, tl)
	tl.answers.small = 0 // no reserve
	tl.answers.wait = 300 * time.Millisecond
	if !tl.answers.takeShares([]heldShare{{"127.0.0.7", 1}}, tl.answers.client) {
		t.Fatal("hold the client's share")
	}
	start := time.Now()
	if status, retry, _ := getFrom(t, tl, "127.0.0.7", tile); status != http.StatusServiceUnavailable || retry != "1" {
		t.Fatalf("a tile past the client's share: %d, Retry-After %q; want 503 after the wait", status, retry)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("refused after %v, before the budget's wait", waited)
	}
	if _, byClient := tl.answers.inUse("127.0.0.7"); byClient != tl.answers.client {
		t.Fatalf("the refused read left %d bytes held, want the share %d", byClient, tl.answers.client)
	}
	if status, _, _ := getFrom(t, tl, "127.0.0.8", tile); status != http.StatusOK {
		t.Fatalf("another client: %d", status)
	}
}

// TestAnswerBudgetSmallAnswersReserve: eight addresses whose five stalled
// pages each fill the answer budget's total (its bounds scaled to the
// test's page as the real ones are to the largest page: a share is five
// pages, the total eight shares) kept every other client out, even of the
// checkpoint (review of red team 15). Small answers of clients holding
// little now have a reserve past the total: the checkpoint and a tile are
// served, while a whole page is still refused (503) until the stalled
// answers end; the reserve itself is bounded per client.
func TestAnswerBudgetSmallAnswersReserve(t *testing.T) {
	t.Parallel()
	tl, path := keyPageLedger(t)
	_, _, size := getFrom(t, tl, "127.0.0.1", path)
	tl.answers.client = 5 * int64(size)
	tl.answers.total = maxHeldAnswerBytes / clientHeldAnswerBytes * tl.answers.client
	tl.answers.writeTimeout = time.Hour
	for a := range maxHeldAnswerBytes / clientHeldAnswerBytes {
		from := fmt.Sprintf("127.0.0.%d", 10+a)
		for range 5 {
			stallLookup(t, tl, from, path)
		}
		// One address's pages at a time: 40 built at once, under the race
		// detector on a loaded machine, kept the 33rd waiting past the
		// lookup gate's 2 s (ci75), and it was refused.
		waitTotalHeld(t, tl, int64(a+1)*5*int64(size))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if h, _ := tl.answers.inUse(""); h == tl.answers.total {
			break
		}
		if time.Now().After(deadline) {
			h, _ := tl.answers.inUse("")
			t.Fatalf("held %d of %d", h, tl.answers.total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range []string{"/" + layout.CheckpointPath, tilePath(t, tl)} {
		if status, retry, _ := getFrom(t, tl, "127.0.0.200", p); status != http.StatusOK {
			t.Fatalf("DoS: 8 addresses that do not read hold the whole answer budget; a client holding nothing is refused %s: %d Retry-After %q", p, status, retry)
		}
	}
	if status, retry, _ := getFrom(t, tl, "127.0.0.201", path); status != http.StatusServiceUnavailable || retry != "1" {
		t.Fatalf("a whole page past the full total: %d Retry-After %q; want 503 (the reserve is for small answers)", status, retry)
	}
	if held, _ := tl.answers.inUse(""); held > tl.answers.total+tl.answers.reserve {
		t.Fatalf("%d bytes held, over the total and the reserve %d", held, tl.answers.total+tl.answers.reserve)
	}
}

// TestHeldBudgetReserveBounds: the reserve past the total takes only small
// answers of clients holding little, and is bounded in all.
func TestHeldBudgetReserveBounds(t *testing.T) {
	b := &heldBudget{total: 100, client: 1000, reserve: 10, small: 4, smallClient: 6}
	one := func(name string) []heldShare { return []heldShare{{name, 1}} }
	if !b.takeShares(one("big"), 100) {
		t.Fatal("the total")
	}
	if b.takeShares(one("x"), 5) {
		t.Fatal("an answer over small took the reserve")
	}
	if !b.takeShares(one("x"), 4) || b.takeShares(one("x"), 4) {
		t.Fatal("a client holding little: one small answer, not two past smallClient")
	}
	if !b.takeShares(one("y"), 4) || b.takeShares(one("z"), 4) {
		t.Fatal("the reserve: 10 bytes in all")
	}
	if held, _ := b.inUse(""); held != 108 {
		t.Fatalf("held %d, want 108", held)
	}
}

// TestHeldBudgetWaitersNotExhaustedByFew: eight clients with eight reads
// each waiting for room that will not come leave places for another
// client's read to wait (review of red team 15: 64 waiting places were
// filled by eight addresses, and every other read was refused at once).
func TestHeldBudgetWaitersNotExhaustedByFew(t *testing.T) {
	b := &heldBudget{total: 10, client: 10}
	if !b.takeShares([]heldShare{{"holder", 1}}, 10) {
		t.Fatal("fill")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for c := range 8 {
		for range 8 {
			wg.Go(func() { b.waitShares(ctx, []heldShare{{fmt.Sprint("attacker", c), 1}}, 5, time.Minute) })
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b.mu.Lock()
		n := b.nWait
		b.mu.Unlock()
		if n == 64 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiting, want 64", n)
		}
	}
	start := time.Now()
	if b.waitShares(t.Context(), []heldShare{{"honest", 1}}, 5, 200*time.Millisecond) {
		t.Fatal("took room that is not there")
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Fatalf("refused after %v: no place to wait left by 8 clients", waited)
	}
	cancel()
	wg.Wait()
}

// TestEntryBundlesStreamed: on POSIX storage, entry bundles are streamed
// from their files, byte for byte what bundleBytes reads (a full bundle,
// a partial one from its own file or cut from the full bundle's), and
// hold none of the answer budget: a reader that stalls on one holds no
// budget, and with the budget's total taken by others, a client holding
// nothing still gets a whole bundle.
func TestEntryBundlesStreamed(t *testing.T) {
	t.Parallel()
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	var entries []*notarize.Entry
	for range 300 {
		entries = append(entries, s.sign(t, randomDigest(t), notarize.StatusTrusted, now))
	}
	appendAll(t, tl, entries)
	for _, c := range []struct {
		index uint64
		p     uint8
	}{{0, 0}, {0, 10}, {0, 100}, {0, 255}, {1, 44}} {
		want, err := tl.bundleBytes(t.Context(), c.index, c.p)
		if err != nil {
			t.Fatalf("bundleBytes(%d, %d): %v", c.index, c.p, err)
		}
		status, _, got := fetchFrom(t, tl, "127.0.0.1", "/"+layout.EntriesPath(c.index, c.p))
		if status != http.StatusOK || !bytes.Equal(got, want) {
			t.Fatalf("GET bundle %d.p/%d: %d, %d bytes; want 200 and bundleBytes' %d", c.index, c.p, status, len(got), len(want))
		}
	}
	// Beyond the log's 300 entries. Not 1.p/10: Tessera writes it when a
	// batch ends at entry 266, which a loaded machine's batch age may cut
	// (ci110), and then it is served, as it should be.
	for _, p := range []string{"/" + layout.EntriesPath(1, 100), "/" + layout.EntriesPath(1, 45), "/" + layout.EntriesPath(2, 0)} {
		if status, _, _ := fetchFrom(t, tl, "127.0.0.1", p); status != http.StatusNotFound {
			t.Fatalf("GET %s (beyond the log): %d, want 404", p, status)
		}
	}

	// A partial file that does not hold exactly its entries (which Tessera
	// never writes) is cut, or refused, as bundleBytes does (review).
	part := filepath.Join(tl.dir, "log", layout.EntriesPath(1, 44))
	raw, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"a trailing entry": append(bytes.Clone(raw), 0, 3, 'x', 'y', 'z'),
		"a trailing byte":  append(bytes.Clone(raw), 0),
		"truncated":        raw[:len(raw)-1],
	} {
		if err := os.WriteFile(part, b, 0o600); err != nil {
			t.Fatal(err)
		}
		want, werr := tl.bundleBytes(t.Context(), 1, 44)
		status, _, got := fetchFrom(t, tl, "127.0.0.1", "/"+layout.EntriesPath(1, 44))
		switch {
		case werr != nil && status != http.StatusNotFound:
			t.Fatalf("partial file with %s: %d, want 404 as bundleBytes (%v)", name, status, werr)
		case werr == nil && (status != http.StatusOK || !bytes.Equal(got, want)):
			t.Fatalf("partial file with %s: %d, %d bytes; want 200 and bundleBytes' %d", name, status, len(got), len(want))
		}
	}
	if err := os.WriteFile(part, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	big, _ := keyPageLedger(t)
	bundle := bundlePath(t, big)
	big.answers.total = 1 // taken by anything
	big.answers.writeTimeout = time.Hour
	stalled := stallLookup(t, big, "127.0.0.40", bundle)
	defer stalled.Close()
	time.Sleep(200 * time.Millisecond)
	if held, _ := big.answers.inUse(""); held != 0 {
		t.Fatalf("a stalled bundle reader holds %d bytes of the answer budget", held)
	}
	if !big.answers.takeShares([]heldShare{{"other", 1}}, 1) {
		t.Fatal("fill the total")
	}
	if status, _, n := getFrom(t, big, "127.0.0.41", bundle); status != http.StatusOK || n < 4<<20 {
		t.Fatalf("a bundle with the budget's total taken: %d, %d bytes; want 200 and the bundle", status, n)
	}
}

// TestBundleStreamsBoundedPerClient: streamed bundles hold no budget, but
// one client streams at most clientBundleStreams at once (review: 300
// stalled streams from one address held 300 files and 600 goroutines);
// another client is not affected.
func TestBundleStreamsBoundedPerClient(t *testing.T) {
	t.Parallel()
	tl, _ := keyPageLedger(t)
	bundle := bundlePath(t, tl)
	tl.answers.writeTimeout = time.Hour
	for range clientBundleStreams + 4 {
		stallLookup(t, tl, "127.0.0.50", bundle)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, n := tl.streams.inUse("127.0.0.50"); n == clientBundleStreams {
			break
		}
		if time.Now().After(deadline) {
			_, n := tl.streams.inUse("127.0.0.50")
			t.Fatalf("%d streams held by the stalling client, want %d", n, clientBundleStreams)
		}
	}
	if status, retry, _ := getFrom(t, tl, "127.0.0.50", bundle); status != http.StatusServiceUnavailable || retry != "1" {
		t.Fatalf("a bundle past the client's streams: %d Retry-After %q; want 503", status, retry)
	}
	if status, _, n := getFrom(t, tl, "127.0.0.51", bundle); status != http.StatusOK || n < 4<<20 {
		t.Fatalf("another client: %d, %d bytes", status, n)
	}
}
