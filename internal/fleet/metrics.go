package fleet

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvsgo/kvsgo/kvs"
)

// producerMetrics are kvsgo put's, each labelled by stream here.
var producerMetrics = []struct {
	name, help string
	value      func(kvs.Stats) float64
}{
	{"kvsgo_put_frames", "Frames put.", func(st kvs.Stats) float64 { return float64(st.Frames) }},
	{"kvsgo_put_frames_lost_total", "Frames that did not reach the service, every reason.", func(st kvs.Stats) float64 { return float64(st.Lost.Total()) }},
	{"kvsgo_put_discontinuities", "Jumps of the source's timestamps, re-based onto the stream's clock.", func(st kvs.Stats) float64 { return float64(st.Discontinuities) }},
	{"kvsgo_put_fragments", "Fragments started.", func(st kvs.Stats) float64 { return float64(st.Fragments) }},
	{"kvsgo_put_fragments_persisted", "PERSISTED acks.", func(st kvs.Stats) float64 { return float64(st.Persisted) }},
	{"kvsgo_put_fragments_received", "RECEIVED acks.", func(st kvs.Stats) float64 { return float64(st.Received) }},
	{"kvsgo_put_ack_errors", "ERROR acks.", func(st kvs.Stats) float64 { return float64(st.Errors) }},
	{"kvsgo_put_fragments_dropped", "Fragments dropped (evicted) from a full buffer, or unreadable on disk.", func(st kvs.Stats) float64 { return float64(st.DroppedFragments) }},
	{"kvsgo_put_fragments_recovered", "Fragments a disk buffer held from an earlier run, sent first.", func(st kvs.Stats) float64 { return float64(st.Recovered) }},
	{"kvsgo_put_reconnects", "Connections lost and made again.", func(st kvs.Stats) float64 { return float64(st.Reconnects) }},
	{"kvsgo_put_buffered_fragments", "Fragments not yet persisted.", func(st kvs.Stats) float64 { return float64(st.BufferedFragments) }},
	{"kvsgo_put_buffered_bytes", "Bytes not yet persisted.", func(st kvs.Stats) float64 { return float64(st.BufferedBytes) }},
	{"kvsgo_put_buffered_seconds", "Video not yet persisted.", func(st kvs.Stats) float64 { return st.BufferedDuration.Seconds() }},
	{"kvsgo_put_ack_latency_seconds", "A fragment's last frame to its PERSISTED.", func(st kvs.Stats) float64 { return st.LastAckLatency.Seconds() }},
	{"kvsgo_put_connected", "1 while streaming.", func(st kvs.Stats) float64 { return b2f(st.Connected) }},
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collector exposes every stream's producer metrics, labelled by stream,
// and the supervisor's own: whether it is up and how often it restarted.
// The producer's counters start again at a stream's restart.
type Collector struct {
	s     *Supervisor
	descs []*prometheus.Desc
	lost  *prometheus.Desc
	up    *prometheus.Desc
	rest  *prometheus.Desc
}

// NewCollector returns s's collector, for a prometheus registry.
func NewCollector(s *Supervisor) *Collector {
	c := &Collector{s: s,
		up:   prometheus.NewDesc("kvsgo_run_stream_up", "1 while the stream is streaming and acknowledged (what /healthz checks).", []string{"stream", "state"}, nil),
		rest: prometheus.NewDesc("kvsgo_run_stream_restarts", "Times the stream failed and was started again.", []string{"stream"}, nil),
		lost: prometheus.NewDesc("kvsgo_put_frames_lost", "Frames that did not reach the service, by reason.", []string{"stream", "reason"}, nil),
	}
	for _, m := range producerMetrics {
		c.descs = append(c.descs, prometheus.NewDesc(m.name, m.help, []string{"stream"}, nil))
	}
	return c
}

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.lost
	ch <- c.up
	ch <- c.rest
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.s.Status() {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, b2f(st.Healthy()), st.Name, string(st.State))
		ch <- prometheus.MustNewConstMetric(c.rest, prometheus.CounterValue, float64(st.Restarts), st.Name)
		if !st.HasStats {
			continue
		}
		for i, m := range producerMetrics {
			ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.GaugeValue, m.value(st.Stats), st.Name)
		}
		for _, r := range st.Stats.Lost.Reasons() {
			ch <- prometheus.MustNewConstMetric(c.lost, prometheus.GaugeValue, float64(r.Frames), st.Name, r.Name)
		}
	}
}

// Health serves /healthz: 200 when every stream is streaming, else 503
// naming those that are not and why.
func Health(s *Supervisor) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		var bad, good []string
		for _, st := range s.Status() {
			if st.State == Stopping {
				continue // stopped on purpose (a reload), delivering what it holds
			}
			if st.Healthy() {
				good = append(good, st.Name)
				continue
			}
			line := st.Name + ": " + string(st.State)
			if st.State == Streaming {
				line += ", not connected"
			}
			if st.Err != nil {
				line += ": " + st.Err.Error()
			}
			bad = append(bad, line)
		}
		if len(bad) > 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %d of %d streams\n%s\n", len(bad), len(bad)+len(good), strings.Join(bad, "\n"))
			return
		}
		io.WriteString(w, "ok: "+strings.Join(good, ", ")+"\n")
	}
}
