//go:build !notarize_verifyonly

package plugin

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// judge asks one ledger client about many digests, jobs at a time.
type judge struct {
	client  *ledgerclient.Client // nil when there is nothing to ask
	signers []auditSigner
	// revokers may revoke any accepted signer's key besides the key
	// itself (--revoker, as verify's).
	revokers []string
	jobs     int // lookups under way at once; 0 means auditJobs

	mu         sync.Mutex
	checkpoint uint64 // the largest verified checkpoint size seen
}

// judgement is the verdict about one digest.
type judgement struct {
	verdict string
	reason  string
	signers []auditSignerStatus
}

// judgeAll judges every subject that has a digest and no verdict yet, each
// distinct digest once.
func (j *judge) judgeAll(ctx context.Context, subjects []auditSubject, prog *progress) {
	at := map[string][]int{}
	var digests []string
	for i, s := range subjects {
		if s.Verdict != "" || s.Digest == "" {
			continue
		}
		if _, ok := at[s.Digest]; !ok {
			digests = append(digests, s.Digest)
		}
		at[s.Digest] = append(at[s.Digest], i)
	}
	results := make([]judgement, len(digests))
	prog.start("judging", len(digests))
	forEachBounded(len(digests), j.jobs, func(i int) {
		results[i] = j.judgeDigest(ctx, notarize.Digest(digests[i]))
		prog.add(1)
	})
	for i, d := range digests {
		for _, k := range at[d] {
			subjects[k].Verdict, subjects[k].Reason, subjects[k].Signers = results[i].verdict, results[i].reason, results[i].signers
		}
	}
}

// rejudge judges again the subjects about the signed digests.
func (j *judge) rejudge(ctx context.Context, subjects []auditSubject, signed []signOutput, prog *progress) {
	again := map[string]bool{}
	for _, so := range signed {
		again[so.Digest] = true
	}
	for i := range subjects {
		if again[subjects[i].Digest] {
			subjects[i].Verdict = ""
		}
	}
	j.judgeAll(ctx, subjects, prog)
	prog.finish()
}

// forEachBounded calls fn(0..n-1), jobs calls at a time (auditJobs when jobs
// is 0), and returns when all have returned.
func forEachBounded(n, jobs int, fn func(i int)) {
	if jobs <= 0 {
		jobs = auditJobs
	}
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// judgeDigest asks the ledger for the accepted signers' current statements
// about d and decides as verify does. A failure is the subject's ERROR, never
// a verdict.
func (j *judge) judgeDigest(ctx context.Context, d notarize.Digest) judgement {
	if len(j.signers) == 0 {
		return judgement{
			verdict: notarize.Unknown.String(),
			reason:  "no accepted signers: the local key store has no keys; pass --signer NAME|PATH, or import a signer's public key into the key store",
			signers: []auditSignerStatus{},
		}
	}
	if j.client == nil {
		return judgement{verdict: statusError, reason: "no ledger client", signers: []auditSignerStatus{}}
	}
	ids := make([]string, len(j.signers))
	names := map[string]string{}
	for i, s := range j.signers {
		ids[i] = s.KeyID
		names[s.KeyID] = s.Name
	}
	// With the keys' revocations, as verify (keyrevoke.go): a stolen key's
	// later statements do not count.
	res, revs, err := j.client.CurrentWithRevocations(ctx, d, ids, revokerMap(ids, j.revokers))
	if err != nil {
		return judgement{verdict: statusError, reason: fmt.Sprintf("could not verify: %v", err), signers: []auditSignerStatus{}}
	}
	j.mu.Lock()
	j.checkpoint = max(j.checkpoint, res.Checkpoint.Size)
	j.mu.Unlock()
	dec := notarize.DecideWithRevocations(res.Records, d, ids, revs)
	out := judgement{verdict: dec.Verdict.String(), signers: make([]auditSignerStatus, 0, len(j.signers))}
	for _, s := range j.signers {
		st := auditSignerStatus{Name: s.Name, KeyID: s.KeyID, Status: statusNone}
		for _, ss := range dec.Signers {
			if ss.KeyID == s.KeyID {
				ts, idx := ss.Record.Statement.Predicate.Timestamp.UTC(), ss.Record.Index
				st.Status, st.Timestamp, st.LogIndex = outputStatus(ss.Record.Status()), &ts, &idx
			}
		}
		out.signers = append(out.signers, st)
	}
	if dec.Deciding != nil || len(dec.Revoked) > 0 {
		out.reason = dec.Reason(func(id string) string { return names[id] })
	} else {
		n := make([]string, len(j.signers))
		for i, s := range j.signers {
			n[i] = s.Name
		}
		out.reason = fmt.Sprintf("no statement about %s by an accepted signer (%s)", d, strings.Join(n, ", "))
	}
	return out
}

func (j *judge) checkpointSize() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.checkpoint
}

// progressDelay is how long a phase runs before its progress bar shows.
const progressDelay = time.Second

// progressWidth is the number of cells of the bar.
const progressWidth = 30

// progress draws "\r[=====     ] 12/40 judging" on stderr while a phase that
// has run longer than progressDelay is under way, on a terminal only.
type progress struct {
	w    io.Writer
	tty  bool
	done atomic.Int64

	mu      sync.Mutex
	stop    chan struct{}
	stopped chan struct{}
}

func newProgress(w io.Writer, tty bool) *progress { return &progress{w: w, tty: tty} }

// start begins a phase of total steps; the previous one, if any, ends.
func (p *progress) start(label string, total int) {
	p.finish()
	p.done.Store(0)
	if !p.tty || total == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go p.run(label, total, p.stop, p.stopped)
}

func (p *progress) run(label string, total int, stop, stopped chan struct{}) {
	defer close(stopped)
	delay := time.NewTimer(progressDelay)
	defer delay.Stop()
	select {
	case <-stop:
		return
	case <-delay.C:
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		line := renderProgress(int(p.done.Load()), total, label)
		if line != last {
			fmt.Fprint(p.w, line)
			last = line
		}
		select {
		case <-stop:
			// Clear the line for what comes next.
			fmt.Fprint(p.w, "\r"+strings.Repeat(" ", len(line))+"\r")
			return
		case <-tick.C:
		}
	}
}

// add counts n more steps done.
func (p *progress) add(n int) { p.done.Add(int64(n)) }

// finish ends the phase and clears the bar if it was drawn.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.stopped
	p.stop, p.stopped = nil, nil
}

// renderProgress returns the bar for done of total steps.
func renderProgress(done, total int, label string) string {
	done = min(max(done, 0), total)
	filled := 0
	if total > 0 {
		filled = done * progressWidth / total
	}
	return fmt.Sprintf("\r[%s%s] %d/%d %s", strings.Repeat("=", filled), strings.Repeat(" ", progressWidth-filled), done, total, label)
}
