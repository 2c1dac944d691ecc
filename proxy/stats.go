package proxy

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// maxTargetsPerDigest bounds the targets remembered per digest.
const maxTargetsPerDigest = 8

// DigestStats counts the verifications of one digest by this proxy.
type DigestStats struct {
	Digest notarize.Digest `json:"digest"`
	Counts
	LastVerdict string    `json:"lastVerdict"`
	LastSigner  string    `json:"lastSigner,omitempty"`
	LastReason  string    `json:"lastReason,omitempty"`
	LastSeen    time.Time `json:"lastSeen"`
	Targets     []string  `json:"targets"`
	// ByTarget counts the decisions at each of Targets ("UPSTREAM/REPO");
	// decisions at targets past maxTargetsPerDigest are in Counts only.
	ByTarget map[string]Counts `json:"byTarget,omitempty"`
}

func (ds DigestStats) clone() DigestStats {
	ds.Targets = append([]string(nil), ds.Targets...)
	if ds.ByTarget != nil {
		bt := make(map[string]Counts, len(ds.ByTarget))
		for k, v := range ds.ByTarget {
			bt[k] = v
		}
		ds.ByTarget = bt
	}
	return ds
}

// Stats is the body of GET /notarize/v1/stats.
type Stats struct {
	// Decisions counts decisions by effective verdict.
	Decisions map[string]uint64 `json:"decisions"`
	// Tracked is the number of digests counted; Untracked counts decisions
	// about digests beyond the bound.
	Tracked   int    `json:"tracked"`
	Untracked uint64 `json:"untracked"`
	// Dropped counts refusals counted in memory but not written to the
	// decision record's recent refusals because its queue was full.
	Dropped uint64 `json:"dropped"`
	// Replica is the replica's state, when the trust source reports one.
	Replica *ReplicaStats `json:"replica,omitempty"`
	// Digests are the most verified digests (or the one asked for).
	Digests []DigestStats `json:"digests"`
	// Repositories are the most decided-on repositories (or the one asked
	// for with ?repo=UPSTREAM/REPO).
	Repositories []RepoStats `json:"repositories"`
}

// ReplicaStats is the replica's state in Stats.
type ReplicaStats struct {
	Size       uint64    `json:"size"`
	Records    uint64    `json:"records"`
	BadEntries uint64    `json:"badEntries"`
	VerifiedAt time.Time `json:"verifiedAt"`
	LastError  string    `json:"lastError,omitempty"`
}

// digestStats is the proxy's record of its decisions: counters per digest
// and per repository, decisions over time, and the recent decisions and
// refusals (bounds in decisions.go). Everything is kept in memory, where
// the dashboard reads it without scanning the decisions, and written off
// the request path to DataDir/decisions.db by one writer goroutine
// (decisions_store.go), from which it is loaded on start.
type digestStats struct {
	mu        sync.Mutex
	max       int
	byDigest  map[notarize.Digest]*DigestStats
	byRepo    map[string]*RepoStats
	buckets   map[int64]*timeBucket
	recent    ring
	refusals  ring
	verdicts  map[string]uint64
	untracked uint64
	// off keeps only the verdict and digest counts (the benchmarks' "off").
	off bool

	top    []*DigestStats // sorted by total, recomputed at most every topCacheFor
	topAt  time.Time
	topLen int

	// The writer (nil db: memory only).
	db      *bolt.DB
	queue   chan Decision
	closed  bool
	done    chan struct{}
	dropped atomic.Uint64
	// dirty* are what the writer has to write at its next flush (under mu).
	dirtyDigests map[notarize.Digest]bool
	dirtyRepos   map[string]bool
	dirtyBuckets map[int64]bool
	// writeErr is the writer's last failure ("" after a success), for the dashboard.
	writeErr atomic.Pointer[string]
}

