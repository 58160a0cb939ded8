package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics live in a registry of the server's own, not the global one.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	fragments    *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	acks         *prometheus.CounterVec
	putMedia     prometheus.Gauge
	getMedia     prometheus.Gauge
	ingestErrors *prometheus.CounterVec
	refused      prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvsgo_api_requests_total", Help: "API requests by operation and HTTP status.",
		}, []string{"operation", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kvsgo_api_request_seconds", Help: "API request duration (whole session for streaming calls).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"operation"}),
		fragments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvsgo_fragments_stored_total", Help: "Fragments stored, by stream.",
		}, []string{"stream"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvsgo_ingest_bytes_total", Help: "PutMedia bytes received, by stream.",
		}, []string{"stream"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvsgo_acks_total", Help: "PutMedia acknowledgements sent, by event type.",
		}, []string{"event"}),
		putMedia: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvsgo_putmedia_connections", Help: "Open PutMedia connections.",
		}),
		getMedia: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvsgo_getmedia_connections", Help: "Open GetMedia connections.",
		}),
		ingestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvsgo_ingest_errors_total", Help: "PutMedia ERROR acks, by error code.",
		}, []string{"code"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvsgo_connections_refused_total", Help: "Connections refused over --max-conns or --max-conns-per-client.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.fragments, m.bytes, m.acks, m.putMedia, m.getMedia, m.ingestErrors, m.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) request(op string, status int, d time.Duration) {
	m.requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(op).Observe(d.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
