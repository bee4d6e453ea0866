package mqttbroker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Limit names used in the mqttd_limit_refusals_total{limit} label.
const (
	LimitClients       = "clients"
	LimitSessions      = "sessions"
	LimitPacketSize    = "packet_size"
	LimitPublishRate   = "publish_rate"
	LimitSubscriptions = "subscriptions"
	LimitRetained      = "retained"
	LimitPendingWrites = "pending_writes"
	LimitReceiveMax    = "receive_maximum"
	LimitConnectTime   = "connect_timeout"
	LimitQueued        = "queued"
)

type metrics struct {
	connections   *prometheus.CounterVec
	authFailures  prometheus.Counter
	aclDenials    *prometheus.CounterVec
	limitRefusals *prometheus.CounterVec
	panics        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, srv *mqtt.Server, flow *flowLimits) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqttd_connections_total", Help: "Network connections accepted, by listener.",
		}, []string{"listener"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqttd_auth_failures_total", Help: "CONNECTs refused for a bad username or password, or anonymous when not allowed.",
		}),
		aclDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqttd_acl_denials_total", Help: "Topic accesses refused by the ACL, by action (publish, subscribe).",
		}, []string{"action"}),
		limitRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqttd_limit_refusals_total", Help: "Requests refused or connections closed because a limit was reached, by limit.",
		}, []string{"limit"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqttd_client_panics_total", Help: "Connections closed because their input made the MQTT library panic (the broker kept serving).",
		}),
	}
	for _, l := range []string{"tcp", "ws", "tls", "wss"} {
		m.connections.WithLabelValues(l)
	}
	for _, a := range []string{"publish", "subscribe"} {
		m.aclDenials.WithLabelValues(a)
	}
	for _, l := range []string{LimitClients, LimitSessions, LimitPacketSize, LimitPublishRate, LimitSubscriptions, LimitRetained, LimitPendingWrites, LimitReceiveMax, LimitConnectTime, LimitQueued} {
		m.limitRefusals.WithLabelValues(l)
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mqttd_queued_messages", Help: "Publishes waiting behind a client's inflight window (--max-inflight), all connections.",
	}, func() float64 { return float64(flow.queued.Load()) })
	congested := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mqttd_congested_connections", Help: "Connections congested now: publishes to them wait (--queue-wait) until they drain.",
	}, func() float64 { return float64(flow.congested.Load()) })
	parked := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mqttd_parked_connections", Help: "Connected clients idle long enough that their read loop waits without a goroutine.",
	}, func() float64 {
		if flow.park == nil {
			return 0
		}
		return float64(flow.park.count.Load())
	})
	if err := promreg.Register(reg, "mqttbroker", m.connections, m.authFailures, m.aclDenials, m.limitRefusals, m.panics, queued, congested, parked, newInfoCollector(srv)); err != nil {
		return nil, err
	}
	return m, nil
}

// infoCollector exports mochi's own atomic counters at scrape time, so the
// message path carries no extra metric work.
type infoCollector struct {
	srv     *mqtt.Server
	metrics []infoMetric
}

type infoMetric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	get  func(*mqtt.Server) int64
}

func newInfoCollector(srv *mqtt.Server) infoCollector {
	return infoCollector{srv: srv, metrics: []infoMetric{
		{prometheus.NewDesc("mqttd_clients_connected", "Clients connected now.", nil, nil), prometheus.GaugeValue,
			func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.ClientsConnected) }},
		{prometheus.NewDesc("mqttd_sessions", "Sessions held (connected plus disconnected but not yet expired).", nil, nil), prometheus.GaugeValue,
			func(s *mqtt.Server) int64 { return int64(s.Clients.Len()) }},
		{prometheus.NewDesc("mqttd_messages_received_total", "PUBLISH packets received from clients.", nil, nil), prometheus.CounterValue,
			func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.MessagesReceived) }},
		{prometheus.NewDesc("mqttd_messages_sent_total", "PUBLISH packets sent to clients.", nil, nil), prometheus.CounterValue,
			func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.MessagesSent) }},
		{prometheus.NewDesc("mqttd_messages_dropped_total", "Messages dropped because a client's write queue was full.", nil, nil), prometheus.CounterValue,
			func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.MessagesDropped) }},
		{prometheus.NewDesc("mqttd_received_bytes_total", "Bytes received from clients.", nil, nil), prometheus.CounterValue,
			func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.BytesReceived) }},
		{prometheus.NewDesc("mqttd_sent_bytes_total", "Bytes sent to clients.", nil, nil), prometheus.CounterValue,
			func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.BytesSent) }},
		{prometheus.NewDesc("mqttd_subscriptions", "Subscriptions held.", nil, nil), prometheus.GaugeValue,
			func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.Subscriptions) }},
		{prometheus.NewDesc("mqttd_retained_messages", "Retained messages held (not counting the broker's own $SYS topics).", nil, nil), prometheus.GaugeValue,
			func(s *mqtt.Server) int64 { return int64(countRetained(s)) }},
		{prometheus.NewDesc("mqttd_inflight_messages", "QoS 1/2 messages in flight.", nil, nil), prometheus.GaugeValue,
			func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.Inflight) }},
		{prometheus.NewDesc("mqttd_inflight_dropped_total", "QoS 1/2 messages dropped because a session's inflight store was full (only a disconnected persistent session fills it: a connected one ends first).", nil, nil), prometheus.CounterValue,
			func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.InflightDropped) }},
	}}
}

func (c infoCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

func (c infoCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.get(c.srv)))
	}
}
