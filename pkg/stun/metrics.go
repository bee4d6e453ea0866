package stun

import (
	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the server's Prometheus metrics (names start with "stund_").
type Metrics struct {
	requests    *prometheus.CounterVec
	responses   *prometheus.CounterVec
	errors      *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	malformed   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	tcpConns    prometheus.Gauge
	ntp         *prometheus.CounterVec
}

// NewMetrics creates the server metrics; Register exports them.
func NewMetrics() *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stund_requests_total",
			Help: "STUN Binding requests accepted for processing, by transport (udp, tcp), family (ipv4, ipv6) and kind (binding, binding_classic, change, change_classic).",
		}, []string{"transport", "family", "kind"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stund_responses_total",
			Help: "STUN responses sent, by transport and class (success, error).",
		}, []string{"transport", "class"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stund_errors_total",
			Help: "Server-side problems by reason: send (write failed), accept, tcp_limit (connection refused at the limit), unknown_attribute and change_unsupported (error responses sent).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stund_rate_limited_total",
			Help: "Requests dropped by the per-source rate limit, by transport.",
		}, []string{"transport"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stund_malformed_total",
			Help: "Datagrams or TCP frames dropped because they were not a valid STUN Binding request, by transport.",
		}, []string{"transport"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stund_request_duration_seconds",
			Help:    "Time from reading a request to handing its response to the kernel, by transport.",
			Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3},
		}, []string{"transport"}),
		tcpConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stund_tcp_connections",
			Help: "Open STUN TCP connections.",
		}),
		ntp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stund_ntp_requests_total",
			Help: "SNTP requests, by result (answered, malformed, rate_limited).",
		}, []string{"result"}),
	}
	// Create the common series up front so dashboards see zeros, not gaps.
	for _, tr := range []string{"udp", "tcp"} {
		for _, fam := range []string{"ipv4", "ipv6"} {
			for _, k := range []string{"binding", "binding_classic", "change", "change_classic"} {
				m.requests.WithLabelValues(tr, fam, k)
			}
		}
		m.responses.WithLabelValues(tr, "success")
		m.responses.WithLabelValues(tr, "error")
		m.rateLimited.WithLabelValues(tr)
		m.malformed.WithLabelValues(tr)
		m.latency.WithLabelValues(tr)
	}
	for _, r := range []string{"send", "accept", "tcp_limit", "unknown_attribute", "change_unsupported"} {
		m.errors.WithLabelValues(r)
	}
	for _, r := range []string{"answered", "malformed", "rate_limited"} {
		m.ntp.WithLabelValues(r)
	}
	return m
}

// Register adds the metrics to reg (nil: nothing); an error when reg holds
// them already.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	return promreg.Register(reg, "stun", m.requests, m.responses, m.errors, m.rateLimited, m.malformed, m.latency, m.tcpConns, m.ntp)
}
