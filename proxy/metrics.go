package proxy

import (
	"time"

	"github.com/notarize/docker-notarize/proxy/blobcache"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the proxy's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg            *prometheus.Registry
	decisions      *prometheus.CounterVec
	decisionTime   prometheus.Histogram
	requests       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	cache          *prometheus.CounterVec
	blobBytes      *prometheus.CounterVec
}

func newMetrics(trust TrustSource) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notarize_proxy_decisions_total",
			Help: "Policy decisions on manifests, by effective verdict (TRUSTED, UNTRUSTED, UNKNOWN, UNSUPPORTED, UNVERIFIABLE), rule mode and upstream.",
		}, []string{"verdict", "mode", "upstream"}),
		decisionTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "notarize_proxy_decision_seconds",
			Help:    "Time to decide on a manifest: replica lookups and policy evaluation.",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2},
		}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "notarize_proxy_request_duration_seconds",
			Help:    "Time to answer a request (to the end of the body), by route, method and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route", "method", "code"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notarize_proxy_upstream_errors_total",
			Help: "Failed upstream requests by upstream and kind (unreachable, timeout, status_5xx, digest_mismatch, size_mismatch, too_large, refused, rate_limited…).",
		}, []string{"upstream", "kind"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notarize_proxy_cache_requests_total",
			Help: "Cache lookups by cache (manifest, blob) and result (hit, miss, joined: a download already in progress, redirect: to the shared store, shared_head: a HEAD answered from the shared store).",
		}, []string{"cache", "result"}),
		blobBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_bytes_total",
			Help: "Blob bytes served, by source (cache, upstream, shared: the fleet's shared store, re-hashed).",
		}, []string{"source"}),
	}
	m.reg.MustRegister(m.decisions, m.decisionTime, m.requests, m.upstreamErrors, m.cache, m.blobBytes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	{
		ts := trust
		m.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "notarize_proxy_replica_size",
				Help: "Ledger entries verified and indexed by the proxy's replica.",
			}, func() float64 { return float64(ts.Status().Size) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "notarize_proxy_replica_records",
				Help: "Verified statements indexed by the replica.",
			}, func() float64 { return float64(ts.Status().Records) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "notarize_proxy_replica_bad_entries",
				Help: "Ledger entries whose statement did not parse or verify (recorded, never trusted).",
			}, func() float64 { return float64(ts.Status().BadEntries) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "notarize_proxy_replica_map_roots_checked_total",
				Help: "The ledger's verifiable-index roots the replica recomputed and found right.",
			}, func() float64 { return float64(ts.Status().MapRootsChecked) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "notarize_proxy_replica_wrong_map_roots",
				Help: "1 once the ledger committed a wrong verifiable-index root (evidence at /notarize/v1/evidence; the proxy fails closed), else 0.",
			}, func() float64 {
				if ts.Status().WrongMapRoot != nil {
					return 1
				}
				return 0
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "notarize_proxy_replica_age_seconds",
				Help: "Seconds since the replica last verified the ledger's state (-1: never).",
			}, func() float64 {
				at := ts.Status().VerifiedAt
				if at.IsZero() {
					return -1
				}
				return time.Since(at).Seconds()
			}),
		)
	}
	return m
}

// watchBlobCache exports the blob cache's size, bound and evictions.
func (m *metrics) watchBlobCache(c interface{ Stats() blobcache.Stats }) {
	stat := func(f func(blobcache.Stats) float64) func() float64 {
		return func() float64 { return f(c.Stats()) }
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_proxy_blob_cache_bytes",
			Help: "Bytes of verified blobs in the blob cache.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_proxy_blob_cache_blobs",
			Help: "Blobs in the blob cache.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.Blobs) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_proxy_blob_cache_max_bytes",
			Help: "The blob cache's bound (--cache-max-bytes; 0: unbounded).",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.MaxBytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_cache_evictions_total",
			Help: "Blobs evicted from the blob cache (least recently used first) to stay under its bound.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.Evictions) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_cache_evicted_bytes_total",
			Help: "Bytes evicted from the blob cache.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.EvictedBytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_cache_uncached_total",
			Help: "Verified blobs served without being cached: larger than the bound, or no room because the rest of the cache was being read.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.Uncached) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_shared_hits_total",
			Help: "Blob fills read from the fleet's shared store instead of the upstream.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.SharedHits) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_shared_puts_total",
			Help: "Verified blobs this instance put into the fleet's shared store.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.SharedPuts) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_shared_bad_total",
			Help: "Copies in the fleet's shared store that did not hash to their digest (removed; never served).",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.SharedBad) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_shared_errors_total",
			Help: "Failed reads from and puts into the fleet's shared store (the upstream served instead).",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.SharedErrors) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_shared_skipped_total",
			Help: "Verified blobs not put into the fleet's shared store because too many puts were running and waiting (they stay local).",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.SharedSkipped) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_proxy_blob_fill_memory_bytes",
			Help: "Memory the cold blob downloads and their readers hold now, in 1 MiB chunks.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.FillMemory) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_proxy_blob_fill_memory_max_bytes",
			Help: "The cold downloads' memory budget (--fill-memory-bytes); past it they stream through their files.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.FillMemoryMax) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notarize_proxy_blob_fill_small_buffers_total",
			Help: "32 KiB buffers taken by cold downloads because the fill memory budget was spent.",
		}, stat(func(s blobcache.Stats) float64 { return float64(s.SmallBuffers) })),
	)
}
