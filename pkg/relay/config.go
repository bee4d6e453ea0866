// Package relay is the agent's TURN relay transport: a standing allocation on
// a TURN server (pion/turn client over UDP, falling back to TCP and TLS) and
// reliable ordered streams to peers' relay addresses, one QUIC connection
// (quic-go) per stream, carried in the relayed datagrams.
//
// The design is relay to relay: both agents hold an allocation, learn each
// other's relay address over signalling, Permit it, and one side Dials while
// the other Accepts. Authentication of the peer is not this package's job:
// the node runs its Noise handshake on the returned stream.
package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// Transports to the TURN server.
const (
	UDP = "udp"
	TCP = "tcp"
	TLS = "tls"
)

// DefaultTLSPort is the TURN-over-TLS port tried when a Server has no
// Transport and its Addr names the plain TURN port (RFC 5766 section 6).
const DefaultTLSPort = 5349

// Server is one TURN server.
type Server struct {
	// Addr is host:port. In the NAT lab it must be an IP literal; on the
	// host a name is resolved when an allocation is made.
	Addr string
	// Transport is "udp", "tcp" or "tls". Empty tries udp, then tcp on Addr,
	// then tls on the same host at port 5349 (DefaultTLSPort) — unless Addr's
	// port is already 5349, in which case tls uses it too.
	Transport string
	// ServerName is the name checked in the server's TLS certificate; empty
	// means the host of Addr.
	ServerName string
}

// attempt is one (transport, address) pair to try for a Server.
type attempt struct {
	transport, addr, serverName string
}

// attempts expands s into what is tried, in order.
func (s Server) attempts() []attempt {
	host, port, _ := net.SplitHostPort(s.Addr)
	name := s.ServerName
	if name == "" {
		name = host
	}
	if s.Transport != "" {
		return []attempt{{s.Transport, s.Addr, name}}
	}
	tlsAddr := net.JoinHostPort(host, strconv.Itoa(DefaultTLSPort))
	if port == strconv.Itoa(DefaultTLSPort) {
		tlsAddr = s.Addr
	}
	return []attempt{{UDP, s.Addr, name}, {TCP, s.Addr, name}, {TLS, tlsAddr, name}}
}

func (s Server) validate() error {
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("relay: server %q: %w", s.Addr, err)
	}
	if host == "" {
		return fmt.Errorf("relay: server %q: no host", s.Addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("relay: server %q: bad port %q", s.Addr, port)
	}
	switch s.Transport {
	case "", UDP, TCP, TLS:
	default:
		return fmt.Errorf("relay: server %q: transport %q is not udp, tcp or tls", s.Addr, s.Transport)
	}
	return nil
}

// Config configures a Client. The zero value of every field but Servers and
// the credentials is usable.
type Config struct {
	// Servers are tried in order until one allocation succeeds. Required.
	Servers []Server
	// Username and Password are the long-term credentials: static ones, or
	// an operator-issued TURN REST credential (username "expiry:user",
	// password the base64 HMAC), which go in the same fields. Required.
	Username, Password string
	// TLS is the client configuration for the "tls" transport (e.g. RootCAs
	// of a private CA); ServerName is filled in per server. nil: the system
	// roots.
	TLS *tls.Config
	// Net opens the sockets to the TURN servers. nil: sock.Host. Lab tests
	// pass a natlab Host's Net.
	Net sock.Net
	// Log receives the client's log lines. nil: discarded.
	Log *slog.Logger
	// Registry gets the agent_relay_* metrics. nil: not registered.
	Registry prometheus.Registerer
	// Now is the clock for backoff bookkeeping. nil: time.Now.
	Now func() time.Time
	// KeepAlive is how often the allocation is refreshed. The refresh also
	// tells a lost allocation (437, no answer, a dead TCP connection) and
	// keeps the NAT mapping to the server open. Zero: 15 s.
	KeepAlive time.Duration
	// Lifetime is the allocation lifetime asked for in each refresh. Zero:
	// 10 minutes (the RFC 5766 default); the server may shorten it.
	Lifetime time.Duration
	// RetryMin and RetryMax bound the backoff between allocation rounds
	// after a failure or a loss (doubling from RetryMin). Zero: 500 ms and
	// 30 s.
	RetryMin, RetryMax time.Duration
	// DialTimeout bounds connecting to one server (TCP/TLS connect and the
	// Allocate transaction). Zero: 5 s.
	DialTimeout time.Duration
	// FallbackDelay is the head start each transport of a server gets over
	// the next one (udp, then tcp, then tls race with staggered starts; a
	// failure starts the next at once). Zero: 1 s.
	FallbackDelay time.Duration
	// IdleTimeout closes a relayed stream whose peer has sent nothing for
	// this long (QUIC keep-alives flow every 15 s, so only a dead path is
	// idle). Zero: 30 s.
	IdleTimeout time.Duration
}

// Errors a Client returns.
var (
	// ErrNoAllocation: there is no allocation at the moment (before Start
	// succeeded, while re-allocating, after Close).
	ErrNoAllocation = errors.New("relay: no TURN allocation")
	// ErrAllocationLost is wrapped by errors of streams whose allocation
	// died (server restarted, unreachable, 437): the pipe is broken.
	ErrAllocationLost = errors.New("relay: TURN allocation lost")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("relay: client closed")
)

func (c *Config) validate() error {
	if len(c.Servers) == 0 {
		return errors.New("relay: no TURN servers configured")
	}
	for _, s := range c.Servers {
		if err := s.validate(); err != nil {
			return err
		}
	}
	if c.Username == "" || c.Password == "" {
		return errors.New("relay: TURN username and password are required")
	}
	for name, d := range map[string]time.Duration{"KeepAlive": c.KeepAlive, "Lifetime": c.Lifetime,
		"RetryMin": c.RetryMin, "RetryMax": c.RetryMax, "DialTimeout": c.DialTimeout, "IdleTimeout": c.IdleTimeout, "FallbackDelay": c.FallbackDelay} {
		if d < 0 {
			return fmt.Errorf("relay: %s %v is negative", name, d)
		}
	}
	c.defaults()
	if c.RetryMax < c.RetryMin {
		return fmt.Errorf("relay: RetryMax %v is below RetryMin %v", c.RetryMax, c.RetryMin)
	}
	if c.KeepAlive >= c.Lifetime {
		return fmt.Errorf("relay: KeepAlive %v must be shorter than Lifetime %v", c.KeepAlive, c.Lifetime)
	}
	return nil
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.KeepAlive, 15*time.Second)
	set(&c.Lifetime, 10*time.Minute)
	set(&c.RetryMin, 500*time.Millisecond)
	set(&c.RetryMax, 30*time.Second)
	set(&c.DialTimeout, 5*time.Second)
	set(&c.IdleTimeout, 30*time.Second)
	set(&c.FallbackDelay, time.Second)
	if c.Net == nil {
		c.Net = sock.Host
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// wrapf is fmt.Errorf("relay: <format>: %w", ..., cause) for a cause that may
// itself come from this package: its "relay: " prefix is dropped from the
// text (not from the chain), so a message names the package once.
func wrapf(cause error, format string, args ...any) error {
	return &prefixed{msg: "relay: " + fmt.Sprintf(format, args...) + ": " + strings.TrimPrefix(cause.Error(), "relay: "), cause: cause}
}

type prefixed struct {
	msg   string
	cause error
}

func (p *prefixed) Error() string { return p.msg }
func (p *prefixed) Unwrap() error { return p.cause }
