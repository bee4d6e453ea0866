// Package turnserver is turnd's TURN relay: pion/turn/v3 with long-term and
// TURN REST credentials, a peer-address policy, allocation quotas, an
// optional per-allocation bandwidth cap, Prometheus metrics and draining.
//
// pion/turn v3.0.3 answers a refused peer with an error response without an
// ERROR-CODE (CreatePermission) or with 401 (ChannelBind), and a failed
// allocation with 508; it has no quota hook. So every client socket is
// wrapped: a filter sees each request before pion and answers the ones to
// refuse itself, signed with the client's key (403 for refused peers, 486 over
// quota, 508 while draining), and sees each answer pion sends to follow
// allocations. Relay sockets are wrapped too, for traffic counters, the
// bandwidth cap, a second policy check on every send and allocation ends.
package turnserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pion/turn/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd-go/p2pd/internal/pionlog"
	"github.com/p2pd-go/p2pd/internal/sock"
)

// Config is what a Server needs. Zero values get the defaults noted.
type Config struct {
	Realm   string            // default "p2pd"
	Users   map[string]string // static long-term credentials: name -> password
	Secrets []string          // TURN REST shared secrets; any of them is accepted

	ListenIPs  []netip.Addr // default 0.0.0.0 and :: (an unusable :: is skipped with a warning)
	Port       int          // UDP and TCP port; 0 picks a free one (the same for both)
	NoUDP      bool
	NoTCP      bool
	UDPWorkers int         // SO_REUSEPORT UDP sockets per address; default the CPU count
	TLS        *tls.Config // nil: no TLS listener
	TLSPort    int         // 0 picks a free port

	RelayBind    netip.Addr // relay sockets bind here; default 0.0.0.0
	RelayIP      netip.Addr // advertised relay address (public IP behind 1:1 NAT); default RelayBind, or the first global IPv4
	RelayMinPort int        // default 49152
	RelayMaxPort int        // default 65535

	AllowPeers []netip.Prefix // opened despite the peer policy (never the server's own ports)
	SelfAddrs  []netip.Addr   // extra addresses of this server to refuse as peers
	OwnPorts   []int          // more ports of this host peers may never reach (the admin port); the TURN and TLS ports always count

	TCPIdle     time.Duration // close a TCP/TLS connection without an allocation after this long without data; 0: never
	MaxTCPConns int           // open TCP/TLS connections; 0: unlimited

	MaxAllocsPerUser int   // 0: unlimited
	MaxAllocs        int   // 0: unlimited
	Bandwidth        int64 // bytes/s per allocation and direction; 0: no cap

	Net sock.Net         // nil: the host network, with SO_REUSEPORT workers
	Now func() time.Time // nil: time.Now
}

// Server is a running TURN server.
type Server struct {
	cfg    Config
	pion   *turn.Server
	f      *filter
	log    *slog.Logger
	udp    []net.PacketConn
	tcp    []net.Listener
	tls    []net.Listener
	conns  *connSet
	locks  []io.Closer  // port claims (see claimUDP), held until Close
	poller *relayPoller // nil: none (not Linux)
	once   sync.Once
}

