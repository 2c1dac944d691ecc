package proxy

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// maxTargetsPerDigest bounds the targets remembered per digest.
const maxTargetsPerDigest = 8

// DigestStats counts the verifications of one digest by this proxy.
type DigestStats struct {
	Digest      notarize.Digest `json:"digest"`
	Allowed     uint64          `json:"allowed"`
	Denied      uint64          `json:"denied"`
	LastVerdict string          `json:"lastVerdict"`
	LastSeen    time.Time       `json:"lastSeen"`
	Targets     []string        `json:"targets"`
}

// Stats is the body of GET /notarize/v1/stats.
type Stats struct {
	// Decisions counts decisions by effective verdict.
	Decisions map[string]uint64 `json:"decisions"`
	// Tracked is the number of digests counted; Untracked counts decisions
	// about digests beyond the bound.
	Tracked   int    `json:"tracked"`
	Untracked uint64 `json:"untracked"`
	// Replica is the replica's state, when the trust source reports one.
	Replica *ReplicaStats `json:"replica,omitempty"`
	// Digests are the most verified digests (or the one asked for).
	Digests []DigestStats `json:"digests"`
}

// ReplicaStats is the replica's state in Stats.
type ReplicaStats struct {
	Size       uint64    `json:"size"`
	Records    uint64    `json:"records"`
	BadEntries uint64    `json:"badEntries"`
	VerifiedAt time.Time `json:"verifiedAt"`
	LastError  string    `json:"lastError,omitempty"`
}

// digestStats keeps per-digest verification counts in memory, bounded.
type digestStats struct {
	mu        sync.Mutex
	max       int
	byDigest  map[notarize.Digest]*DigestStats
	verdicts  map[string]uint64
	untracked uint64
}

func newDigestStats(max int) *digestStats {
	return &digestStats{max: max, byDigest: map[notarize.Digest]*DigestStats{}, verdicts: map[string]uint64{}}
}

func (s *digestStats) observe(d notarize.Digest, target, verdict string, allowed bool, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verdicts[verdict]++
	ds, ok := s.byDigest[d]
	if !ok {
		if len(s.byDigest) >= s.max {
			s.untracked++
			return
		}
		ds = &DigestStats{Digest: d}
		s.byDigest[d] = ds
	}
	if allowed {
		ds.Allowed++
	} else {
		ds.Denied++
	}
	ds.LastVerdict, ds.LastSeen = verdict, at
	for _, t := range ds.Targets {
		if t == target {
			return
		}
	}
	if len(ds.Targets) < maxTargetsPerDigest {
		ds.Targets = append(ds.Targets, target)
	}
}

// snapshot returns the counts: of digest d when given, else of the limit
// most verified digests.
func (s *digestStats) snapshot(d notarize.Digest, limit int) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Decisions: map[string]uint64{}, Tracked: len(s.byDigest), Untracked: s.untracked, Digests: []DigestStats{}}
	for k, v := range s.verdicts {
		st.Decisions[k] = v
	}
	if d != "" {
		if ds, ok := s.byDigest[d]; ok {
			c := *ds
			c.Targets = append([]string(nil), ds.Targets...)
			st.Digests = append(st.Digests, c)
		}
		return st
	}
	all := make([]*DigestStats, 0, len(s.byDigest))
	for _, ds := range s.byDigest {
		all = append(all, ds)
	}
	sort.Slice(all, func(i, j int) bool {
		ti, tj := all[i].Allowed+all[i].Denied, all[j].Allowed+all[j].Denied
		if ti != tj {
			return ti > tj
		}
		return all[i].Digest < all[j].Digest
	})
	for _, ds := range all[:min(limit, len(all))] {
		c := *ds
		c.Targets = append([]string(nil), ds.Targets...)
		st.Digests = append(st.Digests, c)
	}
	return st
}

// serveStats answers GET /notarize/v1/stats[?digest=sha256:…][&limit=N].
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
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 10000 {
			http.Error(w, "limit: want 0..10000", http.StatusBadRequest)
			return
		}
		limit = n
	}
	st := s.stats.snapshot(d, limit)
	st.Replica = replicaStats(s.trust.Status())
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

func replicaStats(rs replica.Status) *ReplicaStats {
	return &ReplicaStats{Size: rs.Size, Records: rs.Records, BadEntries: rs.BadEntries, VerifiedAt: rs.VerifiedAt, LastError: rs.LastError}
}
