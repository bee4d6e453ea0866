package stun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/p2pd-go/p2pd/internal/udpbatch"
	"github.com/prometheus/client_golang/prometheus"
)

// ServerConfig configures a Server. Per family, Primary is required for that
// family to be served; with Alternate set too the server listens on all four
// IP:port combinations and honours CHANGE-REQUEST.
type ServerConfig struct {
	Primary4, Alternate4 netip.Addr
	Primary6, Alternate6 netip.Addr
	Port, AltPort        uint16 // default 3478, 3479
	NoUDP, NoTCP         bool
	Software             string  // SOFTWARE attribute in modern responses; "" omits it
	Rate                 float64 // requests per second per source IP; 0 disables the limit
	Burst                int     // bucket size per source IP
	MaxSources           int     // sources tracked by the limiter (default 1<<20)
	Sockets              int     // UDP sockets per address (SO_REUSEPORT); default GOMAXPROCS
	TCPIdle              time.Duration
	MaxTCPConns          int
	NTPAddrs             []netip.AddrPort // SNTP listeners; none: no SNTP
	Log                  *slog.Logger
	Metrics              *Metrics
}

// Server is a running STUN server.
type Server struct {
	cfg      ServerConfig
	log      *slog.Logger
	m        *Metrics
	lim      *limiter
	software []byte
	fams     []*family
	tcpLns   []net.Listener
	ntpConns []*net.UDPConn
	tcpSem   chan struct{}

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool // set by Close: connections accepted after it are closed at once

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type family struct {
	name   string
	addrs  [4]netip.AddrPort
	hasAlt bool
	udp    [4][]*udpbatch.Conn // outside Go's poller (udpbatch.Detach)
}

// Listen opens every socket the configuration asks for and starts serving.
// Close stops it.
func Listen(cfg ServerConfig) (*Server, error) {
	if cfg.Port == 0 {
		cfg.Port = 3478
	}
	if cfg.AltPort == 0 {
		cfg.AltPort = 3479
	}
	if cfg.Port == cfg.AltPort {
		return nil, fmt.Errorf("stun: port and alternate port are both %d", cfg.Port)
	}
	if cfg.Sockets <= 0 {
		cfg.Sockets = runtime.GOMAXPROCS(0)
	}
	if cfg.TCPIdle <= 0 {
		cfg.TCPIdle = 30 * time.Second
	}
	if cfg.MaxTCPConns <= 0 {
		cfg.MaxTCPConns = 10000
	}
	if cfg.MaxSources <= 0 {
		cfg.MaxSources = 1 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.NoUDP && cfg.NoTCP {
		return nil, errors.New("stun: both UDP and TCP are disabled")
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Log,
		m:        cfg.Metrics,
		lim:      newLimiter(cfg.Rate, cfg.Burst, cfg.MaxSources),
		software: []byte(cfg.Software),
		tcpSem:   make(chan struct{}, cfg.MaxTCPConns),
		conns:    map[net.Conn]struct{}{},
	}
	for _, f := range []struct {
		name     string
		pri, alt netip.Addr
		is4      bool
	}{{"ipv4", cfg.Primary4, cfg.Alternate4, true}, {"ipv6", cfg.Primary6, cfg.Alternate6, false}} {
		if !f.pri.IsValid() {
			if f.alt.IsValid() {
				return nil, fmt.Errorf("stun: alternate %s address %s without a primary", f.name, f.alt)
			}
			continue
		}
		if f.pri.Unmap().Is4() != f.is4 || (f.alt.IsValid() && f.alt.Unmap().Is4() != f.is4) {
			return nil, fmt.Errorf("stun: %s addresses %s/%s are of the wrong family", f.name, f.pri, f.alt)
		}
		if f.alt.IsValid() && f.alt == f.pri {
			return nil, fmt.Errorf("stun: primary and alternate %s address are both %s", f.name, f.pri)
		}
		fam := &family{name: f.name, hasAlt: f.alt.IsValid()}
		fam.addrs[0] = netip.AddrPortFrom(f.pri.Unmap(), cfg.Port)
		fam.addrs[1] = netip.AddrPortFrom(f.pri.Unmap(), cfg.AltPort)
		if fam.hasAlt {
			fam.addrs[2] = netip.AddrPortFrom(f.alt.Unmap(), cfg.Port)
			fam.addrs[3] = netip.AddrPortFrom(f.alt.Unmap(), cfg.AltPort)
		}
		s.fams = append(s.fams, fam)
	}
	if len(s.fams) == 0 {
		return nil, errors.New("stun: no primary address configured (IPv4 or IPv6)")
	}
	if err := s.open(); err != nil {
		s.closeSockets()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.start(ctx)
	return s, nil
}

// used reports the address indexes a family listens on: all four with an
// alternate IP, else only the primary IP and port (without a second IP no
// change can be honoured, so the alternate port would serve no purpose).
func (f *family) used() []int {
	if f.hasAlt {
		return []int{0, 1, 2, 3}
	}
	return []int{0}
}

func (s *Server) open() error {
	ctx := context.Background()
	for _, f := range s.fams {
		network := "udp4"
		if f.name == "ipv6" {
			network = "udp6"
		}
		for _, i := range f.used() {
			if !s.cfg.NoUDP {
				for k := 0; k < s.cfg.Sockets; k++ {
					pc, err := sock.ListenPacket(ctx, sock.Host, network, f.addrs[i].String(), sock.Options{ReusePort: true})
					if err != nil {
						return fmt.Errorf("stun: listen udp %s: %w", f.addrs[i], err)
					}
					bc, err := udpbatch.Detach(pc.(*net.UDPConn), udpBatch)
					if err != nil {
						_ = pc.Close()
						return fmt.Errorf("stun: udp %s: %w", f.addrs[i], err)
					}
					f.udp[i] = append(f.udp[i], bc)
				}
			}
			if !s.cfg.NoTCP {
				var lc net.ListenConfig
				ln, err := lc.Listen(ctx, "tcp"+network[3:], f.addrs[i].String())
				if err != nil {
					return fmt.Errorf("stun: listen tcp %s: %w", f.addrs[i], err)
				}
				s.tcpLns = append(s.tcpLns, &siteListener{Listener: ln, fam: f, at: i})
			}
		}
	}
	for _, a := range s.cfg.NTPAddrs {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			return fmt.Errorf("stun: listen ntp %s: %w", a, err)
		}
		s.ntpConns = append(s.ntpConns, c)
	}
	return nil
}

type siteListener struct {
	net.Listener
	fam *family
	at  int
}

func (s *Server) start(ctx context.Context) {
	for _, f := range s.fams {
		for i := range f.udp {
			for k, c := range f.udp[i] {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.serveUDP(f, i, k, c)
				}()
			}
		}
	}
	for _, ln := range s.tcpLns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.acceptTCP(ctx, ln.(*siteListener))
		}()
	}
	for _, c := range s.ntpConns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveNTP(c)
		}()
	}
	if s.lim != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					s.lim.sweep(now)
				}
			}
		}()
	}
}

