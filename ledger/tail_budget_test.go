package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/ledger/api"
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

// lookupFrom GETs a lookup answer at path from the local address from.
func lookupFrom(t *testing.T, tl *testLedger, from, path string) *api.LookupResponse {
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
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s from %s: %d %v %s", path, from, resp.StatusCode, err, b[:min(len(b), 200)])
	}
	lr, err := api.UnmarshalLookupAnswer(b)
	if err != nil {
		t.Fatal(err)
	}
	return lr
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
	tl.tails.writeTimeout = time.Hour

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
	tl.tails.writeTimeout, tl.tails.writeRate = 300*time.Millisecond, 1<<40

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
