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
// second server confirms (with a single server, its answer).
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
		return netip.AddrPort{}, fmt.Errorf("stun: listen %s: %w", local, err)
	}
	c := NewConn(pc, cfg.RTO)
	defer c.Close()

	type answer struct {
		r   Response
		err error
	}
	answers := make(chan answer, len(cfg.Servers))
	for _, s := range cfg.Servers {
		go func() {
			r, err := c.Do(ctx, Request{Server: s})
			answers <- answer{r, err}
		}()
	}
	need := min(2, len(cfg.Servers))
	seen := map[netip.Addr]int{}
	first := map[netip.Addr]netip.AddrPort{}
	var errs []error
	for range cfg.Servers {
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
