// Package mqttbroker is mqttd's broker: mochi-mqtt with a users file
// (bcrypt), a topic ACL that keeps the p2pd/ signalling namespace private,
// limits that refuse instead of growing, optional bolt persistence, and
// Prometheus metrics.
package mqttbroker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
)

// Config is everything mqttd needs to run a broker.
type Config struct {
	TCP, WS, TLS, WSS string // listen addresses; "" disables; TLS and WSS need a certificate
	TLSCert, TLSKey   string // PEM files

	UsersFile      string // name:bcrypt-hash[:admin] lines; see Passwd
	AllowAnonymous bool   // clients without a username may connect
	RulesFile      string // ACL rules for topics outside p2pd/ and $SYS
	BindUsername   bool   // subscribe only to p2pd/<own username>

	Store          string        // bolt file for sessions and retained messages; "" keeps them in memory
	ConnectTimeout time.Duration // time allowed between TCP accept and CONNECT
	Limits         Limits
}

// Limits bound what clients can make the broker hold or do. Zero means no
// limit (except where noted).
type Limits struct {
	MaxClients       int           // connected clients; more get CONNACK "server busy/unavailable"
	MaxSessions      int           // sessions held, connected or not (persistent sessions outlive their connection)
	MaxPacketSize    uint32        // bytes; bigger packets close the connection
	MaxInflight      uint16        // per connection, QoS 1/2 publishes written and not yet acknowledged (the wire window; an MQTT 5 client's smaller Receive Maximum wins); must be > 0
	MaxQueued        int           // per connection, publishes waiting behind the window; one more ends the session (must be > 0)
	MaxQueuedBytes   int           // per connection, bytes waiting behind the window or to be written; more end the session (must be > 0)
	QueueWait        time.Duration // longest a publish waits for a connection it goes to whose queue is half full; 0: no waiting
	ReceiveMaximum   uint16        // per client, incoming QoS 1/2 publishes not yet acknowledged (must be > 0)
	MaxPendingWrites int32         // per client, packets queued for writing; more are dropped (must be > 0)
	MessageExpiry    time.Duration // longest a message (also a retained one) is kept
	SessionExpiry    time.Duration // longest a disconnected session is kept
	MaxSubscriptions int           // per client
	PublishRate      float64       // per client, publishes per second
	PublishBurst     int           // per client, publishes allowed at once above the rate
	MaxRetained      int           // retained messages held by the broker
}

// DefaultLimits are sized for a signalling broker: small messages, a few
// subscriptions per agent, thousands of agents.
func DefaultLimits() Limits {
	return Limits{
		MaxClients:       10000,
		MaxSessions:      20000,
		MaxPacketSize:    64 * 1024,
		MaxInflight:      128,
		MaxQueued:        1000,
		MaxQueuedBytes:   4 << 20,
		QueueWait:        5 * time.Second,
		ReceiveMaximum:   1024,
		MaxPendingWrites: 256,
		MessageExpiry:    time.Hour,
		SessionExpiry:    time.Hour,
		MaxSubscriptions: 32,
		PublishRate:      100,
		PublishBurst:     200,
		MaxRetained:      10000,
	}
}

// maxStored bounds window + queue: mochi's store holds at most 65535
// packet ids per client, and needs room for the client's own QoS 2 flows.
const (
	storeSlack = 16
	maxStored  = math.MaxUint16 / 2
)

// DefaultConnectTimeout is the time a new connection has to send CONNECT.
const DefaultConnectTimeout = 10 * time.Second

// Broker is a running broker.
type Broker struct {
	srv       *mqtt.Server
	park      *parker // nil off Linux
	listeners map[string]*listener
	closeOnce sync.Once
	closed    chan struct{}
}