func (c *Config) defaults() error {
	if c.Realm == "" {
		c.Realm = "p2pd"
	}
	if len(c.ListenIPs) == 0 {
		c.ListenIPs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	if c.UDPWorkers <= 0 {
		c.UDPWorkers = runtime.NumCPU()
	}
	if c.Net != nil {
		c.UDPWorkers = 1
	}
	if !c.RelayBind.IsValid() {
		c.RelayBind = netip.IPv4Unspecified()
	}
	if !c.RelayBind.Unmap().Is4() {
		return fmt.Errorf("turnserver: relay bind address %s: pion/turn v3 relays over IPv4 only", c.RelayBind)
	}
	if !c.RelayIP.IsValid() {
		if !c.RelayBind.IsUnspecified() {
			c.RelayIP = c.RelayBind
		} else if ip, ok := firstGlobalIPv4(); ok {
			c.RelayIP = ip
		} else {
			return errors.New("turnserver: no global IPv4 address found to advertise; set the relay IP")
		}
	}
	if c.RelayMinPort == 0 {
		c.RelayMinPort = 49152
	}
	if c.RelayMaxPort == 0 {
		c.RelayMaxPort = 65535
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if len(c.Users) == 0 && len(c.Secrets) == 0 {
		return errors.New("turnserver: no credentials: give a users file or a REST secret")
	}
	return nil
}

func firstGlobalIPv4() (netip.Addr, bool) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ip, ok := netip.AddrFromSlice(n.IP)
			ip = ip.Unmap()
			if ok && ip.Is4() && ip.IsGlobalUnicast() {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

// New starts a server. reg receives its metrics (nil: unregistered).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	self := append([]netip.Addr{cfg.RelayIP}, cfg.SelfAddrs...)
	for _, ip := range cfg.ListenIPs {
		if !ip.IsUnspecified() {
			self = append(self, ip)
		}
	}
	policy, err := HostPolicy(cfg.AllowPeers, self...)
	if err != nil {
		return nil, err
	}
	m := NewMetrics()
	if err := m.Register(reg); err != nil {
		return nil, err
	}
	f := &filter{
		auth:    NewAuth(cfg.Realm, cfg.Users, cfg.Secrets, cfg.Now),
		policy:  policy,
		tracker: newTracker(cfg.MaxAllocsPerUser, cfg.MaxAllocs, m),
		m:       m,
		log:     log,
		now:     cfg.Now,
		batch:   newBatchGroup(),
	}
	nw := cfg.Net
	if nw == nil {
		nw = sock.Host
	}
	gen := &relayGen{
		nw: nw, bind: cfg.RelayBind, advertise: cfg.RelayIP,
		minPort: cfg.RelayMinPort, maxPort: cfg.RelayMaxPort, bandwidth: cfg.Bandwidth, f: f,
		batch: f.batch,
	}
	if err := gen.Validate(); err != nil {
		return nil, err
	}
	policy.WithLiveRelays(gen.live.has)
	s := &Server{cfg: cfg, f: f, log: log, conns: &connSet{m: map[*streamConn]struct{}{}, max: cfg.MaxTCPConns}}
	if err := s.listen(cfg); err != nil {
		s.closeSockets()
		return nil, err
	}
	policy.WithOwnPorts(cfg.OwnPorts...)
	for _, a := range append(append(s.UDPAddrs(), s.TCPAddrs()...), s.TLSAddrs()...) {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			policy.WithOwnPorts(int(ap.Port()))
		}
	}
	warnEphemeral(log, cfg)
	perm := func(_ net.Addr, peer net.IP) bool {
		a, _ := netip.AddrFromSlice(peer) // a bad IP is invalid: refused as unspecified
		if r := policy.checkNotSelf(a); r != "" {
			m.denials.WithLabelValues(r).Inc()
			return false
		}
		return true
	}
	pc := turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   f.auth.Handler,
		LoggerFactory: pionlog.Factory{Log: log},
	}
	chans := newChannels(gen, m, cfg.Now)
	for i, c := range s.udp {
		// s.udp keeps the batched socket: once detached, closing the
		// original would not close it (closeSockets on an error below).
		c = batched(c, gen.batch, listenBatch, true)
		s.udp[i] = c
		pc.PacketConnConfigs = append(pc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn: &packetConn{PacketConn: c, f: f, chans: chans}, RelayAddressGenerator: gen, PermissionHandler: perm,
		})
	}
	for _, l := range s.tcp {
		pc.ListenerConfigs = append(pc.ListenerConfigs, turn.ListenerConfig{
			Listener: &listener{Listener: l, f: f, network: "tcp", conns: s.conns, idle: cfg.TCPIdle}, RelayAddressGenerator: gen, PermissionHandler: perm,
		})
	}
	for _, l := range s.tls {
		pc.ListenerConfigs = append(pc.ListenerConfigs, turn.ListenerConfig{
			Listener: &listener{Listener: l, f: f, network: "tls", conns: s.conns, idle: cfg.TCPIdle}, RelayAddressGenerator: gen, PermissionHandler: perm,
		})
	}
	if gen.poller, err = newRelayPoller(f.batch, log); err != nil {
		log.Warn("relay sockets read one goroutine each", "err", err)
	}
	s.poller = gen.poller
	s.pion, err = turn.NewServer(pc)
	if err != nil {
		s.closeSockets()
		s.poller.close()
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	return s, nil
}

// portTries is how often listen picks again when Port is 0 and the port
// the first UDP socket drew is taken for TCP (or on another address).
const portTries = 8

func (s *Server) listen(cfg Config) error {
	for try := 1; ; try++ {
		err := s.listenAll(cfg)
		if err == nil || cfg.Port != 0 || try == portTries || !errors.Is(err, syscall.EADDRINUSE) {
			return err
		}
		s.closeSockets()
		s.udp, s.tcp, s.tls = nil, nil, nil
	}
}

func (s *Server) listenAll(cfg Config) error {
	ctx := context.Background()
	port := cfg.Port
	for _, ip := range cfg.ListenIPs {
		fam := "4"
		if !ip.Unmap().Is4() {
			fam = "6"
		}
		n := len(s.udp) + len(s.tcp)
		err := s.listenIP(ctx, cfg, fam, ip, &port)
		if err != nil && ip.IsUnspecified() && fam == "6" && n > 0 {
			s.log.Warn("IPv6 listener skipped", "err", err)
			continue
		}
		if err != nil {
			return err
		}
	}
	if cfg.TLS == nil {
		return nil
	}
	tlsPort := cfg.TLSPort
	for _, ip := range cfg.ListenIPs {
		fam := "4"
		if !ip.Unmap().Is4() {
			fam = "6"
		}
		l, err := s.listenTCP(ctx, cfg.Net, "tcp"+fam, addrPort(ip, tlsPort))
		if err != nil && ip.IsUnspecified() && fam == "6" && len(s.tls) > 0 {
			s.log.Warn("IPv6 TLS listener skipped", "err", err)
			continue
		}
		if err != nil {
			return err
		}
		tlsPort = l.Addr().(*net.TCPAddr).Port
		s.tls = append(s.tls, tls.NewListener(l, cfg.TLS))
	}
	return nil
}