func newDigestStats(max int) *digestStats {
	return &digestStats{
		max: max, byDigest: map[notarize.Digest]*DigestStats{}, byRepo: map[string]*RepoStats{},
		buckets: map[int64]*timeBucket{}, recent: newRing(recentDecisions), refusals: newRing(recentRefusals),
		verdicts: map[string]uint64{}, dirtyDigests: map[notarize.Digest]bool{}, dirtyRepos: map[string]bool{},
		dirtyBuckets: map[int64]bool{},
	}
}

// observe counts decision d. It never blocks on I/O: the counters it
// changed are marked for the writer's next flush, and a refusal goes to the
// writer's queue, or is dropped (and counted) when the queue is full.
func (s *digestStats) observe(d Decision) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verdicts[d.Verdict]++
	s.observeDigest(d)
	if s.off {
		return
	}
	s.observeRepo(d)
	start := d.Time.Truncate(decisionBucketSize).Unix()
	b, ok := s.buckets[start]
	if !ok {
		b = &timeBucket{Start: start, Series: map[seriesKey]*[3]uint64{}}
		s.buckets[start] = b
	}
	b.add(d)
	s.recent.add(d)
	if d.Outcome == OutcomeRefused {
		s.refusals.add(d)
	}
	if s.db == nil || s.closed {
		return
	}
	if _, ok := s.byDigest[d.Digest]; ok {
		s.dirtyDigests[d.Digest] = true
	}
	if _, ok := s.byRepo[d.Target()]; ok {
		s.dirtyRepos[d.Target()] = true
	}
	s.dirtyBuckets[start] = true
	if d.Outcome != OutcomeRefused {
		return
	}
	select {
	case s.queue <- d:
	default:
		s.dropped.Add(1)
	}
}

func (s *digestStats) observeDigest(d Decision) {
	ds, ok := s.byDigest[d.Digest]
	if !ok {
		if len(s.byDigest) >= s.max {
			s.untracked++
			return
		}
		ds = &DigestStats{Digest: d.Digest}
		s.byDigest[d.Digest] = ds
	}
	ds.Counts.add(d.Outcome)
	ds.LastVerdict, ds.LastSigner, ds.LastReason, ds.LastSeen = d.Verdict, d.Signer, d.Reason, d.Time
	target := d.Target()
	if !slices.Contains(ds.Targets, target) {
		if len(ds.Targets) >= maxTargetsPerDigest {
			return
		}
		ds.Targets = append(ds.Targets, target)
	}
	if ds.ByTarget == nil {
		ds.ByTarget = map[string]Counts{}
	}
	c := ds.ByTarget[target]
	c.add(d.Outcome)
	ds.ByTarget[target] = c
}

func (s *digestStats) observeRepo(d Decision) {
	k := d.Target()
	rs, ok := s.byRepo[k]
	if !ok {
		if len(s.byRepo) >= maxTrackedRepos {
			return
		}
		rs = &RepoStats{Upstream: d.Upstream, Repo: d.Repo}
		s.byRepo[k] = rs
	}
	rs.Counts.add(d.Outcome)
	if rs.Verdicts == nil {
		rs.Verdicts = map[string]uint64{}
	}
	rs.Verdicts[d.Verdict]++
	rs.LastDigest, rs.LastVerdict, rs.LastSigner, rs.LastReason, rs.LastSeen = d.Digest, d.Verdict, d.Signer, d.Reason, d.Time
}

