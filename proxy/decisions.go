package proxy

import (
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// Retention of the decision record (digestStats, persisted in
// DataDir/decisions.db). Every bound is a constant so that the file never
// grows with the traffic:
//
//   - per-digest counters: at most Config.MaxTrackedDigests digests
//     (decisions about more are counted as "untracked"), each dropped once
//     not decided on for decisionRetention;
//   - per-repository counters: at most maxTrackedRepos, dropped the same way;
//   - decisions over time: one bucket per decisionBucketSize, kept for
//     decisionRetention, each with at most maxSeriesPerBucket distinct
//     (upstream, repository, verdict, signer) series (more are counted in
//     the bucket's total and in an "(other)" series);
//   - the last recentRefusals refusals, whole (reason, signer, reference);
//     the last recentDecisions decisions of any outcome are kept in memory
//     only (decisions_store.go).
const (
	decisionRetention  = 30 * 24 * time.Hour
	decisionBucketSize = 5 * time.Minute
	maxTrackedRepos    = 10_000
	maxSeriesPerBucket = 2_000
	recentDecisions    = 10_000
	recentRefusals     = 1_000
	// decisionQueue is the buffer of refusals between the request path and
	// the writer: when it is full, a refusal is counted in memory but not
	// written to the recent refusals (it is counted as dropped), so
	// recording never blocks a pull.
	decisionQueue = 8192
	// decisionBatch and decisionFlushEvery bound a write transaction.
	decisionBatch      = 1024
	decisionFlushEvery = 250 * time.Millisecond
	// decisionSweepEvery is how often expired counters are removed.
	decisionSweepEvery = time.Hour
	// topCacheFor bounds how often the most decided digests are sorted.
	topCacheFor  = 2 * time.Second
	maxReasonLen = 512
	maxRefLen    = 256
)

// Outcome is what became of a manifest request: served because trusted,
// refused, or served only because the rule audits (or is off).
type Outcome string

// The outcomes, in the order of Counts.
const (
	OutcomeAllowed Outcome = "allowed"
	OutcomeRefused Outcome = "refused"
	OutcomeAudit   Outcome = "audit"
)

// Outcomes lists the outcomes in display order.
var Outcomes = []Outcome{OutcomeAllowed, OutcomeRefused, OutcomeAudit}

func (o Outcome) index() int {
	switch o {
	case OutcomeRefused:
		return 1
	case OutcomeAudit:
		return 2
	}
	return 0
}

// Decision is one manifest decision as the proxy records it.
type Decision struct {
	Time      time.Time       `json:"time"`
	Upstream  string          `json:"upstream"`
	Repo      string          `json:"repo"`
	Reference string          `json:"reference"`
	Digest    notarize.Digest `json:"digest"`
	// Verdict is the effective verdict (TRUSTED, UNTRUSTED, …).
	Verdict string  `json:"verdict"`
	Outcome Outcome `json:"outcome"`
	Mode    string  `json:"mode"`
	// Signer is the policy name of the signer whose statement decided, "" when none did.
	Signer string `json:"signer,omitempty"`
	Reason string `json:"reason"`
}

// Target is "UPSTREAM/REPO".
func (d Decision) Target() string { return d.Upstream + "/" + d.Repo }

// newDecision is the record of evaluation ev of digest d, asked as ref at t.
func newDecision(t target, ref string, d notarize.Digest, ev notarize.Evaluation, at time.Time) Decision {
	out := OutcomeAllowed
	switch {
	case !ev.Allow:
		out = OutcomeRefused
	case ev.Verdict != notarize.Trusted:
		out = OutcomeAudit
	}
	return Decision{
		Time: at, Upstream: t.up.Name(), Repo: t.repo, Reference: clip(ref, maxRefLen), Digest: d,
		Verdict: ev.Verdict.String(), Outcome: out, Mode: string(ev.Mode), Signer: ev.Signer(), Reason: clip(ev.Reason(), maxReasonLen),
	}
}

// Counts counts decisions by outcome. Allowed counts every served answer,
// AuditOnly those of them served although not trusted (audit or off).
type Counts struct {
	Allowed   uint64 `json:"allowed"`
	Denied    uint64 `json:"denied"`
	AuditOnly uint64 `json:"auditOnly"`
}

// Total is the number of decisions counted.
func (c Counts) Total() uint64 { return c.Allowed + c.Denied }

func (c *Counts) add(o Outcome) {
	switch o {
	case OutcomeRefused:
		c.Denied++
	case OutcomeAudit:
		c.Allowed++
		c.AuditOnly++
	default:
		c.Allowed++
	}
}

// RepoStats counts the decisions about one repository of one upstream.
type RepoStats struct {
	Upstream string `json:"upstream"`
	Repo     string `json:"repo"`
	Counts
	// Verdicts counts the decisions by effective verdict.
	Verdicts    map[string]uint64 `json:"verdicts,omitempty"`
	LastDigest  notarize.Digest   `json:"lastDigest"`
	LastVerdict string            `json:"lastVerdict"`
	LastSigner  string            `json:"lastSigner,omitempty"`
	LastReason  string            `json:"lastReason,omitempty"`
	LastSeen    time.Time         `json:"lastSeen"`
}

// Target is "UPSTREAM/REPO".
func (r RepoStats) Target() string { return r.Upstream + "/" + r.Repo }

// seriesKey names one series of decisions over time.
type seriesKey struct {
	Upstream string `json:"u"`
	Repo     string `json:"r"`
	Verdict  string `json:"v"`
	Signer   string `json:"s,omitempty"`
}

// otherSeries collects what does not fit in a bucket's series.
var otherSeries = seriesKey{Upstream: "(other)", Repo: "(other)", Verdict: "(other)"}

// timeBucket counts the decisions of one decisionBucketSize interval by
// outcome, in total and per series.
type timeBucket struct {
	Start  int64                    // unix seconds
	Total  [3]uint64                // by Outcome.index
	Series map[seriesKey]*[3]uint64 // bounded by maxSeriesPerBucket (+ otherSeries)
}

func (b *timeBucket) add(d Decision) {
	i := d.Outcome.index()
	b.Total[i]++
	k := seriesKey{Upstream: d.Upstream, Repo: d.Repo, Verdict: d.Verdict, Signer: d.Signer}
	c, ok := b.Series[k]
	if !ok {
		if len(b.Series) >= maxSeriesPerBucket {
			k = otherSeries
			if c, ok = b.Series[k]; !ok {
				c = new([3]uint64)
				b.Series[k] = c
			}
		} else {
			c = new([3]uint64)
			b.Series[k] = c
		}
	}
	c[i]++
}

// ring keeps the last len(buf) decisions.
type ring struct {
	buf  []Decision
	next int
	n    int
	seq  uint64 // decisions ever added (the next one's sequence number)
}

func newRing(n int) ring { return ring{buf: make([]Decision, n)} }

func (r *ring) add(d Decision) {
	r.buf[r.next] = d
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
	r.seq++
}

// each calls f on the decisions, newest first, until f returns false.
func (r *ring) each(f func(Decision) bool) {
	for i := 1; i <= r.n; i++ {
		if !f(r.buf[(r.next-i+len(r.buf))%len(r.buf)]) {
			return
		}
	}
}
