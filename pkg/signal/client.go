package signal

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// Client defaults.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultPublishTimeout = 5 * time.Second
	DefaultMaxReconnect   = 30 * time.Second
	DefaultCopies         = 2 // brokers each message is published to
)

// Broker is one MQTT broker of the shared broker list.
type Broker struct {
	URL      string // tcp://host:port, mqtt://, tls://, ssl:// or mqtts://
	Username string // optional
	Password string // optional; never logged
}

// ClientConfig configures a Client.
type ClientConfig struct {
	Identity *identity.Identity
	// Brokers is the broker list every agent shares; a peer address's signal
	// offsets index into it.
	Brokers []Broker
	// Offsets are the 1-3 brokers this agent subscribes on (its address's
	// signal offsets).
	Offsets []int
	// Handler receives every accepted message. Calls may run concurrently.
	Handler func(*Message)
	// Opener sets the clock and limits of the envelope checks.
	Opener OpenerConfig
	// Metrics, when set, counts traffic and drops.
	Metrics *Metrics
	// Net makes the TCP connections (sock.Host when nil).
	Net sock.Net
	// TLS is used for tls://, ssl:// and mqtts:// brokers.
	TLS *tls.Config
	// Log receives connection events and drops (at debug level).
	Log *slog.Logger
	// Timeouts; zero takes the defaults above.
	ConnectTimeout       time.Duration
	PublishTimeout       time.Duration
	MaxReconnectInterval time.Duration
	// Copies is how many brokers a message is published to (default 2).
	Copies int
}

// Client sends and receives signalling messages through MQTT brokers. It
// subscribes to Topic(own node id) on each of its own brokers, reconnecting
// (with paho's backoff) and resubscribing whenever a connection drops, and
// opens publish-only connections to other brokers when a peer listens there.
type Client struct {
	cfg    ClientConfig
	opener *Opener
	log    *slog.Logger
	topic  string
	suffix string // random client id suffix, so two processes never kick each other

	errMu    sync.Mutex
	dialErrs map[string]error // last dial or TLS failure per broker host

	mu      sync.Mutex
	conns   map[int]*brokerConn
	up      chan struct{} // closed once the first subscription succeeds
	started bool
	closed  bool
}

type brokerConn struct {
	offset     int
	cli        mqtt.Client
	own        bool
	connectMu  sync.Mutex // one lazy connect at a time
	mu         sync.Mutex
	subscribed bool
}

// Topic is the MQTT topic a node listens on.
func Topic(nodeID string) string { return "p2pd/" + nodeID }

// NewClient checks cfg and returns an unstarted Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Identity == nil {
		return nil, errors.New("signal: client: no identity")
	}
	if len(cfg.Offsets) == 0 || len(cfg.Offsets) > peeraddr.MaxSignal {
		return nil, fmt.Errorf("signal: client: %d own broker offsets, want 1-%d", len(cfg.Offsets), peeraddr.MaxSignal)
	}
	for i, o := range cfg.Offsets {
		if o < 0 || o >= len(cfg.Brokers) {
			return nil, fmt.Errorf("signal: client: offset %d not in the broker list (0-%d)", o, len(cfg.Brokers)-1)
		}
		if slices.Contains(cfg.Offsets[:i], o) {
			return nil, fmt.Errorf("signal: client: offset %d repeated", o)
		}
	}
	for i, b := range cfg.Brokers {
		if _, err := brokerURL(b.URL); err != nil {
			return nil, fmt.Errorf("signal: client: broker %d: %w", i, err)
		}
	}
	if cfg.Handler == nil {
		cfg.Handler = func(*Message) {}
	}
	if cfg.Net == nil {
		cfg.Net = sock.Host
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.MaxReconnectInterval <= 0 {
		cfg.MaxReconnectInterval = DefaultMaxReconnect
	}
	if cfg.Copies <= 0 {
		cfg.Copies = DefaultCopies
	}
	ocfg := cfg.Opener
	ocfg.Metrics = cfg.Metrics
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("signal: client: %w", err)
	}
	return &Client{
		cfg:    cfg,
		opener: NewOpener(cfg.Identity, ocfg),
		log:    cfg.Log.With("component", "signal"),
		topic:  Topic(cfg.Identity.NodeID()),
		suffix: hex.EncodeToString(rnd[:]),
		conns:  make(map[int]*brokerConn),
		up:     make(chan struct{}),
	}, nil
}

func brokerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("bad url %q: %w", s, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "tls", "ssl", "mqtts":
	default:
		return nil, fmt.Errorf("url %q: scheme %q, want tcp, mqtt, tls, ssl or mqtts", s, u.Scheme)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("url %q: no port", s)
	}
	return u, nil
}

// Start connects to the agent's own brokers and returns once it is
// subscribed on at least one of them, or with an error when ctx ends first.
// Brokers that are down keep being retried in the background until Close;
// calling Start again waits for them once more.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("signal: client closed")
	}
	if !c.started {
		c.started = true
		for _, o := range c.cfg.Offsets {
			bc := c.newConn(o, true)
			c.conns[o] = bc
			bc.cli.Connect() // with ConnectRetry the token completes only once connected
		}
	}
	c.mu.Unlock()
	select {
	case <-c.up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("signal: no broker subscription (%s): %w", c.brokerProblems(), ctx.Err())
	}
}

