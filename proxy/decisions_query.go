package proxy

import (
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// DecisionFilter selects decisions for the dashboard. Zero fields match
// everything.
type DecisionFilter struct {
	Upstream string
	Repo     string
	Verdict  string
	Signer   string
	Outcome  Outcome
	// Range is how far back from now, one of Ranges.
	Range string

	// sees, when set, is whether the viewer may see target "UPSTREAM/REPO"
	// (the policy's access rules for the authenticated user).
	sees func(target string) bool
}

// Ranges are the time ranges the dashboard offers, with the width of one
// bar of the decisions-over-time chart.
var Ranges = []struct {
	Name     string
	Span     time.Duration
	BarWidth time.Duration
}{
	{"1h", time.Hour, 5 * time.Minute},
	{"6h", 6 * time.Hour, 30 * time.Minute},
	{"24h", 24 * time.Hour, time.Hour},
	{"7d", 7 * 24 * time.Hour, 6 * time.Hour},
	{"30d", 30 * 24 * time.Hour, 24 * time.Hour},
}

// DefaultRange is the range shown when none is asked for.
const DefaultRange = "24h"

// Verdicts are the effective verdicts a decision can have.
var Verdicts = []string{
	notarize.Trusted.String(), notarize.Untrusted.String(), notarize.Unsupported.String(),
	notarize.Unknown.String(), notarize.Unverifiable.String(),
}

// maxFilterLen bounds a filter value.
const maxFilterLen = 256

// ParseDecisionFilter reads a filter from query parameters upstream, repo,
// verdict, signer, outcome and range, refusing unknown values.
func ParseDecisionFilter(q url.Values) (DecisionFilter, error) {
	f := DecisionFilter{
		Upstream: q.Get("upstream"), Repo: q.Get("repo"), Verdict: q.Get("verdict"), Signer: q.Get("signer"),
		Outcome: Outcome(q.Get("outcome")), Range: q.Get("range"),
	}
	for _, v := range []string{f.Upstream, f.Repo, f.Signer} {
		if len(v) > maxFilterLen {
			return f, fmt.Errorf("filter value longer than %d bytes", maxFilterLen)
		}
	}
	if f.Verdict != "" && !slices.Contains(Verdicts, f.Verdict) {
		return f, fmt.Errorf("verdict %q: want one of %v", clip(f.Verdict, 40), Verdicts)
	}
	if f.Outcome != "" && !slices.Contains(Outcomes, f.Outcome) {
		return f, fmt.Errorf("outcome %q: want one of %v", clip(string(f.Outcome), 40), Outcomes)
	}
	if f.Range == "" {
		f.Range = DefaultRange
	}
	if _, _, ok := rangeOf(f.Range); !ok {
		return f, fmt.Errorf("range %q: want 1h, 6h, 24h, 7d or 30d", clip(f.Range, 40))
	}
	return f, nil
}

func rangeOf(name string) (span, bar time.Duration, ok bool) {
	for _, r := range Ranges {
		if r.Name == name {
			return r.Span, r.BarWidth, true
		}
	}
	return 0, 0, false
}

// bySeries reports whether the filter needs the per-series counts (not
// only the buckets' totals).
func (f DecisionFilter) bySeries() bool {
	return f.Upstream != "" || f.Repo != "" || f.Verdict != "" || f.Signer != "" || f.sees != nil
}

func (f DecisionFilter) matchesSeries(k seriesKey) bool {
	return (f.Upstream == "" || f.Upstream == k.Upstream) && (f.Repo == "" || f.Repo == k.Repo) &&
		(f.Verdict == "" || f.Verdict == k.Verdict) && (f.Signer == "" || f.Signer == k.Signer) &&
		(f.sees == nil || (k != otherSeries && f.sees(k.Upstream+"/"+k.Repo)))
}

// visible returns ds (a clone) as sees may see it: only the targets sees
// allows, and only the decisions made there; and whether any target is
// left (sees nil: everything is visible).
func visible(ds DigestStats, sees func(string) bool) (DigestStats, bool) {
	if sees == nil {
		return ds, true
	}
	var ts []string
	bt := map[string]Counts{}
	ds.Counts = Counts{}
	for _, t := range ds.Targets {
		if sees(t) {
			ts = append(ts, t)
			c := ds.ByTarget[t]
			bt[t] = c
			ds.Allowed += c.Allowed
			ds.Denied += c.Denied
			ds.AuditOnly += c.AuditOnly
		}
	}
	ds.Targets, ds.ByTarget = ts, bt
	return ds, len(ts) > 0
}

func (f DecisionFilter) matches(d Decision) bool {
	return f.matchesSeries(seriesKey{Upstream: d.Upstream, Repo: d.Repo, Verdict: d.Verdict, Signer: d.Signer}) &&
		(f.Outcome == "" || f.Outcome == d.Outcome)
}

// Bar is one bar of the decisions-over-time chart.
type Bar struct {
	Start time.Time `json:"start"`
	// Counts are by outcome, in Outcomes order.
	Counts [3]uint64 `json:"counts"`
}

// series returns the bars of f's range ending at now, and their sum. It
// reads one precomputed bucket per decisionBucketSize of the range (and
// its series when f filters on them): its cost depends on the range, not
// on how many decisions were made.
func (s *digestStats) series(f DecisionFilter, now time.Time) ([]Bar, [3]uint64) {
	span, width, _ := rangeOf(f.Range)
	end := now.Truncate(width).Add(width)
	start := end.Add(-span)
	bars := make([]Bar, 0, span/width)
	for t := start; t.Before(end); t = t.Add(width) {
		bars = append(bars, Bar{Start: t})
	}
	var sum [3]uint64
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := start.Truncate(decisionBucketSize); t.Before(end); t = t.Add(decisionBucketSize) {
		b, ok := s.buckets[t.Unix()]
		if !ok || t.Before(start) {
			continue
		}
		i := int(t.Sub(start) / width)
		add := func(c [3]uint64) {
			for o := range c {
				if f.Outcome == "" || Outcomes[o] == f.Outcome {
					bars[i].Counts[o] += c[o]
					sum[o] += c[o]
				}
			}
		}
		if !f.bySeries() {
			add(b.Total)
			continue
		}
		for k, c := range b.Series {
			if f.matchesSeries(k) {
				add(*c)
			}
		}
	}
	return bars, sum
}

// recentMatching returns at most limit decisions matching f within its
// range, newest first, from the recent refusals (refusals) or the recent
// decisions. The rings are bounded (recentRefusals, recentDecisions).
func (s *digestStats) recentMatching(f DecisionFilter, refusals bool, limit int, now time.Time) []Decision {
	span, _, _ := rangeOf(f.Range)
	since := now.Add(-span)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.recent
	if refusals {
		r = &s.refusals
	}
	var out []Decision
	r.each(func(d Decision) bool {
		if d.Time.Before(since) {
			return true // not necessarily in time order across restarts of the clock
		}
		if f.matches(d) {
			out = append(out, d)
		}
		return len(out) < limit
	})
	return out
}

// recentOf returns at most limit recent decisions about digest d that
// sees allows, newest first.
func (s *digestStats) recentOf(d notarize.Digest, limit int, sees func(string) bool) []Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Decision
	s.recent.each(func(x Decision) bool {
		if x.Digest == d && (sees == nil || sees(x.Target())) {
			out = append(out, x)
		}
		return len(out) < limit
	})
	return out
}

