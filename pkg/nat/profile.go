package nat

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

// Defaults of Config.
const (
	DefaultReplyTimeout = 500 * time.Millisecond // P2PD's NAT_TEST_TIMEOUT
	DefaultDeltaTests   = 12                     // P2PD v3
)

// Config configures Profile.
type Config struct {
	// Servers are STUN servers that answer change requests (stund, coturn
	// with RFC 5780, stuntman). They are tried in order until one answers.
	Servers []netip.AddrPort
	// Local is the local IP to probe from; zero means the unspecified
	// address of the first server's family.
	Local netip.Addr
	// Net creates the sockets (nil: sock.Host).
	Net sock.Net
	// RTO is the first retransmission timeout (0: stun.DefaultRTO).
	RTO time.Duration
	// ReplyTimeout is how long to wait for any one reply (0:
	// DefaultReplyTimeout). It bounds a profile's time: unanswered probes
	// are what decide filtering.
	ReplyTimeout time.Duration
	// DeltaTests is the number of probes per delta round (0: 12).
	DeltaTests int
}

// Result is a NAT profile.
type Result struct {
	Type      Type           `json:"type"`
	Mapping   Class          `json:"mapping"`
	Filtering Class          `json:"filtering"`
	Delta     Delta          `json:"delta"`
	External  netip.AddrPort `json:"external"`  // mapped address of the first probe
	Local     netip.AddrPort `json:"local"`     // that probe's local address
	Server    netip.AddrPort `json:"server"`    // the server used
	Alternate netip.AddrPort `json:"alternate"` // its OTHER-ADDRESS, if any
	Elapsed   time.Duration  `json:"elapsed"`
}

// errNoAnswer means a server did not answer the first probe.
var errNoAnswer = errors.New("nat: server did not answer")

// Profile measures the NAT in front of cfg.Local: P2PD type, RFC 4787
// mapping and filtering, and P2PD delta. All probes are in flight at once;
// see docs/stund.md for the order they are sent in and why.
//
// If no server answers at all, the result is BlockedNAT with unknown
// classes and a nil error; errors are local failures (sockets).
func Profile(ctx context.Context, cfg Config) (Result, error) {
	start := time.Now()
	if len(cfg.Servers) == 0 {
		return Result{}, errors.New("nat: no STUN servers configured")
	}
	if cfg.Net == nil {
		cfg.Net = sock.Host
	}
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = DefaultReplyTimeout
	}
	if cfg.DeltaTests <= 1 {
		cfg.DeltaTests = DefaultDeltaTests
	}
	for _, srv := range cfg.Servers {
		if cfg.Local.IsValid() && cfg.Local.Unmap().Is4() != srv.Addr().Unmap().Is4() {
			continue
		}
		r, err := profileWith(ctx, cfg, srv)
		if errors.Is(err, errNoAnswer) {
			if ctx.Err() != nil {
				return Result{}, fmt.Errorf("nat: %w", ctx.Err())
			}
			continue
		}
		if err != nil {
			return Result{}, err
		}
		r.Elapsed = time.Since(start)
		return r, nil
	}
	return Result{Type: BlockedNAT, Mapping: Unknown, Filtering: Unknown, Elapsed: time.Since(start)}, nil
}

// prober owns the sockets of one profile run.
type prober struct {
	cfg     Config
	network string
	ip      netip.Addr
	conns   []*stun.Conn
}

func (p *prober) close() {
	for _, c := range p.conns {
		_ = c.Close()
	}
}

func (p *prober) listen(ctx context.Context, port int) (*stun.Conn, error) {
	pc, err := p.cfg.Net.ListenPacket(ctx, p.network, netip.AddrPortFrom(p.ip, uint16(port)).String())
	if err != nil {
		return nil, err
	}
	c := stun.NewConn(pc, p.cfg.RTO)
	p.conns = append(p.conns, c)
	return c, nil
}