// brokerProblems names each own broker with its last connection failure.
func (c *Client) brokerProblems() string {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	var out []string
	for _, o := range c.cfg.Offsets {
		raw := c.cfg.Brokers[o].URL
		shown, host := raw, ""
		if u, err := brokerURL(raw); err == nil {
			host = u.Host
			u.User = nil
			shown = u.String()
		}
		why := "no MQTT session (check the credentials and the broker's log)"
		if err := c.dialErrs[host]; err != nil {
			why = err.Error()
		}
		out = append(out, shown+": "+why)
	}
	return strings.Join(out, "; ")
}

func (c *Client) noteDial(host string, err error) {
	c.errMu.Lock()
	if c.dialErrs == nil {
		c.dialErrs = map[string]error{}
	}
	c.dialErrs[host] = err
	c.errMu.Unlock()
}

func (c *Client) newConn(offset int, own bool) *brokerConn {
	b := c.cfg.Brokers[offset]
	bc := &brokerConn{offset: offset, own: own}
	opts := mqtt.NewClientOptions().
		AddBroker(b.URL).
		SetClientID(fmt.Sprintf("%s-%s", c.cfg.Identity.NodeID(), c.suffix)).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(own).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(c.cfg.MaxReconnectInterval).
		SetConnectTimeout(c.cfg.ConnectTimeout).
		SetKeepAlive(30 * time.Second).
		SetCustomOpenConnectionFn(c.dial)
	if b.Username != "" {
		opts.SetUsername(b.Username)
	}
	if b.Password != "" {
		opts.SetPassword(b.Password)
	}
	log := c.log.With("broker", offset)
	opts.SetOnConnectHandler(func(cli mqtt.Client) {
		log.Info("signal: broker connected")
		if !own {
			return
		}
		if c.cfg.Metrics != nil {
			c.cfg.Metrics.Reconnects.Inc()
		}
		tok := cli.Subscribe(c.topic, 1, c.onMessage)
		if !tok.WaitTimeout(c.cfg.ConnectTimeout) || tok.Error() != nil {
			log.Warn("signal: subscribe failed", "err", tok.Error())
			cli.Disconnect(0) // dropping the connection makes paho retry
			return
		}
		c.setSubscribed(bc, true)
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		log.Warn("signal: broker connection lost", "err", err)
		c.setSubscribed(bc, false)
	})
	bc.cli = mqtt.NewClient(opts)
	return bc
}

func (c *Client) setSubscribed(bc *brokerConn, on bool) {
	bc.mu.Lock()
	changed := bc.subscribed != on
	bc.subscribed = on
	bc.mu.Unlock()
	if !changed {
		return
	}
	if c.cfg.Metrics != nil {
		if on {
			c.cfg.Metrics.Connected.Inc()
		} else {
			c.cfg.Metrics.Connected.Dec()
		}
	}
	if on {
		c.mu.Lock()
		select {
		case <-c.up:
		default:
			close(c.up)
		}
		c.mu.Unlock()
	}
}

// dial opens broker connections through cfg.Net.
func (c *Client) dial(u *url.URL, opts mqtt.ClientOptions) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opts.ConnectTimeout)
	defer cancel()
	conn, err := c.cfg.Net.DialContext(ctx, "tcp", u.Host)
	c.noteDial(u.Host, err)
	if err != nil {
		return nil, fmt.Errorf("signal: dial broker: %w", err)
	}
	switch u.Scheme {
	case "tls", "ssl", "mqtts":
		cfg := &tls.Config{}
		if c.cfg.TLS != nil {
			cfg = c.cfg.TLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			c.noteDial(u.Host, fmt.Errorf("TLS: %w", err))
			return nil, fmt.Errorf("signal: broker tls: %w", err)
		}
		return tc, nil
	}
	return conn, nil
}

func (c *Client) onMessage(_ mqtt.Client, msg mqtt.Message) {
	m, err := c.opener.Open(msg.Payload())
	if err != nil {
		c.log.Debug("signal: dropped message", "reason", Reason(err), "err", err)
		return
	}
	c.cfg.Handler(m)
}

// Subscribed returns the offsets of the own brokers currently subscribed.
func (c *Client) Subscribed() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, o := range c.cfg.Offsets {
		bc := c.conns[o]
		if bc == nil {
			continue
		}
		bc.mu.Lock()
		if bc.subscribed {
			out = append(out, o)
		}
		bc.mu.Unlock()
	}
	return out
}

// SendTo sends body to the node of a peer address, through the brokers its
// signal offsets name.
func (c *Client) SendTo(ctx context.Context, to peeraddr.Address, body Body) error {
	return c.Send(ctx, to.NodeID, to.Signal, body)
}

