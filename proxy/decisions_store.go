package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/notarize"
)

// The decision record's file, DataDir/decisions.db (bbolt). Values are
// JSON; keys:
//
//	meta:      "format" → decisionsFormat; "verdicts" → {verdict: count}; "untracked" → u64
//	digests:   digest → DigestStats
//	repos:     "UPSTREAM/REPO" → RepoStats
//	buckets:   start (unix seconds, u64 BE) → storedBucket
//	refusals:  sequence (u64 BE) → Decision (the last recentRefusals)
//
// The recent decisions of every outcome (a digest page's "recent
// decisions") are kept in memory only: writing each allowed pull would
// cost every pull a write, and the counters already hold what lasts. Only
// refusals go through the writer's queue; the counters are written as
// snapshots of what changed, at most every decisionFlushEvery.
//
// A file of another format is refused with the fix: remove it (the
// counters start again from zero; nothing else depends on them).
var (
	decMeta      = []byte("meta")
	decDigests   = []byte("digests")
	decRepos     = []byte("repos")
	decBuckets   = []byte("buckets")
	decRefusals  = []byte("refusals")
	decFormatKey = []byte("format")
	decVerdicts  = []byte("verdicts")
	decUntracked = []byte("untracked")
)

const decisionsFormat = 1

// storedBucket is a timeBucket as written.
type storedBucket struct {
	Start  int64          `json:"start"`
	Total  [3]uint64      `json:"total"`
	Series []storedSeries `json:"series"`
}

type storedSeries struct {
	seriesKey
	N [3]uint64 `json:"n"`
}

func (b *timeBucket) stored() storedBucket {
	sb := storedBucket{Start: b.Start, Total: b.Total, Series: make([]storedSeries, 0, len(b.Series))}
	for k, c := range b.Series {
		sb.Series = append(sb.Series, storedSeries{seriesKey: k, N: *c})
	}
	return sb
}

