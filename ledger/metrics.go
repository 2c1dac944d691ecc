package ledger

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are one ledger's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg         *prometheus.Registry
	submissions *prometheus.CounterVec // by result: created, duplicate or an error code
	receipt     prometheus.Histogram   // seconds from request to receipt
	lookups     *prometheus.CounterVec // by result: ok or an error code
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
			Help: "Digest lookups by result: ok, or the API error code.",
		}, []string{"result"}),
	}
	m.reg.MustRegister(
		m.submissions, m.receipt, m.lookups,
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
	return m
}