// Send seals body for the node peerID and publishes the envelope to Copies
// (2) of the brokers in peerOffsets, preferring brokers already connected and
// trying the next offset when a publish fails. It succeeds when at least one
// broker acknowledged the message. A zero body.TS is set from the client's
// clock (ClientConfig.Opener.Now).
func (c *Client) Send(ctx context.Context, peerID string, peerOffsets []int, body Body) error {
	pub, err := identity.ParseNodeID(peerID)
	if err != nil {
		return fmt.Errorf("signal: send: %w", err)
	}
	if body.TS == 0 {
		body.TS = c.opener.cfg.Now().UnixMilli()
	}
	env, err := Seal(c.cfg.Identity, pub, body, nil)
	if err != nil {
		return err
	}
	cands := c.candidates(peerOffsets)
	if len(cands) == 0 {
		return fmt.Errorf("signal: send: no usable broker among peer offsets %v", peerOffsets)
	}
	topic := Topic(peerID)
	// The message counts as delivered once one broker has taken it: the
	// other copies go on in the background (bounded by PublishTimeout), so
	// a frozen broker never slows a send down.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PublishTimeout)
	results := make(chan error, len(cands))
	next, inflight := 0, 0
	launch := func() {
		o := cands[next]
		next++
		inflight++
		go func() { results <- c.publish(bg, o, topic, env) }()
	}
	for next < len(cands) && inflight < c.cfg.Copies {
		launch()
	}
	var errs []string
	delivered := false
wait:
	for {
		if inflight == 0 {
			if next < len(cands) && ctx.Err() == nil {
				launch()
				continue
			}
			break
		}
		select {
		case err := <-results:
			inflight--
			if err == nil {
				delivered = true
				break wait
			}
			errs = append(errs, err.Error())
			if next < len(cands) && ctx.Err() == nil {
				launch() // keep Copies under way
			}
		case <-ctx.Done():
			errs = append(errs, "gave up waiting: "+ctx.Err().Error())
			break wait
		}
	}
	go func() { // reap the copies still under way, then free their context
		for range inflight {
			if err := <-results; err != nil {
				c.log.Debug("signal: a second copy was not taken", "err", err)
			}
		}
		cancel()
	}()
	if !delivered {
		return fmt.Errorf("signal: send %s: no broker took the message: %s", body.Type, strings.Join(errs, "; "))
	}
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.Sent.WithLabelValues(string(body.Type)).Inc()
	}
	return nil
}

// candidates orders the valid peer offsets: brokers with an open connection
// first, the rest after, each group in the peer's order.
func (c *Client) candidates(peerOffsets []int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var open, rest []int
	for _, o := range peerOffsets {
		if o < 0 || o >= len(c.cfg.Brokers) || slices.Contains(open, o) || slices.Contains(rest, o) {
			continue
		}
		if bc := c.conns[o]; bc != nil && bc.cli.IsConnectionOpen() {
			open = append(open, o)
		} else {
			rest = append(rest, o)
		}
	}
	return append(open, rest...)
}

// publish sends env to one broker, connecting to it first if needed.
func (c *Client) publish(ctx context.Context, offset int, topic string, env []byte) error {
	err := c.publishOnce(ctx, offset, topic, env)
	if c.cfg.Metrics != nil {
		if err != nil {
			c.cfg.Metrics.PubErrors.Inc()
		} else {
			c.cfg.Metrics.Publishes.Inc()
		}
	}
	return err
}

func (c *Client) publishOnce(ctx context.Context, offset int, topic string, env []byte) error {
	bc, err := c.conn(ctx, offset)
	if err != nil {
		return err
	}
	if !bc.cli.IsConnectionOpen() {
		return fmt.Errorf("broker %s: not connected", c.cfg.Brokers[offset].URL)
	}
	tok := bc.cli.Publish(topic, 1, false, env)
	if err := wait(ctx, tok, c.cfg.PublishTimeout); err != nil {
		return fmt.Errorf("broker %s: publish: %w", c.cfg.Brokers[offset].URL, err)
	}
	return nil
}

// conn returns the connection to a broker, opening a publish-only one when
// the broker is not one of ours.
func (c *Client) conn(ctx context.Context, offset int) (*brokerConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("signal: client closed")
	}
	bc := c.conns[offset]
	if bc == nil {
		bc = c.newConn(offset, false)
		c.conns[offset] = bc
	}
	c.mu.Unlock()
	if bc.own {
		return bc, nil
	}
	bc.connectMu.Lock()
	defer bc.connectMu.Unlock()
	if bc.cli.IsConnected() { // open, or reconnecting in the background
		return bc, nil
	}
	if err := wait(ctx, bc.cli.Connect(), c.cfg.ConnectTimeout); err != nil {
		return nil, fmt.Errorf("broker %s: connect: %w", c.cfg.Brokers[offset].URL, err)
	}
	return bc, nil
}

// wait waits for a paho token, a timeout or ctx.
func wait(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return errors.New("timed out")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close disconnects from every broker. The client cannot be restarted.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	conns := make([]*brokerConn, 0, len(c.conns))
	for _, bc := range c.conns {
		conns = append(conns, bc)
	}
	c.mu.Unlock()
	for _, bc := range conns {
		bc.cli.Disconnect(250)
		c.setSubscribed(bc, false)
	}
}
