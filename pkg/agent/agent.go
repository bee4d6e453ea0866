// Package agent assembles a p2pd agent: it finds its interfaces and external
// addresses, publishes a peer address, receives signalling, listens for
// pipes and opens them to peers. cmd/agent and the REST API sit on top of it.
package agent

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/p2pd-go/p2pd/pkg/clock"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/pipe"
	"github.com/p2pd-go/p2pd/pkg/portmap"
	"github.com/p2pd-go/p2pd/pkg/relay"
	"github.com/p2pd-go/p2pd/pkg/signal"
	"github.com/prometheus/client_golang/prometheus"
)

// Profiler measures the NAT in front of a local IPv4 address.
type Profiler func(ctx context.Context, local netip.Addr) (netif.NAT, error)

// Config configures an Agent.
type Config struct {
	// Identity, or StateDir to load/create node.key in.
	Identity *identity.Identity
	StateDir string
	// Net creates sockets (sock.Host when nil).
	Net sock.Net
	// NICs, when set, are used instead of listing the interfaces (lab tests
	// list them inside the host's namespace).
	NICs       []netif.NIC
	Interfaces netif.Options
	// STUNServers resolve external addresses (IPv4 and IPv6 entries).
	STUNServers []netip.AddrPort
	// Profile measures each interface's NAT; nil uses pkg/nat against
	// STUNServers (they must answer change requests: stund does).
	Profile Profiler
	// SkipNATProfile assumes P2PD's default NAT (port-restricted cone,
	// random delta) instead of measuring it; an untranslated route (public
	// IPv4, IPv6) is assumed behind a firewall that filters the same way
	// (restrict port, equal delta), not open.
	SkipNATProfile bool
	// Brokers is the shared MQTT broker list; the agent subscribes on up to
	// three of them (its address's signal offsets).
	Brokers []signal.Broker
	// BrokerTLS verifies tls:// brokers (nil: the system's roots).
	BrokerTLS *tls.Config
	// Port is the node listener's port (node.DefaultPort when 0).
	Port int
	// OnPipe receives inbound pipes. Nil keeps them open with only the
	// built-in ECHO answering.
	OnPipe func(*Pipe)
	// Node timeouts (see node.Config).
	DirectTimeout, ReverseTimeout time.Duration
	// Relay configures the TURN relay strategy: a standing allocation
	// (pkg/relay) that every connect can use at once. Nil: no relay. Its
	// Net, Log and Registry default to the agent's.
	Relay *relay.Config
	// Delays and Deadlines tune the strategy race per strategy name (see
	// node.Config); nil keeps node's defaults.
	Delays, Deadlines map[string]time.Duration
	// MaxInbound bounds the open inbound pipes (default 64), and
	// MaxInboundPerPeer those from one node (default 8); more are closed.
	MaxInbound, MaxInboundPerPeer int
	// NoPortMap turns off asking the gateway (NAT-PMP/PCP) to forward the
	// node port.
	NoPortMap bool
	// StartTimeout bounds interface resolution and broker connection.
	StartTimeout time.Duration
	// Clock configures the meeting-time clock of hole punching (clock.go).
	Clock ClockConfig
	// Migrate tunes moving relay-won pipes to a direct path (migrate.go).
	Migrate MigrateConfig
	// PunchTransports are the transports the punch strategy races
	// (PunchTCP, PunchUDP); empty: both.
	PunchTransports []string
	Registry        prometheus.Registerer
	Log             *slog.Logger
}

// Pipe is an authenticated pipe to a peer with P2PD pipe semantics.
type Pipe struct {
	*pipe.Pipe
	Peer   string // the remote node id, proven by the handshake
	Kind   string // direct or reverse
	PipeID string
	Local  netip.AddrPort // this end of the connection
	// Report is how the pipe was made: the connect report for outbound
	// pipes; for inbound ones the kind and the handshake phase.
	// FullReport adds what happened since (migration, migrate.go).
	Report node.Report
	mig    *session // nil unless the pipe is resumable
}