// open loads the decision record from path (creating it) and starts its
// writer. Call close to stop the writer and close the file.
func (s *digestStats) open(path string, log *slog.Logger) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true})
	if err != nil {
		return fmt.Errorf("open decision record %s: %w", path, err)
	}
	var seq uint64
	if err := db.Update(func(tx *bolt.Tx) error { return s.load(tx, time.Now(), &seq) }); err != nil {
		_ = db.Close()
		return fmt.Errorf("open decision record %s (the counters only: remove it to start counting again): %w", path, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.db, s.queue, s.done = db, make(chan Decision, decisionQueue), make(chan struct{})
	go s.run(log, seq)
	return nil
}

// load reads the file into memory, skipping what expired.
func (s *digestStats) load(tx *bolt.Tx, now time.Time, seq *uint64) error {
	for _, b := range [][]byte{decMeta, decDigests, decRepos, decBuckets, decRefusals} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	if err := s.loadMeta(tx.Bucket(decMeta)); err != nil {
		return err
	}
	cutoff := now.Add(-decisionRetention)
	err := loadEach(tx.Bucket(decDigests), func(k, v []byte) (bool, error) {
		var ds DigestStats
		if err := json.Unmarshal(v, &ds); err != nil || ds.Digest != notarize.Digest(k) {
			return false, fmt.Errorf("corrupt digest counts under %q", k)
		}
		if !ds.LastSeen.After(cutoff) || len(s.byDigest) >= s.max {
			return false, nil
		}
		s.byDigest[ds.Digest] = &ds
		return true, nil
	})
	if err != nil {
		return err
	}
	err = loadEach(tx.Bucket(decRepos), func(k, v []byte) (bool, error) {
		var rs RepoStats
		if err := json.Unmarshal(v, &rs); err != nil || rs.Target() != string(k) {
			return false, fmt.Errorf("corrupt repository counts under %q", k)
		}
		if !rs.LastSeen.After(cutoff) || len(s.byRepo) >= maxTrackedRepos {
			return false, nil
		}
		s.byRepo[rs.Target()] = &rs
		return true, nil
	})
	if err != nil {
		return err
	}
	err = loadEach(tx.Bucket(decBuckets), func(k, v []byte) (bool, error) {
		var sb storedBucket
		if err := json.Unmarshal(v, &sb); err != nil {
			return false, fmt.Errorf("corrupt time bucket under %x", k)
		}
		if time.Unix(sb.Start, 0).Before(cutoff) {
			return false, nil
		}
		b := &timeBucket{Start: sb.Start, Total: sb.Total, Series: make(map[seriesKey]*[3]uint64, len(sb.Series))}
		for _, x := range sb.Series {
			n := x.N
			b.Series[x.seriesKey] = &n
		}
		s.buckets[sb.Start] = b
		return true, nil
	})
	if err != nil {
		return err
	}
	return tx.Bucket(decRefusals).ForEach(func(k, v []byte) error {
		var d Decision
		if len(k) != 8 || json.Unmarshal(v, &d) != nil {
			return fmt.Errorf("corrupt decision under %x", k)
		}
		s.refusals.add(d)
		s.recent.add(d)
		*seq = binary.BigEndian.Uint64(k) + 1
		return nil
	})
}

// loadMeta checks the file's format (setting it in a new file) and reads
// the verdict totals.
func (s *digestStats) loadMeta(m *bolt.Bucket) error {
	switch v := m.Get(decFormatKey); {
	case v == nil:
		if err := m.Put(decFormatKey, []byte{decisionsFormat}); err != nil {
			return err
		}
	case len(v) != 1 || v[0] != decisionsFormat:
		return fmt.Errorf("decision record format %x, this proxy writes %d: remove the file to start counting again", v, decisionsFormat)
	}
	if v := m.Get(decVerdicts); v != nil {
		if err := json.Unmarshal(v, &s.verdicts); err != nil {
			return fmt.Errorf("verdict counts: %w", err)
		}
	}
	if v := m.Get(decUntracked); len(v) == 8 {
		s.untracked = binary.BigEndian.Uint64(v)
	}
	return nil
}

// loadEach calls f on every entry of b and deletes those f does not keep
// (expired, or past a bound).
func loadEach(b *bolt.Bucket, f func(k, v []byte) (keep bool, err error)) error {
	var drop [][]byte
	err := b.ForEach(func(k, v []byte) error {
		keep, err := f(k, v)
		if err == nil && !keep {
			drop = append(drop, bytes.Clone(k))
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// run is the writer: it batches queued decisions and the counters they
// changed into one transaction per decisionBatch or decisionFlushEvery,
// and sweeps expired counters every decisionSweepEvery. It returns once the
// queue is closed and written.
func (s *digestStats) run(log *slog.Logger, seq uint64) {
	defer close(s.done)
	flush := time.NewTicker(decisionFlushEvery)
	defer flush.Stop()
	sweep := time.NewTicker(decisionSweepEvery)
	defer sweep.Stop()
	var batch []Decision
	write := func(expired *expiry) {
		err := s.flush(batch, expired, &seq)
		batch = batch[:0]
		if err == nil {
			s.writeErr.Store(nil)
			return
		}
		msg := err.Error()
		if prev := s.writeErr.Swap(&msg); prev == nil || *prev != msg {
			log.Warn("decision record not written: the dashboard's counters after a restart will miss these decisions", "error", msg)
		}
	}
	for {
		select {
		case d, ok := <-s.queue:
			if !ok {
				write(nil)
				return
			}
			batch = append(batch, d)
			if len(batch) >= decisionBatch {
				write(nil)
			}
		case <-flush.C:
			write(nil)
		case now := <-sweep.C:
			write(s.expire(now))
		}
	}
}

// expiry is what a sweep removed from memory, to remove from the file.
type expiry struct {
	digests []notarize.Digest
	repos   []string
	buckets []int64
}

// expire drops the counters and buckets older than decisionRetention.
func (s *digestStats) expire(now time.Time) *expiry {
	cutoff := now.Add(-decisionRetention)
	var x expiry
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, ds := range s.byDigest {
		if ds.LastSeen.Before(cutoff) {
			delete(s.byDigest, d)
			delete(s.dirtyDigests, d)
			x.digests = append(x.digests, d)
		}
	}
	for k, rs := range s.byRepo {
		if rs.LastSeen.Before(cutoff) {
			delete(s.byRepo, k)
			delete(s.dirtyRepos, k)
			x.repos = append(x.repos, k)
		}
	}
	for start := range s.buckets {
		if time.Unix(start, 0).Before(cutoff) {
			delete(s.buckets, start)
			delete(s.dirtyBuckets, start)
			x.buckets = append(x.buckets, start)
		}
	}
	s.top = nil
	return &x
}

type kv struct{ k, v []byte }

// dirty takes the changed counters (marshalled) and clears the marks.
func (s *digestStats) dirty() (digests, repos, buckets []kv, verdicts []byte, untracked uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.dirtyDigests {
		if ds, ok := s.byDigest[d]; ok {
			v, err := json.Marshal(ds)
			if err != nil {
				return nil, nil, nil, nil, 0, err
			}
			digests = append(digests, kv{[]byte(d), v})
		}
	}
	for k := range s.dirtyRepos {
		if rs, ok := s.byRepo[k]; ok {
			v, err := json.Marshal(rs)
			if err != nil {
				return nil, nil, nil, nil, 0, err
			}
			repos = append(repos, kv{[]byte(k), v})
		}
	}
	for start := range s.dirtyBuckets {
		if b, ok := s.buckets[start]; ok {
			v, err := json.Marshal(b.stored())
			if err != nil {
				return nil, nil, nil, nil, 0, err
			}
			buckets = append(buckets, kv{u64be(uint64(start)), v})
		}
	}
	if verdicts, err = json.Marshal(s.verdicts); err != nil {
		return nil, nil, nil, nil, 0, err
	}
	clear(s.dirtyDigests)
	clear(s.dirtyRepos)
	clear(s.dirtyBuckets)
	return digests, repos, buckets, verdicts, s.untracked, nil
}

// flush writes batch, the changed counters and what expired in one
// transaction, and trims the recent decisions and refusals.
func (s *digestStats) flush(batch []Decision, expired *expiry, seq *uint64) error {
	digests, repos, buckets, verdicts, untracked, err := s.dirty()
	if err != nil {
		return fmt.Errorf("decision record: %w", err)
	}
	if len(batch) == 0 && len(digests) == 0 && len(repos) == 0 && len(buckets) == 0 && expired == nil {
		return nil
	}
	next := *seq
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, x := range []struct {
			b   []byte
			kvs []kv
		}{{decDigests, digests}, {decRepos, repos}, {decBuckets, buckets}} {
			bk := tx.Bucket(x.b)
			for _, p := range x.kvs {
				if err := bk.Put(p.k, p.v); err != nil {
					return err
				}
			}
		}
		if err := s.appendDecisions(tx, batch, &next); err != nil {
			return err
		}
		if err := deleteExpired(tx, expired); err != nil {
			return err
		}
		m := tx.Bucket(decMeta)
		if err := m.Put(decVerdicts, verdicts); err != nil {
			return err
		}
		return m.Put(decUntracked, u64be(untracked))
	})
	if err != nil {
		return fmt.Errorf("decision record: write %d decisions: %w", len(batch), err)
	}
	*seq = next
	return nil
}

// appendDecisions adds the refusals of batch to the recent refusals and
// deletes those past recentRefusals.
func (s *digestStats) appendDecisions(tx *bolt.Tx, batch []Decision, seq *uint64) error {
	fb := tx.Bucket(decRefusals)
	for _, d := range batch {
		v, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if err := fb.Put(u64be(*seq), v); err != nil {
			return err
		}
		*seq++
	}
	if *seq <= recentRefusals {
		return nil
	}
	keep := u64be(*seq - recentRefusals)
	var old [][]byte // deleting under a cursor would skip every other key
	c := fb.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, keep) < 0; k, _ = c.Next() {
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := fb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func deleteExpired(tx *bolt.Tx, x *expiry) error {
	if x == nil {
		return nil
	}
	var errs []error
	for _, d := range x.digests {
		errs = append(errs, tx.Bucket(decDigests).Delete([]byte(d)))
	}
	for _, k := range x.repos {
		errs = append(errs, tx.Bucket(decRepos).Delete([]byte(k)))
	}
	for _, start := range x.buckets {
		errs = append(errs, tx.Bucket(decBuckets).Delete(u64be(uint64(start))))
	}
	return errors.Join(errs...)
}

// close stops the writer once it has written what was queued (or ctx is
// done) and closes the file. Later calls do nothing.
func (s *digestStats) close(ctx context.Context) error {
	s.mu.Lock()
	if s.db == nil || s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.queue)
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("decision record: close: %w", ctx.Err())
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("decision record: close: %w", err)
	}
	return nil
}

func u64be(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
