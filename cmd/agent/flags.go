package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"
)

// stunServers parses --stun: ip:port or host:port entries; a host name
// stands for each address it resolves to.
func stunServers(ctx context.Context, list []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range list {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap)
			continue
		}
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("--stun %q: want ip:port or host:port: %w", s, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("--stun %q: bad port %q", s, port)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("--stun %q: %w", s, err)
		}
		for _, ip := range ips {
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--stun: at least one STUN server is needed")
	}
	return out, nil
}

// checkBrokerURL refuses broker URLs the signalling client cannot use.
func checkBrokerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "tls", "ssl", "mqtts":
	default:
		return fmt.Errorf("%q: scheme %q, want tcp:// or tls:// (also mqtt://, ssl://, mqtts://)", s, u.Scheme)
	}
	if u.Port() == "" || u.Hostname() == "" {
		return fmt.Errorf("%q: want scheme://host:port", s)
	}
	return nil
}