// UDPAddrs lists the UDP addresses served (one per address, not per socket).
func (s *Server) UDPAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, f := range s.fams {
		for _, i := range f.used() {
			if len(f.udp[i]) > 0 {
				out = append(out, f.udp[i][0].LocalAddr().(*net.UDPAddr).AddrPort())
			}
		}
	}
	return out
}

// TCPAddrs lists the TCP addresses served.
func (s *Server) TCPAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(s.tcpLns))
	for _, ln := range s.tcpLns {
		out = append(out, ln.Addr().(*net.TCPAddr).AddrPort())
	}
	return out
}

// NTPAddrs lists the SNTP addresses served.
func (s *Server) NTPAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(s.ntpConns))
	for _, c := range s.ntpConns {
		out = append(out, c.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	return out
}

// Close stops serving and waits for every goroutine to end.
func (s *Server) Close() error {
	s.cancel()
	s.closeSockets()
	s.mu.Lock()
	s.closing = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) closeSockets() {
	for _, f := range s.fams {
		for i := range f.udp {
			for _, c := range f.udp[i] {
				_ = c.Close()
			}
		}
	}
	for _, ln := range s.tcpLns {
		_ = ln.Close()
	}
	for _, c := range s.ntpConns {
		_ = c.Close()
	}
}

// counters are one transport and family's metric children, resolved once
// per serving goroutine so the hot path does no label lookups.
type counters struct {
	requests    [4]prometheus.Counter // index: change<<1 | classic
	success     prometheus.Counter
	errorResp   prometheus.Counter
	unknownAttr prometheus.Counter
	changeUnsup prometheus.Counter
	malformed   prometheus.Counter
	rateLimited prometheus.Counter
	send        prometheus.Counter
	latency     prometheus.Observer
}

func (m *Metrics) counters(transport, fam string) *counters {
	c := &counters{
		success:     m.responses.WithLabelValues(transport, "success"),
		errorResp:   m.responses.WithLabelValues(transport, "error"),
		unknownAttr: m.errors.WithLabelValues("unknown_attribute"),
		changeUnsup: m.errors.WithLabelValues("change_unsupported"),
		malformed:   m.malformed.WithLabelValues(transport),
		rateLimited: m.rateLimited.WithLabelValues(transport),
		send:        m.errors.WithLabelValues("send"),
		latency:     m.latency.WithLabelValues(transport),
	}
	for i, k := range []string{"binding", "binding_classic", "change", "change_classic"} {
		c.requests[i] = m.requests.WithLabelValues(transport, fam, k)
	}
	return c
}

// count records the counters of one handled request; it runs before the
// response is sent so a client that got an answer sees it counted.
func (c *counters) count(r result) {
	switch r.out {
	case outMalformed:
		c.malformed.Inc()
		return
	case outSuccess:
		c.success.Inc()
	case outUnknownAttr:
		c.errorResp.Inc()
		c.unknownAttr.Inc()
	case outChangeUnsupported:
		c.errorResp.Inc()
		c.changeUnsup.Inc()
	}
	c.requests[r.kindIndex].Inc()
}
