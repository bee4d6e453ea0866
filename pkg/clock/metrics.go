package clock

import (
	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Query results counted in agent_clock_ntp_queries_total.
const (
	queryValid    = "valid"    // a reply that passed Validate
	queryRejected = "rejected" // a reply that failed parsing or Validate (garbage, KoD, unsynchronised)
	queryError    = "error"    // no reply: timeout, unreachable, dial error
)

type metrics struct {
	syncs   *prometheus.CounterVec
	queries *prometheus.CounterVec
}

func newMetrics(c *Clock, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_clock_syncs_total",
			Help: "Clock syncs by result: ntp, signalling-rtt (no NTP answer, signalling fallback), kept (no NTP answer, previous estimate kept), none.",
		}, []string{"result"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_clock_ntp_queries_total",
			Help: "NTP queries by result (valid, rejected, error).",
		}, []string{"result"}),
	}
	for _, r := range []string{syncNTP, syncSignalling, syncKept, syncNone} {
		m.syncs.WithLabelValues(r)
	}
	for _, r := range []string{queryValid, queryRejected, queryError} {
		m.queries.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{
		m.syncs, m.queries,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agent_clock_offset_seconds",
			Help: "Correction added to the local clock: measured time minus local time.",
		}, func() float64 { return c.Offset().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agent_clock_uncertainty_seconds",
			Help: "Bound on the error of the corrected clock (see docs/agent.md, Clock).",
		}, func() float64 { return c.Uncertainty().Seconds() }),
	}
	if err := promreg.Register(reg, "clock", cs...); err != nil {
		return nil, err
	}
	return m, nil
}
