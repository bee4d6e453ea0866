package pipe

import (
	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts pipe traffic over all pipes that share it.
type Metrics struct {
	Received  prometheus.Counter // agent_pipe_messages_received_total
	Sent      prometheus.Counter // agent_pipe_messages_sent_total
	Dropped   prometheus.Counter // agent_pipe_queue_dropped_total
	Unmatched prometheus.Counter // agent_pipe_unmatched_total
}

// NewMetrics creates the pipe metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		Received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_pipe_messages_received_total", Help: "Messages read from pipes.",
		}),
		Sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_pipe_messages_sent_total", Help: "Messages written to pipes.",
		}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_pipe_queue_dropped_total", Help: "Queued messages dropped because a subscription queue was full (oldest first).",
		}),
		Unmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_pipe_unmatched_total", Help: "Messages discarded because no subscription matched.",
		}),
	}
}

// Register adds the metrics to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	return promreg.Register(reg, "pipe", m.Received, m.Sent, m.Dropped, m.Unmatched)
}
