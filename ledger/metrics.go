package ledger

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/notarize/docker-notarize/ledger/api"
)

// metrics are one ledger's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg         *prometheus.Registry
	submissions *prometheus.CounterVec // by result: created, duplicate or an error code
	receipt     prometheus.Histogram   // seconds from request to receipt
	lookups     *prometheus.CounterVec // by kind (page, current) and result: ok or an error code
	rateLimited *prometheus.CounterVec // by limit: client, key, key-digest
	tails       *prometheus.CounterVec // lookup answers asked for the tail, by asked (TailMode) and answer
}

// The answer label of metrics.tails: what an answer asked for the log's
// tail after its map root carried.
const (
	tailAnchored = "anchored" // none: its root is recent (api.TailAnchor)
	tailInline   = "inline"   // the tail, inline
	tailNone     = "none"     // none: nothing after the root, or it did not fit (the client reads it)
)

// mapRootAgeRead bounds the read of the stored map root at a scrape.
const mapRootAgeRead = 2 * time.Second

func newMetrics(l *Ledger) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notarize_ledger_submissions_total",
			Help: "Entry submissions by result: created, duplicate, or the API error code.",
		}, []string{"result"}),
		receipt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "notarize_ledger_receipt_seconds",
			Help:    "Time from receiving a submission to answering it with a receipt.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 13), // 5 ms … 20 s
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notarize_ledger_lookups_total",
			Help: "Lookups by kind (page or current of a digest, key for a key lookup) and result: ok, or the API error code.",
		}, []string{"kind", "result"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notarize_ledger_rate_limited_total",
			Help: "Submissions refused by a rate limit, by limit: client, key or key-digest.",
		}, []string{"limit"}),
		tails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notarize_ledger_lookup_tails_total",
			Help: "Lookup answers that asked for the log's tail after their map root, by what they asked (tail=inline or anchor) and what they carried: anchored (none, the root being recent), inline, or none (nothing after the root, or it did not fit).",
		}, []string{"asked", "answer"}),
	}
	m.reg.MustRegister(
		m.submissions, m.receipt, m.lookups, m.rateLimited, m.tails,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_ledger_map_root_age_seconds",
			Help: "Age, by the ledger's clock, of the time carried by the newest committed map root; NaN when the map has no root yet or its root carries no time. Past 5 s (AnchorMaxAge), answers asked with tail=anchor carry the tail, and past their bound clients read the tail themselves: alert on it while notarize_ledger_map_root_lag_entries is above 1 (an idle ledger commits no root, and its root ages with nothing after it).",
		}, l.mapRootAge),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_ledger_map_root_lag_entries",
			Help: "Log entries indexed after those the newest committed map root covers: the tail a lookup's client reads or is given, 1 on an idle ledger (the root's own entry); NaN when the map has no root yet.",
		}, l.mapRootLag),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_ledger_log_size",
			Help: "Entries integrated into the log.",
		}, func() float64 {
			n, err := l.reader.IntegratedSize(context.Background())
			if err != nil {
				return 0
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_ledger_index_entries",
			Help: "Log entries processed into the digest index.",
		}, func() float64 { return float64(l.store.Processed()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.reg.MustRegister(l.witnessCollectors()...)
	return m
}

// countTail counts an answer asked for the tail by mode that carried answer.
func (l *Ledger) countTail(mode TailMode, answer string) {
	if l.metrics == nil {
		return
	}
	asked := api.TailInline
	if mode == TailAnchor {
		asked = api.TailAnchor
	}
	l.metrics.tails.WithLabelValues(asked, answer).Inc()
}

// mapRootAge returns the age in seconds of the stored map root's time, by
// the ledger's clock, read at the scrape; NaN without a map, a root, or a
// time in the root, or when the map cannot be read.
func (l *Ledger) mapRootAge() float64 {
	pr := l.scrapeMapRoot()
	if pr == nil || pr.time.IsZero() {
		return math.NaN()
	}
	return l.vmap.clock().Sub(pr.time).Seconds()
}

// mapRootLag returns how many indexed entries follow those the stored map
// root covers, read at the scrape; NaN without a map or a root, or when
// the map cannot be read.
func (l *Ledger) mapRootLag() float64 {
	pr := l.scrapeMapRoot()
	if pr == nil {
		return math.NaN()
	}
	return float64(l.store.Processed()) - float64(pr.size)
}

// scrapeMapRoot returns the stored map root, parsed (once per root); nil
// without a map or a root, or when it cannot be read or parsed.
func (l *Ledger) scrapeMapRoot() *parsedRoot {
	f := l.vmap
	if f == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), mapRootAgeRead)
	defer cancel()
	st, err := f.m.MapState(ctx)
	if err != nil || st.Root == nil {
		return nil
	}
	pr, err := f.parsed(st.Root)
	if err != nil {
		return nil
	}
	return pr
}

// countRateLimited counts err if it is a rate limit's refusal.
func (l *Ledger) countRateLimited(err error) {
	if rl, ok := errors.AsType[*RateLimitError](err); ok && l.metrics != nil {
		l.metrics.rateLimited.WithLabelValues(rl.Limit).Inc()
	}
}