// digest returns the counts of d, if sees allows one of its targets.
func (s *digestStats) digest(d notarize.Digest, sees func(string) bool) (DigestStats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ds, ok := s.byDigest[d]
	if !ok {
		return DigestStats{}, false
	}
	return visible(ds.clone(), sees)
}

// reposMatching returns the limit most decided-on repositories that f's
// upstream and repository select.
func (s *digestStats) reposMatching(f DecisionFilter, limit int) []RepoStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Upstream == "" && f.Repo == "" && f.sees == nil {
		return s.topRepos(limit)
	}
	var out []RepoStats
	if f.Upstream != "" && f.Repo != "" {
		if rs, ok := s.byRepo[f.Upstream+"/"+f.Repo]; ok && (f.sees == nil || f.sees(rs.Target())) {
			out = append(out, *rs)
		}
		return out
	}
	for _, rs := range s.topRepos(maxTrackedRepos) {
		if (f.Upstream == "" || rs.Upstream == f.Upstream) && (f.Repo == "" || rs.Repo == f.Repo) && (f.sees == nil || f.sees(rs.Target())) {
			out = append(out, rs)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

// topDigestsNow is topDigests under the lock.
func (s *digestStats) topDigestsNow(limit int, now time.Time, sees func(string) bool) []DigestStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.topDigests(limit, now, sees)
}

// recordHealth reports the decision record's bounds and writer state.
func (s *digestStats) recordHealth() (tracked, repos int, untracked, dropped uint64, writeErr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.writeErr.Load(); p != nil {
		writeErr = *p
	}
	return len(s.byDigest), len(s.byRepo), s.untracked, s.dropped.Load(), writeErr
}