// Start validates cfg, binds every configured listener and starts serving.
// Metrics are registered on reg.
func Start(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Broker, error) {
	h, err := newHook(cfg, log)
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("mqttbroker: tls certificate: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if (cfg.TLS != "" || cfg.WSS != "") && tlsConf == nil {
		return nil, errors.New("mqttbroker: a TLS listener needs a certificate and key file")
	}
	if cfg.TCP == "" && cfg.WS == "" && cfg.TLS == "" && cfg.WSS == "" {
		return nil, errors.New("mqttbroker: no listener configured")
	}
	if cfg.Limits.MaxPendingWrites <= 0 || cfg.Limits.ReceiveMaximum == 0 {
		return nil, errors.New("mqttbroker: max pending writes and receive maximum must be > 0")
	}
	if l := cfg.Limits; l.MaxInflight == 0 || l.MaxQueued <= 0 || l.MaxQueuedBytes <= 0 || l.QueueWait < 0 || int(l.MaxInflight)+l.MaxQueued > maxStored {
		return nil, fmt.Errorf("mqttbroker: max inflight, max queued and max queued bytes must be > 0, and inflight + queued at most %d", maxStored)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}

	srv := mqtt.New(&mqtt.Options{
		Capabilities: capabilities(cfg.Limits),
		// flowConn buffers what it reads (park.go); mochi's buffer only
		// splits it into packets.
		ClientNetReadBufferSize: 16,
		Logger:                  slog.New(newMochiLog(log.Handler())).With("component", "mochi"),
		SysTopicResendInterval:  10,
	})
	h.srv = srv
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg, srv, h.flow)
	if err != nil {
		return nil, fmt.Errorf("mqttbroker: metrics: %w", err)
	}
	h.metrics = m
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("mqttbroker: %w", err)
	}
	if cfg.Store != "" {
		h.store = new(bolt.Hook)
		err := srv.AddHook(h.store, &bolt.Options{
			Path: cfg.Store, Bucket: "mqttd", Options: &bbolt.Options{Timeout: time.Second},
		})
		if err != nil {
			return nil, fmt.Errorf("mqttbroker: store %s: %w", cfg.Store, err)
		}
	}
	park, err := newParker(log)
	if err != nil {
		return nil, err
	}
	h.flow.park = park
	b := &Broker{srv: srv, park: park, listeners: map[string]*listener{}, closed: make(chan struct{})}
	for _, l := range []*listener{
		{id: "tcp", addr: cfg.TCP},
		{id: "ws", addr: cfg.WS, websocket: true},
		{id: "tls", addr: cfg.TLS, tlsConfig: tlsConf},
		{id: "wss", addr: cfg.WSS, tlsConfig: tlsConf, websocket: true},
	} {
		if l.addr == "" {
			continue
		}
		l.hook, l.connectTimeout = h, cfg.ConnectTimeout
		if err := srv.AddListener(l); err != nil {
			b.Close()
			return nil, err
		}
		b.listeners[l.id] = l
	}
	if err := srv.Serve(); err != nil {
		b.Close()
		return nil, fmt.Errorf("mqttbroker: serve: %w", err)
	}
	return b, nil
}

func newHook(cfg Config, log *slog.Logger) (*hook, error) {
	h := &hook{
		anon:     cfg.AllowAnonymous,
		acl:      &ACL{BindUsername: cfg.BindUsername},
		limits:   cfg.Limits,
		log:      log,
		throttle: newLogThrottle(time.Second),
		buckets:  map[*mqtt.Client]*bucket{},
	}
	h.flow = &flowLimits{
		window: int(cfg.Limits.MaxInflight), maxQueued: cfg.Limits.MaxQueued, maxBytes: cfg.Limits.MaxQueuedBytes,
		maxPending: int(cfg.Limits.MaxPendingWrites), holdAcks: cfg.Store == "",
		onOverflow: func(queued, bytes int) {
			h.refuse(LimitQueued, "session ended: client queue full (the client does not acknowledge its QoS 1/2 messages)",
				"queued", queued, "bytes", bytes, "max", cfg.Limits.MaxQueued, "max_bytes", cfg.Limits.MaxQueuedBytes)
		},
	}
	if cfg.UsersFile != "" {
		users, err := LoadUsers(cfg.UsersFile)
		if err != nil {
			return nil, err
		}
		h.auth = newAuthenticator(users)
	} else if !cfg.AllowAnonymous {
		return nil, errors.New("mqttbroker: no users file and anonymous access is off: nobody could connect (give a users file, or allow anonymous explicitly)")
	}
	if cfg.RulesFile != "" {
		rules, err := LoadRules(cfg.RulesFile)
		if err != nil {
			return nil, err
		}
		h.acl.Rules = rules
	}
	if cfg.Limits.PublishRate > 0 && cfg.Limits.PublishBurst < 1 {
		h.limits.PublishBurst = 1
	}
	return h, nil
}

func capabilities(l Limits) *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumClients = math.MaxInt64
	if l.MaxClients > 0 {
		c.MaximumClients = int64(l.MaxClients)
	}
	c.MaximumPacketSize = l.MaxPacketSize
	// mochi drops, silently, what does not fit its inflight store; the wire
	// window and the queue are kept by flowConn, so the store has room for
	// both, the client's own unacknowledged QoS 2 publishes and some slack.
	c.MaximumInflight = uint16(min(int(l.MaxInflight)+l.MaxQueued+int(l.ReceiveMaximum)+storeSlack, math.MaxUint16))
	c.ReceiveMaximum = l.ReceiveMaximum
	c.MaximumClientWritesPending = l.MaxPendingWrites
	c.MaximumMessageExpiryInterval = int64(l.MessageExpiry / time.Second)
	c.MaximumSessionExpiryInterval = math.MaxUint32
	if l.SessionExpiry > 0 {
		c.MaximumSessionExpiryInterval = uint32(min(l.SessionExpiry/time.Second, math.MaxUint32))
	}
	return c
}

// Addr is the bound address of listener id ("tcp", "ws", "tls", "wss"), or
// "" when it is not configured.
func (b *Broker) Addr(id string) string {
	if l, ok := b.listeners[id]; ok {
		return l.Address()
	}
	return ""
}

// Healthy reports nil while the broker serves.
func (b *Broker) Healthy() error {
	select {
	case <-b.closed:
		return errors.New("mqttbroker: stopped")
	default:
		return nil
	}
}

// Close disconnects every client, stops the listeners and flushes the store.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.closed)
		err = b.srv.Close()
		if b.park != nil {
			b.park.Close()
		}
	})
	return err
}
