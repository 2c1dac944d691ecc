package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"
)

// awaiter releases each submission once a published checkpoint covers its
// entry. Unlike Tessera's PublicationAwaiter, whose loop reads the
// checkpoint every poll period for the life of the log, it reads the
// checkpoint only while a submission waits: an idle ledger does no work
// here. One loop serves all waiters, so a burst of submissions reads the
// checkpoint once per poll, not once per submission. It is safe for
// concurrent use.
type awaiter struct {
	ctx  context.Context // the ledger's background context: its end stops the loop and fails waiters
	read func(context.Context) ([]byte, error)
	poll time.Duration

	mu      sync.Mutex
	waiters int
	running bool          // the poll loop runs
	gen     uint64        // polls completed
	cp      []byte        // the newest checkpoint read, nil before the first
	size    uint64        // its tree size
	err     error         // the error of the last poll, nil if it succeeded
	errGen  uint64        // the poll that set err
	changed chan struct{} // closed and replaced after every poll
}

// newAwaiter returns an awaiter that reads checkpoints with read every poll
// while a submission waits, until ctx is done.
func newAwaiter(ctx context.Context, read func(context.Context) ([]byte, error), poll time.Duration) *awaiter {
	return &awaiter{ctx: ctx, read: read, poll: poll, changed: make(chan struct{})}
}

// Await resolves future, then blocks until a checkpoint covering its index
// is published, and returns the index and that checkpoint. It returns an
// error if future fails, ctx is done, the ledger stops, or a checkpoint
// read after the call began fails (other than not existing yet).
func (a *awaiter) Await(ctx context.Context, future tessera.IndexFuture) (tessera.Index, []byte, error) {
	i, err := future()
	if err != nil {
		return i, nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	start := a.gen
	a.waiters++
	defer func() { a.waiters-- }()
	if !a.running {
		a.running = true
		go a.loop()
	}
	for {
		switch {
		case a.cp != nil && a.size > i.Index:
			return i, a.cp, nil
		case a.err != nil && a.errGen > start:
			return i, nil, a.err
		}
		ch := a.changed
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			a.mu.Lock()
			return i, nil, ctx.Err()
		case <-ch:
		}
		a.mu.Lock()
	}
}

// loop reads the checkpoint every poll until no submission waits or the
// ledger stops.
func (a *awaiter) loop() {
	t := time.NewTimer(0) // the first read at once: a waiter just came
	defer t.Stop()
	for {
		var cp []byte
		var size uint64
		var err error
		select {
		case <-a.ctx.Done():
			err = a.ctx.Err()
		case <-t.C:
			cp, err = a.read(a.ctx)
			if errors.Is(err, os.ErrNotExist) {
				cp, err = nil, nil // no checkpoint yet: not an error, nothing new
			} else if err == nil {
				size, err = parseCheckpointSize(cp)
			}
			t.Reset(a.poll)
		}
		// The ledger's end is read once: the loop fails its waiters and
		// stops on the same reading. (Read twice, an end between the
		// two stopped the loop after a good poll, leaving its waiters
		// unreleased for ever.)
		ended := a.ctx.Err()
		if ended != nil {
			err = ended // the ledger stops: fail every waiter
		}
		a.mu.Lock()
		a.gen++
		if err != nil {
			a.err, a.errGen = err, a.gen
		} else if cp != nil && size >= a.size {
			a.cp, a.size, a.err = cp, size, nil
		}
		close(a.changed)
		a.changed = make(chan struct{})
		stop := a.waiters == 0 || ended != nil
		if stop {
			a.running = false
		}
		a.mu.Unlock()
		if stop {
			return
		}
	}
}

// parseCheckpointSize returns the tree size of a checkpoint note, whose second
// line is the size (C2SP tlog-checkpoint). The note is not verified here:
// the ledger reads its own storage, which Tessera wrote.
func parseCheckpointSize(cp []byte) (uint64, error) {
	lines := bytes.SplitN(cp, []byte("\n"), 3)
	if len(lines) < 3 {
		return 0, errors.New("parse checkpoint: fewer than three lines")
	}
	size, err := strconv.ParseUint(string(lines[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse checkpoint size: %w", err)
	}
	return size, nil
}
