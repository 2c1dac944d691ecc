package ledger

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are one ledger's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg         *prometheus.Registry
	submissions *prometheus.CounterVec // by result: created, duplicate or an error code
	receipt     prometheus.Histogram   // seconds from request to receipt
	lookups     *prometheus.CounterVec // by kind (page, current) and result: ok or an error code
	rateLimited *prometheus.CounterVec // by limit: client, key, key-digest
}

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
	}
	m.reg.MustRegister(
		m.submissions, m.receipt, m.lookups, m.rateLimited,
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

// countRateLimited counts err if it is a rate limit's refusal.
func (l *Ledger) countRateLimited(err error) {
	if rl, ok := errors.AsType[*RateLimitError](err); ok && l.metrics != nil {
		l.metrics.rateLimited.WithLabelValues(rl.Limit).Inc()
	}
}
