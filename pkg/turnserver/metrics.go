package turnserver

import (
	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Direction label values of the relayed traffic counters.
const (
	toPeer   = "to_peer"
	toClient = "to_client"
)

// Quota label values of turnd_quota_refusals_total.
const (
	quotaUser  = "user"
	quotaTotal = "total"
)

// Metrics are turnd's Prometheus metrics.
type Metrics struct {
	active        prometheus.Gauge
	created       prometheus.Counter
	expired       prometheus.Counter
	bytes         *prometheus.CounterVec
	packets       *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	denials       *prometheus.CounterVec
	quota         *prometheus.CounterVec
	dropped       prometheus.Counter
	draining      prometheus.Gauge
	drainRefused  prometheus.Counter
	tcpRefused    prometheus.Counter
	invalid       prometheus.Counter
	familyRefused prometheus.Counter
	// refreshMismatch counts Refresh requests for no allocation (437).
	refreshMismatch prometheus.Counter
	// fast counts ChannelData relayed without pion (channels.go).
	fast prometheus.Counter
	// handoffDropped counts datagrams lost between the relay poller and pion.
	handoffDropped prometheus.Counter

	// resolved children for the per-packet paths
	bytesPeer, bytesClient, pktsPeer, pktsClient prometheus.Counter
}

// NewMetrics creates the metrics; Register exports them.
func NewMetrics() *Metrics {
	m := &Metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "turnd_allocations_active", Help: "Allocations that exist now.",
		}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_allocations_created_total", Help: "Allocations created.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_allocations_expired_total",
			Help: "Allocations that ended: lifetime ran out, the client released it (Refresh with lifetime 0), or its TCP/TLS connection closed.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_relayed_bytes_total", Help: "Application bytes relayed, by direction (to_peer, to_client).",
		}, []string{"direction"}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_relayed_packets_total", Help: "Datagrams relayed, by direction (to_peer, to_client).",
		}, []string{"direction"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_auth_failures_total", Help: "Authenticated requests refused, by reason.",
		}, []string{"reason"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_permission_denials_total", Help: "CreatePermission/ChannelBind requests and relayed sends refused by the peer policy, by reason.",
		}, []string{"reason"}),
		quota: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_quota_refusals_total", Help: "Allocate requests refused with 486, by quota (user, total).",
		}, []string{"quota"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_bandwidth_dropped_packets_total", Help: "Relayed datagrams dropped by the per-allocation bandwidth cap.",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "turnd_draining", Help: "1 while the server drains (refuses new allocations), else 0.",
		}),
		drainRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_drain_refusals_total", Help: "Allocate requests refused because the server is draining.",
		}),
		tcpRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_tcp_connections_refused_total", Help: "TCP/TLS connections closed at once because --max-tcp-conns were open.",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_invalid_datagrams_total",
			Help: "Client datagrams dropped before pion: neither STUN (first two bits 0) nor ChannelData (first byte 0x40-0x7F).",
		}),
		familyRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_family_refusals_total",
			Help: "Allocate requests for an IPv6 relay (440) and IPv6 peers of an IPv4 relay (443); relays are IPv4 only.",
		}),
		refreshMismatch: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_refresh_mismatches_total",
			Help: "Refresh requests from a client without an allocation, answered 437 (e.g. after a restart).",
		}),
		fast: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_channel_shortcut_packets_total",
			Help: "ChannelData datagrams of UDP clients relayed by turnd's copy of pion's channel bindings instead of through pion, both directions (also counted in turnd_relayed_packets_total).",
		}),
		handoffDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_relay_handoff_dropped_total",
			Help: "Datagrams from peers without a channel (relayed as Data indications) dropped because pion's reader of their allocation was 256 datagrams behind.",
		}),
	}
	m.bytesPeer, m.bytesClient = m.bytes.WithLabelValues(toPeer), m.bytes.WithLabelValues(toClient)
	m.pktsPeer, m.pktsClient = m.packets.WithLabelValues(toPeer), m.packets.WithLabelValues(toClient)
	for _, r := range authReasons {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range denyReasons {
		m.denials.WithLabelValues(r)
	}
	for _, q := range []string{quotaUser, quotaTotal} {
		m.quota.WithLabelValues(q)
	}
	return m
}

// Register adds the metrics to reg (nil: nothing); an error when reg holds
// them already.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	return promreg.Register(reg, "turnserver", m.active, m.created, m.expired, m.bytes, m.packets, m.authFailures,
		m.denials, m.quota, m.dropped, m.draining, m.drainRefused, m.tcpRefused, m.invalid, m.familyRefused, m.refreshMismatch, m.fast, m.handoffDropped)
}
