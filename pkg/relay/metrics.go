package relay

import (
	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	allocations   *prometheus.CounterVec // result: ok, error
	active        prometheus.Gauge
	reallocations prometheus.Counter
	losses        prometheus.Counter
	refreshes     *prometheus.CounterVec // result: ok, error
	bytes         *prometheus.CounterVec // dir: in, out
	dropped       *prometheus.CounterVec // reason: oversize, malformed, foreign
	streams       *prometheus.CounterVec // dir: dial, accept; result: ok, error
	streamsActive prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_relay_allocations_total", Help: "TURN allocation attempts, by result (ok, error)."}, []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agent_relay_allocation_active", Help: "1 while the standing TURN allocation exists, else 0."}),
		reallocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_relay_reallocations_total", Help: "Allocations made again after the standing one was lost."}),
		losses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_relay_allocation_losses_total", Help: "Standing allocations lost (437, no answer to a refresh, server connection closed)."}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_relay_refreshes_total", Help: "Refreshes of the standing allocation (every keep-alive period), by result (ok, error)."}, []string{"result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_relay_bytes_total", Help: "Datagram payload bytes through the allocation, by direction (in, out)."}, []string{"dir"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_relay_dropped_datagrams_total", Help: "Datagrams dropped, by reason (oversize: larger than a QUIC packet; malformed: not STUN/TURN; foreign: not from the TURN server)."}, []string{"reason"}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_relay_streams_total", Help: "Relayed streams opened, by direction (dial, accept) and result (ok, error)."}, []string{"dir", "result"}),
		streamsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agent_relay_streams_active", Help: "Relayed streams open now."}),
	}
	for _, r := range []string{"ok", "error"} {
		m.allocations.WithLabelValues(r)
		m.refreshes.WithLabelValues(r)
		for _, d := range []string{"dial", "accept"} {
			m.streams.WithLabelValues(d, r)
		}
	}
	for _, d := range []string{"in", "out"} {
		m.bytes.WithLabelValues(d)
	}
	for _, r := range []string{"oversize", "malformed", "foreign"} {
		m.dropped.WithLabelValues(r)
	}
	if err := promreg.Register(reg, "relay", m.allocations, m.active, m.reallocations, m.losses, m.refreshes, m.bytes, m.dropped, m.streams, m.streamsActive); err != nil {
		return nil, err
	}
	return m, nil
}