// Agent is a running agent.
type Agent struct {
	cfg     Config
	id      *identity.Identity
	node    *node.Node
	sig     *signal.Client
	pm      *pipe.Metrics
	mu      sync.Mutex
	ifs     []netif.Interface
	inPeer  map[string]int // open inbound pipes per peer
	inTotal int
	refused prometheus.Counter
	mapping *portmap.Mapping
	pmState PortMapStatus
	stunSt  stunState
	started time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
	addr    peeraddr.Address
	offsets []int
	// stunNotes says, per local address, what STUN could not tell
	// (stunUDPBlocked, stunNone); absent when all went well.
	stunNotes map[netip.Addr]string
	// nodeMapped is the node port's external mapping per NIC address.
	nodeMapped map[netip.Addr]netip.AddrPort
	relay      *relay.Client // nil without Config.Relay
	closeOnce  sync.Once
	cancel     context.CancelFunc
	clock      *clock.Clock
	punch      *punchStrategy
	mig        *migrator
}

// New checks cfg; Start brings the agent up.
func New(cfg Config) (*Agent, error) {
	if cfg.Net == nil {
		cfg.Net = sock.Host
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Port == 0 {
		cfg.Port = node.DefaultPort
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("agent: port %d out of range 1-65535", cfg.Port)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("agent: no MQTT brokers configured (signalling needs at least one)")
	}
	if len(cfg.STUNServers) == 0 {
		return nil, errors.New("agent: no STUN servers configured")
	}
	if err := cfg.Clock.validate(cfg.STUNServers); err != nil {
		return nil, err
	}
	id := cfg.Identity
	if id == nil {
		if cfg.StateDir == "" {
			return nil, errors.New("agent: config needs an Identity or a StateDir")
		}
		var created bool
		var err error
		id, created, err = identity.LoadOrCreate(cfg.StateDir)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		if created {
			cfg.Log.Info("created node key", "dir", cfg.StateDir)
		}
	}
	if cfg.MaxInbound <= 0 {
		cfg.MaxInbound = 64
	}
	if cfg.MaxInboundPerPeer <= 0 {
		cfg.MaxInboundPerPeer = 8
	}
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_inbound_refused_total",
		Help: "Authenticated inbound pipes closed because of the inbound limits."})
	return &Agent{cfg: cfg, id: id, pm: pipe.NewMetrics(), inPeer: map[string]int{}, refused: refused,
		pmState: PortMapStatus{State: PortMapOff}}, nil
}

// ID is the agent's node id.
func (a *Agent) ID() string { return identity.NodeID(a.id.Public) }

