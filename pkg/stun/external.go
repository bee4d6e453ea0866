package stun

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// ExternalConfig configures ExternalAddr.
type ExternalConfig struct {
	Net     sock.Net       // nil: sock.Host
	Local   netip.AddrPort // local bind address; zero: any IPv4 address
	Servers []netip.AddrPort
	RTO     time.Duration // 0: DefaultRTO
	Timeout time.Duration // 0: DefaultTimeout
}

// ExternalAddr asks every server at once, from one UDP socket, for the
// socket's mapped address and returns the first mapped address whose IP a
// second server confirms (with a single server, its answer). When the host
// will not open a UDP socket at all, it asks over TCP instead (see
// externalTCP).
func ExternalAddr(ctx context.Context, cfg ExternalConfig) (netip.AddrPort, error) {
	if len(cfg.Servers) == 0 {
		return netip.AddrPort{}, errors.New("stun: no servers")
	}
	n := cfg.Net
	if n == nil {
		n = sock.Host
	}
	local := cfg.Local
	if !local.IsValid() {
		local = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	pc, err := n.ListenPacket(ctx, "udp", local.String())
	if err != nil {
		// Some hosts refuse UDP sockets outright (a sandbox; Wine, which
		// lacks an ioctl Go's net package sets on every Windows UDP socket).
		// A TCP connection from the same IP shows the same external IP.
		ap, terr := externalTCP(ctx, n, local, cfg.Servers)
		if terr != nil {
			return netip.AddrPort{}, fmt.Errorf("stun: listen %s: %w; over TCP: %w", local, err, terr)
		}
		return ap, nil
	}
	c := NewConn(pc, cfg.RTO)
	defer c.Close()

	answers := make(chan answer, len(cfg.Servers))
	for _, s := range cfg.Servers {
		go func() {
			r, err := c.Do(ctx, Request{Server: s})
			answers <- answer{r, err}
		}()
	}
	return agree(answers, len(cfg.Servers))
}

// externalTCP is ExternalAddr over STUN/TCP (RFC 8489 framing), one
// connection per server from local's IP. The port it returns is that of one
// of those connections, so only the IP is meaningful.
func externalTCP(ctx context.Context, n sock.Net, local netip.AddrPort, servers []netip.AddrPort) (netip.AddrPort, error) {
	answers := make(chan answer, len(servers))
	for _, s := range servers {
		go func() {
			c, err := sock.Dial(ctx, n, "tcp", s.String(), sock.Options{Local: netip.AddrPortFrom(local.Addr(), 0)})
			if err != nil {
				answers <- answer{err: fmt.Errorf("stun: dial tcp %s: %w", s, err)}
				return
			}
			t := newTCPConn(c)
			defer t.Close()
			r, err := t.Do(ctx, Request{Server: s})
			answers <- answer{r, err}
		}()
	}
	return agree(answers, len(servers))
}

type answer struct {
	r   Response
	err error
}

// agree reads count answers and returns the first mapped address whose IP a
// second server confirms (with a single server, its answer).
func agree(answers <-chan answer, count int) (netip.AddrPort, error) {
	need := min(2, count)
	seen := map[netip.Addr]int{}
	first := map[netip.Addr]netip.AddrPort{}
	var errs []error
	for range count {
		a := <-answers
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		ip := a.r.Mapped.Addr()
		if _, ok := first[ip]; !ok {
			first[ip] = a.r.Mapped
		}
		seen[ip]++
		if seen[ip] >= need {
			return first[ip], nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("stun: no two servers agree on the external address: %w", errors.Join(errs...))
}