// randomPorts binds n sockets on random ports in [4000, 65535) (P2PD round 1).
func (p *prober) randomPorts(ctx context.Context, n int) ([]*stun.Conn, error) {
	out := make([]*stun.Conn, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 20*n {
			return nil, errors.New("nat: cannot bind delta test sockets")
		}
		c, err := p.listen(ctx, 4000+rand.IntN(65535-4000))
		if err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// consecutivePorts binds n sockets on ports start..start+n-1 (P2PD round 2).
func (p *prober) consecutivePorts(ctx context.Context, n int) ([]*stun.Conn, error) {
	for range 20 {
		start := 4000 + rand.IntN(65535-4000-n)
		var out []*stun.Conn
		for i := range n {
			c, err := p.listen(ctx, start+i)
			if err != nil {
				break
			}
			out = append(out, c)
		}
		if len(out) == n {
			return out, nil
		}
		for _, c := range out {
			_ = c.Close()
		}
	}
	return nil, errors.New("nat: cannot bind consecutive delta test sockets")
}

// localIP finds the source address the system uses toward srv.
func localIP(ctx context.Context, n sock.Net, srv netip.AddrPort) (netip.Addr, error) {
	c, err := n.DialContext(ctx, "udp", srv.String())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("nat: route to %s: %w", srv, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

type answer struct {
	r   stun.Response
	err error
}

func (p *prober) wait(ctx context.Context, x *stun.Txn) answer {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ReplyTimeout)
	defer cancel()
	r, err := x.Wait(ctx)
	return answer{r, err}
}

func profileWith(ctx context.Context, cfg Config, srv netip.AddrPort) (Result, error) {
	p := &prober{cfg: cfg, network: "udp4", ip: cfg.Local}
	if !srv.Addr().Unmap().Is4() {
		p.network = "udp6"
	}
	defer p.close()
	bindIP := p.ip
	if !bindIP.IsValid() || bindIP.IsUnspecified() {
		ip, err := localIP(ctx, cfg.Net, srv)
		if err != nil {
			return Result{}, err
		}
		p.ip = ip
	}
	n := cfg.DeltaTests
	// Bind every socket before sending anything.
	mapConn, err := p.listen(ctx, 0)
	if err != nil {
		return Result{}, fmt.Errorf("nat: listen: %w", err)
	}
	filterConn, err := p.listen(ctx, 0)
	if err != nil {
		return Result{}, fmt.Errorf("nat: listen: %w", err)
	}
	round1, err := p.randomPorts(ctx, n)
	if err != nil {
		return Result{}, err
	}
	round2, err := p.consecutivePorts(ctx, n)
	if err != nil {
		return Result{}, err
	}

	// Send in a fixed order from this goroutine: on a NAT that hands out
	// ports sequentially, each delta round's mappings must be created
	// back to back, with no other new mapping between them.
	send := func(c *stun.Conn, r stun.Request) *stun.Txn {
		x, err := c.Send(r)
		if err != nil {
			return nil
		}
		return x
	}
	test1 := send(mapConn, stun.Request{Server: srv})
	changeBoth := send(filterConn, stun.Request{Server: srv, Change: stun.ChangeIP | stun.ChangePort})
	changePort := send(filterConn, stun.Request{Server: srv, Change: stun.ChangePort})
	d1 := make([]*stun.Txn, n)
	for i, c := range round1 {
		d1[i] = send(c, stun.Request{Server: srv})
	}
	d2 := make([]*stun.Txn, n)
	for i, c := range round2 {
		d2[i] = send(c, stun.Request{Server: srv})
	}
	if test1 == nil {
		return Result{}, fmt.Errorf("nat: cannot send to %s", srv)
	}

	var wg sync.WaitGroup
	collect := func(x *stun.Txn, out *answer) {
		if x == nil {
			out.err = errors.New("nat: not sent")
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			*out = p.wait(ctx, x)
		}()
	}
	var both, port answer
	collect(changeBoth, &both)
	collect(changePort, &port)
	s1 := make([]answer, n)
	s2 := make([]answer, n)
	for i := range n {
		collect(d1[i], &s1[i])
		collect(d2[i], &s2[i])
	}

	// Mapping tests II and III need the alternate address from test I.
	first := p.wait(ctx, test1)
	noAlt := answer{err: errors.New("nat: server has no alternate address")}
	t2, t3 := noAlt, noAlt
	alt := first.r.Other
	if first.err == nil && alt.IsValid() {
		x2 := send(mapConn, stun.Request{Server: netip.AddrPortFrom(alt.Addr(), srv.Port())})
		x3 := send(mapConn, stun.Request{Server: alt})
		collect(x2, &t2)
		collect(x3, &t3)
	}
	wg.Wait()
	if first.err != nil {
		return Result{}, errNoAnswer
	}

	res := Result{
		External:  first.r.Mapped,
		Local:     netip.AddrPortFrom(p.ip, mapConn.LocalAddr().Port()),
		Server:    srv,
		Alternate: alt,
		Mapping:   mappingClass(first, t2, t3),
		Filtering: filteringClass(alt.IsValid(), both, port),
	}
	open := first.r.Mapped.Addr() == p.ip
	res.Type = p2pdType(open, res.Mapping, res.Filtering)
	res.Delta = ClassifyDelta(samples(round1, s1), samples(round2, s2), DeltaThreshold(n))
	return res, nil
}

func samples(conns []*stun.Conn, ans []answer) []Sample {
	out := make([]Sample, len(conns))
	for i, c := range conns {
		out[i] = Sample{Local: int(c.LocalAddr().Port()), Mapped: int(ans[i].r.Mapped.Port()), OK: ans[i].err == nil}
	}
	return out
}

// mappingClass is RFC 5780 section 4.3.
func mappingClass(t1, t2, t3 answer) Class {
	switch {
	case t1.err != nil || t2.err != nil:
		return Unknown
	case t1.r.Mapped == t2.r.Mapped:
		return EndpointIndependent
	case t3.err != nil:
		return Unknown
	case t2.r.Mapped == t3.r.Mapped:
		return AddressDependent
	}
	return AddressAndPortDependent
}

// filteringClass is RFC 5780 section 4.4. Without an alternate address the
// server cannot answer change requests, so nothing can be concluded.
func filteringClass(hasAlt bool, both, port answer) Class {
	var er *stun.ErrorResponse
	switch {
	case !hasAlt:
		return Unknown
	case both.err == nil:
		return EndpointIndependent
	case port.err == nil:
		return AddressDependent
	case errors.As(both.err, &er) || errors.As(port.err, &er):
		return Unknown // the server refused the change request
	}
	return AddressAndPortDependent
}