func addrPort(ip netip.Addr, port int) string {
	return net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

func (s *Server) listenIP(ctx context.Context, cfg Config, fam string, ip netip.Addr, port *int) error {
	if !cfg.NoUDP {
		if cfg.Net == nil && *port != 0 {
			lock, err := claimUDP(ctx, "udp"+fam, addrPort(ip, *port))
			if err != nil {
				return err
			}
			if lock != nil {
				s.locks = append(s.locks, lock)
			}
		}
		for range cfg.UDPWorkers {
			c, err := listenUDP(ctx, cfg.Net, "udp"+fam, addrPort(ip, *port))
			if err != nil {
				return err
			}
			*port = c.LocalAddr().(*net.UDPAddr).Port
			s.udp = append(s.udp, c)
		}
	}
	if !cfg.NoTCP {
		l, err := s.listenTCP(ctx, cfg.Net, "tcp"+fam, addrPort(ip, *port))
		if err != nil {
			return err
		}
		*port = l.Addr().(*net.TCPAddr).Port
		s.tcp = append(s.tcp, l)
	}
	return nil
}

func listenUDP(ctx context.Context, nw sock.Net, network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	var err error
	if nw != nil {
		c, err = nw.ListenPacket(ctx, network, addr)
	} else {
		c, err = sock.ListenPacket(ctx, sock.Host, network, addr, sock.Options{ReusePort: true})
	}
	if err != nil {
		return nil, fmt.Errorf("turnserver: listen %s %s: %w", network, addr, err)
	}
	if u, ok := c.(*net.UDPConn); ok {
		_ = u.SetReadBuffer(4 << 20)
		_ = u.SetWriteBuffer(4 << 20)
	}
	return c, nil
}

func (s *Server) listenTCP(ctx context.Context, nw sock.Net, network, addr string) (net.Listener, error) {
	var l net.Listener
	var err error
	if nw != nil {
		l, err = nw.Listen(ctx, network, addr)
	} else {
		var lc net.ListenConfig
		l, err = lc.Listen(ctx, network, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("turnserver: listen %s %s: %w", network, addr, err)
	}
	return l, nil
}

func (s *Server) closeSockets() {
	for _, c := range s.udp {
		_ = c.Close()
	}
	for _, l := range append(s.tcp, s.tls...) {
		_ = l.Close()
	}
	s.releaseLocks()
}

func (s *Server) releaseLocks() {
	for _, l := range s.locks {
		_ = l.Close()
	}
	s.locks = nil
}

// UDPAddrs, TCPAddrs and TLSAddrs are the bound listener addresses (one per
// address for UDP, even with several workers).
func (s *Server) UDPAddrs() []net.Addr {
	seen := map[string]bool{}
	var out []net.Addr
	for _, c := range s.udp {
		if a := c.LocalAddr(); !seen[a.String()] {
			seen[a.String()] = true
			out = append(out, a)
		}
	}
	return out
}

func (s *Server) TCPAddrs() []net.Addr { return listenerAddrs(s.tcp) }

func (s *Server) TLSAddrs() []net.Addr { return listenerAddrs(s.tls) }

func listenerAddrs(ls []net.Listener) []net.Addr {
	out := make([]net.Addr, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.Addr())
	}
	return out
}

// Allocations is the number of allocations that exist now.
func (s *Server) Allocations() int { return s.pion.AllocationCount() }

// Drain makes the server refuse new allocations (508); existing ones keep
// working until they end or the server closes.
func (s *Server) Drain() {
	s.f.draining.Store(true)
	s.f.m.draining.Set(1)
}

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.f.draining.Load() }

// Health is nil while the server takes allocations (for /healthz).
func (s *Server) Health() error {
	if s.Draining() {
		return errors.New("turnserver: draining")
	}
	return nil
}

// Shutdown drains, waits until no allocation is left, grace has passed or
// ctx ends, then closes the server.
func (s *Server) Shutdown(ctx context.Context, grace time.Duration) error {
	s.Drain()
	s.log.Info("draining", "allocations", s.Allocations(), "grace", grace)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for s.Allocations() > 0 {
		select {
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
	}
	s.log.Info("closing", "allocations", s.Allocations())
	return s.Close()
}

// Close stops the server at once, ending every allocation and connection.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.pion.Close()
		s.conns.closeAll()
		s.poller.close()
		s.releaseLocks()
		if err != nil {
			err = fmt.Errorf("turnserver: close: %w", err)
		}
	})
	return err
}
