package signal

import (
	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts signalling traffic. Create it with NewMetrics and register
// it with Register; pass it to OpenerConfig and ClientConfig.
type Metrics struct {
	Dropped    *prometheus.CounterVec // agent_signal_dropped_total{reason}
	Received   *prometheus.CounterVec // agent_signal_received_total{type}
	Sent       *prometheus.CounterVec // agent_signal_sent_total{type}: messages handed to at least one broker
	Publishes  prometheus.Counter     // agent_signal_publishes_total: broker publishes acknowledged
	PubErrors  prometheus.Counter     // agent_signal_publish_errors_total
	Connected  prometheus.Gauge       // agent_signal_brokers_connected
	Reconnects prometheus.Counter     // agent_signal_connects_total
}

// NewMetrics creates the signalling metrics, with every drop reason and type
// label present from the start.
func NewMetrics() *Metrics {
	m := &Metrics{
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_signal_dropped_total",
			Help: "Signalling envelopes dropped, by reason (short, version, forged, malformed, sender, expired, future, replay).",
		}, []string{"reason"}),
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_signal_received_total",
			Help: "Signalling messages accepted, by type.",
		}, []string{"type"}),
		Sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_signal_sent_total",
			Help: "Signalling messages sent through at least one broker, by type.",
		}, []string{"type"}),
		Publishes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_signal_publishes_total",
			Help: "MQTT publishes acknowledged by a broker (a message is published to up to 2 brokers).",
		}),
		PubErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_signal_publish_errors_total",
			Help: "MQTT publishes that failed or timed out.",
		}),
		Connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agent_signal_brokers_connected",
			Help: "Brokers the agent is subscribed on right now.",
		}),
		Reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_signal_connects_total",
			Help: "Successful connections (first and re-) to the agent's own brokers.",
		}),
	}
	for _, r := range dropReasons() {
		m.Dropped.WithLabelValues(r.label)
	}
	m.Dropped.WithLabelValues("other")
	for _, t := range []Type{TypeCon, TypePunch, TypeTURN, TypeEcho, TypeAddr} {
		m.Received.WithLabelValues(string(t))
		m.Sent.WithLabelValues(string(t))
	}
	return m
}

// Register adds the metrics to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	return promreg.Register(reg, "signal", m.Dropped, m.Received, m.Sent, m.Publishes, m.PubErrors, m.Connected, m.Reconnects)
}