// topDigests returns the limit most decided-on digests that sees allows
// (with only the targets it allows). The order is computed at most every
// topCacheFor (or when the set changed size), so a page view does not sort
// every digest.
func (s *digestStats) topDigests(limit int, now time.Time, sees func(string) bool) []DigestStats {
	if s.top == nil || now.Sub(s.topAt) > topCacheFor || s.topLen != len(s.byDigest) || now.Before(s.topAt) {
		all := make([]*DigestStats, 0, len(s.byDigest))
		for _, ds := range s.byDigest {
			all = append(all, ds)
		}
		sort.Slice(all, func(i, j int) bool {
			ti, tj := all[i].Total(), all[j].Total()
			if ti != tj {
				return ti > tj
			}
			return all[i].Digest < all[j].Digest
		})
		s.top, s.topAt, s.topLen = all, now, len(s.byDigest)
	}
	out := make([]DigestStats, 0, min(limit, len(s.top)))
	for _, ds := range s.top {
		if len(out) == limit {
			break
		}
		if v, ok := visible(ds.clone(), sees); ok {
			out = append(out, v)
		}
	}
	return out
}

// topRepos returns the limit most decided-on repositories (bounded by
// maxTrackedRepos).
func (s *digestStats) topRepos(limit int) []RepoStats {
	all := make([]RepoStats, 0, len(s.byRepo))
	for _, rs := range s.byRepo {
		all = append(all, *rs)
	}
	sort.Slice(all, func(i, j int) bool {
		ti, tj := all[i].Total(), all[j].Total()
		if ti != tj {
			return ti > tj
		}
		return all[i].Target() < all[j].Target()
	})
	return all[:min(limit, len(all))]
}

// snapshot returns the counts: of digest d when given, else of the limit
// most verified digests; of repository repo ("UPSTREAM/REPO") when given,
// else of the limit most decided-on repositories. Only digests and
// repositories that sees allows are named (sees nil: all).
func (s *digestStats) snapshot(d notarize.Digest, repo string, limit int, sees func(string) bool) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Decisions: map[string]uint64{}, Tracked: len(s.byDigest), Untracked: s.untracked, Dropped: s.dropped.Load(),
		Digests: []DigestStats{}, Repositories: []RepoStats{}}
	if sees == nil {
		for k, v := range s.verdicts {
			st.Decisions[k] = v
		}
	} else {
		// A viewer restricted by the access rules is told only about what
		// was decided at repositories it may pull.
		st.Tracked, st.Untracked, st.Dropped = 0, 0, 0
		for _, rs := range s.byRepo {
			if sees(rs.Target()) {
				for k, v := range rs.Verdicts {
					st.Decisions[k] += v
				}
			}
		}
	}
	switch {
	case d != "":
		if ds, ok := s.byDigest[d]; ok {
			if v, ok := visible(ds.clone(), sees); ok {
				st.Digests = append(st.Digests, v)
			}
		}
	case repo == "":
		st.Digests = s.topDigests(limit, time.Now(), sees)
	}
	switch {
	case repo != "":
		if rs, ok := s.byRepo[repo]; ok && (sees == nil || sees(repo)) {
			st.Repositories = append(st.Repositories, *rs)
		}
	case d == "":
		for _, rs := range s.topRepos(len(s.byRepo)) {
			if len(st.Repositories) == limit {
				break
			}
			if sees == nil || sees(rs.Target()) {
				st.Repositories = append(st.Repositories, rs)
			}
		}
	}
	return st
}

// serveStats answers GET /notarize/v1/stats[?digest=sha256:…][&repo=UPSTREAM/REPO][&limit=N].
func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var d notarize.Digest
	if v := q.Get("digest"); v != "" {
		pd, err := notarize.ParseDigest(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d = pd
	}
	repo := q.Get("repo")
	if len(repo) > 512 {
		http.Error(w, "repo: too long", http.StatusBadRequest)
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 10000 {
			http.Error(w, "limit: want 0..10000", http.StatusBadRequest)
			return
		}
		limit = n
	}
	st := s.stats.snapshot(d, repo, limit, s.viewer(r))
	st.Replica = replicaStats(s.trust.Status())
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

func replicaStats(rs replica.Status) *ReplicaStats {
	return &ReplicaStats{Size: rs.Size, Records: rs.Records, BadEntries: rs.BadEntries, VerifiedAt: rs.VerifiedAt, LastError: rs.LastError}
}