// Start resolves interfaces, connects signalling and opens the listeners.
func (a *Agent) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	defer cancel()
	a.offsets = chooseOffsets(a.ID(), len(a.cfg.Brokers))
	if err := a.loadInterfaces(ctx); err != nil {
		return err
	}
	nm := node.NewMetrics()
	sm := signal.NewMetrics()
	for _, r := range []interface {
		Register(prometheus.Registerer) error
	}{nm, sm, a.pm} {
		if err := r.Register(a.cfg.Registry); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	if err := promreg.Register(a.cfg.Registry, "agent", a.refused); err != nil {
		return err
	}
	var err error
	a.sig, err = signal.NewClient(signal.ClientConfig{
		Identity: a.id, Brokers: a.cfg.Brokers, Offsets: a.offsets, Net: a.cfg.Net, TLS: a.cfg.BrokerTLS,
		Handler: a.onSignal, Metrics: sm, Opener: signal.OpenerConfig{Metrics: sm}, Log: a.cfg.Log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if a.clock, err = a.newClock(); err != nil {
		return err
	}
	if a.punch, err = newPunchStrategy(a); err != nil {
		return err
	}
	if a.mig, err = newMigrator(a); err != nil {
		return err
	}
	extra := []node.Strategy{a.punch}
	var rs *relayStrategy
	if a.cfg.Relay != nil {
		if a.relay, err = a.newRelay(); err != nil {
			return err
		}
		rs = newRelayStrategy(a, a.relay)
		extra = append(extra, rs)
	}
	a.node, err = node.New(node.Config{
		Identity: a.id,
		Listen:   []string{fmt.Sprintf("0.0.0.0:%d", a.cfg.Port), fmt.Sprintf("[::]:%d", a.cfg.Port)},
		Net:      a.cfg.Net, Signal: a.sig, Address: a.Address, OnPipe: a.inbound,
		DirectTimeout: a.cfg.DirectTimeout, ReverseTimeout: a.cfg.ReverseTimeout,
		Extra: extra, Delays: a.cfg.Delays, Deadlines: a.cfg.Deadlines,
		Metrics: nm, Log: a.cfg.Log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := a.node.Start(ctx); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := a.sig.Start(ctx); err != nil {
		a.node.Close()
		return fmt.Errorf("agent: signalling: %w", err)
	}
	a.stop = make(chan struct{})
	a.runClock()
	var bg context.Context
	bg, a.cancel = context.WithCancel(context.Background())
	if rs != nil {
		a.startRelay(ctx, bg, rs)
	}
	a.holdNodePorts(ctx)
	a.awaitClock(ctx)
	if !a.cfg.NoPortMap {
		a.startPortMap()
	}
	a.mu.Lock()
	a.started = time.Now()
	a.mu.Unlock()
	a.cfg.Log.Info("agent up", "node_id", a.ID(), "address", a.addr.String())
	return nil
}

// Close removes the port mapping and stops signalling and the node. It may
// be called more than once.
func (a *Agent) Close() { a.closeOnce.Do(a.close) }

func (a *Agent) close() {
	a.stunSt.close()
	if a.cancel != nil {
		a.cancel()
	}
	if a.stop != nil {
		close(a.stop)
		a.wg.Wait()
		a.stop = nil
	}
	if a.sig != nil {
		a.sig.Close()
	}
	if a.mig != nil {
		a.mig.close()
	}
	if a.punch != nil {
		a.punch.close()
	}
	if a.node != nil {
		a.node.Close()
	}
	if a.relay != nil {
		a.relay.Close()
	}
}

func (a *Agent) onSignal(m *signal.Message) {
	if a.node.HandleSignal(m) {
		return
	}
	a.cfg.Log.Debug("signalling message ignored", "type", m.Type, "from", m.FromID())
}

// Address is the agent's current peer address.
func (a *Agent) Address() (peeraddr.Address, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.addr.NodeID == "" {
		return peeraddr.Address{}, errors.New("agent: no address yet")
	}
	return a.addr, nil
}

// Strategies lists the agent's strategies in priority order.
func (a *Agent) Strategies() []string { return a.node.StrategyNames() }

// Interfaces are the started interfaces.
func (a *Agent) Interfaces() []netif.Interface {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]netif.Interface(nil), a.ifs...)
}

// Connect opens a pipe to the peer at addr (a P2PD address string),
// racing the named strategies (all configured ones when none are named).
func (a *Agent) Connect(ctx context.Context, addr string, strategies ...string) (*Pipe, node.Report, error) {
	return a.ConnectWith(ctx, addr, node.Options{Strategies: strategies})
}

// ConnectWith is Connect with per-connect options: strategies, a deadline
// per strategy, no stagger.
func (a *Agent) ConnectWith(ctx context.Context, addr string, o node.Options) (*Pipe, node.Report, error) {
	to, err := peeraddr.Parse(addr)
	if err != nil {
		return nil, node.Report{}, fmt.Errorf("agent: %w", err)
	}
	sc, rep, err := a.node.ConnectWith(ctx, to, o)
	if err != nil {
		return nil, rep, fmt.Errorf("agent: connect to %s: %w", to.NodeID, err)
	}
	var conn net.Conn = sc
	var s *session
	if sc.Hello().Resume {
		s = a.mig.newSession(sc, rep.Winner, time.Now().Add(-rep.Total))
		s.to = to
		conn = s.rc
	}
	p := a.wrap(conn, sc, rep.Winner, "")
	p.Report = rep
	if s != nil {
		p.mig = s
		a.mig.start(s)
	}
	return p, rep, nil
}

// inbound takes an authenticated pipe from the node, within the limits.
func (a *Agent) inbound(sc *node.SecureConn, h node.Hello) {
	if a.mig != nil && a.mig.claim(sc, h) {
		return // a peer's pipe moving to a new path
	}
	peer := sc.RemoteNodeID()
	a.mu.Lock()
	if a.inTotal >= a.cfg.MaxInbound || a.inPeer[peer] >= a.cfg.MaxInboundPerPeer {
		a.mu.Unlock()
		a.refused.Inc()
		a.cfg.Log.Info("inbound pipe refused: too many open", "peer", peer)
		sc.Close()
		return
	}
	a.inTotal++
	a.inPeer[peer]++
	a.mu.Unlock()
	var conn net.Conn = sc
	var s *session
	if h.Resume && a.mig != nil {
		s = a.mig.newSession(sc, h.Kind, time.Now().Add(-h.Handshake))
		conn = s.rc
	}
	p := a.wrap(conn, sc, h.Kind, h.PipeID)
	p.mig = s
	p.Report = node.Report{Winner: h.Kind, Phases: []node.Phase{{Strategy: "inbound " + h.Kind + " handshake", Duration: h.Handshake, Result: "ok", Transport: sc.LocalAddr().Network()}}}
	p.OnClose(func(error) {
		a.mu.Lock()
		a.inTotal--
		if a.inPeer[peer]--; a.inPeer[peer] <= 0 {
			delete(a.inPeer, peer)
		}
		a.mu.Unlock()
	})
	if a.cfg.OnPipe != nil {
		a.cfg.OnPipe(p)
	}
}

// AllMessages is the subscription every pipe starts with: it queues every
// message (bounded, oldest dropped) so nothing that arrives before the
// application subscribes is lost.
var AllMessages = pipe.Sub{}

// MaxMessage is the largest message an agent pipe carries.
const MaxMessage = 256 << 10

// echoBacklog is how many ECHO replies may wait per pipe; more are dropped.
const echoBacklog = 16

// wrap gives a secure conn pipe semantics, the AllMessages queue and the
// built-in ECHO: a message "ECHO x" is answered with "x".
// conn is sc itself, or the resumable stream running over it.
func (a *Agent) wrap(conn net.Conn, sc *node.SecureConn, kind, pipeID string) *Pipe {
	gate := &gatedConn{Conn: conn, ready: make(chan struct{})}
	local, _ := netip.ParseAddrPort(sc.LocalAddr().String())
	opts := pipe.Options{Metrics: a.pm, Log: a.cfg.Log, MaxMessage: MaxMessage}
	p := &Pipe{Pipe: pipe.New(gate, opts), Peer: sc.RemoteNodeID(), Kind: kind, PipeID: pipeID, Local: local}
	_ = p.Subscribe(AllMessages)
	// One worker answers ECHOs in order; the handler never blocks the reader.
	replies := make(chan []byte, echoBacklog)
	_ = p.SubscribeFunc(pipe.Sub{Msg: "^ECHO "}, func(m pipe.Message) {
		select {
		case replies <- m.Data[len("ECHO "):]:
		default: // the peer sends ECHOs faster than it reads the answers
		}
	})
	go func() {
		for {
			select {
			case r := <-replies:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = p.Send(ctx, r)
				cancel()
			case <-p.Done():
				return
			}
		}
	}()
	close(gate.ready) // subscriptions are in place: start reading
	return p
}

// gatedConn holds the pipe's reader back until its subscriptions exist.
type gatedConn struct {
	net.Conn
	ready chan struct{}
}

func (g *gatedConn) Read(b []byte) (int, error) {
	<-g.ready
	return g.Conn.Read(b)
}

// chooseOffsets picks up to three brokers for a node, in an order derived
// from its id, so a restarted agent lands on the same brokers.
func chooseOffsets(nodeID string, n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	h := sha256.Sum256([]byte(nodeID))
	x := binary.LittleEndian.Uint64(h[:8])
	var out []int
	for len(idx) > 0 && len(out) < 3 {
		k := int(x % uint64(len(idx)))
		x /= uint64(len(idx))
		out = append(out, idx[k])
		idx = append(idx[:k], idx[k+1:]...)
	}
	return out
}

// interface resolution
func (a *Agent) resolver() netif.Resolver {
	return netif.ResolverFunc(func(ctx context.Context, local netip.Addr) (netip.Addr, error) {
		var servers []netip.AddrPort
		for _, s := range a.cfg.STUNServers {
			if s.Addr().Is4() == local.Is4() {
				servers = append(servers, s)
			}
		}
		return a.externalIP(ctx, local, servers)
	})
}
