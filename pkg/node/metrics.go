package node

import (
	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the node does.
type Metrics struct {
	Connects   *prometheus.CounterVec   // agent_connects_total{strategy,result}
	Duration   *prometheus.HistogramVec // agent_connect_duration_seconds{strategy}
	Handshakes *prometheus.CounterVec   // agent_handshakes_total{result}
	Inbound    prometheus.Counter       // agent_inbound_pipes_total
	Time       prometheus.Histogram     // agent_connect_seconds: time to the first working pipe
}

// NewMetrics creates the node metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		Connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_connects_total", Help: "Strategy attempts by strategy and result (ok, failed, skipped, lost, cancelled).",
		}, []string{"strategy", "result"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agent_connect_duration_seconds", Help: "Time a strategy took, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"strategy"}),
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_handshakes_total", Help: "Inbound pipe handshakes by result (ok, failed, busy).",
		}, []string{"result"}),
		Time: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agent_connect_seconds", Help: "Time from a connect request to its first authenticated pipe (successful connects).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		Inbound: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_inbound_pipes_total", Help: "Authenticated inbound pipes handed to the application.",
		}),
	}
}

// Register adds the metrics to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	return promreg.Register(reg, "node", m.Connects, m.Duration, m.Time, m.Handshakes, m.Inbound)
}
