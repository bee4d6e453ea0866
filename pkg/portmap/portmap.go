// Package portmap asks the local gateway to forward a TCP port to this host,
// so peers can connect directly: NAT-PMP (RFC 6886, which PCP gateways such
// as miniupnpd also answer) first, then UPnP IGD.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
	"github.com/p2pd-go/p2pd/internal/sock"
)

// ErrNoGateway means there is no IPv4 default route to ask.
var ErrNoGateway = errors.New("portmap: no IPv4 default gateway")

// Mapping is a port forwarded by the gateway.
type Mapping struct {
	Gateway  netip.Addr
	External netip.AddrPort // the gateway's public address and mapped port
	Internal uint16
	Lifetime time.Duration
	Method   string // MethodNATPMP or MethodUPnP
	n        sock.Net
	timeout  time.Duration
	igd      *igd
}

// Mapping methods.
const (
	MethodNATPMP = "nat-pmp"
	MethodUPnP   = "upnp"
)

// Config configures Map.
type Config struct {
	Net      sock.Net      // nil: sock.Host
	Port     uint16        // local TCP port to forward (external port asked the same)
	Lifetime time.Duration // requested lease (default 1 h)
	Timeout  time.Duration // per request (default 2 s; the library's own is up to 128 s)
	// Method restricts Map to one method; empty tries NAT-PMP, then UPnP.
	Method string
}

// Gateway returns the IPv4 default gateway of the Net's namespace, as the
// operating system's routing table has it (see gateway_*.go).
func Gateway(n sock.Net) (netip.Addr, error) {
	var gw netip.Addr
	err := sock.Do(n, func() (err error) {
		gw, err = defaultGateway()
		return err
	})
	return gw, err
}

// Map asks the default gateway to forward cfg.Port (TCP) to this host.
func Map(ctx context.Context, cfg Config) (*Mapping, error) {
	if cfg.Net == nil {
		cfg.Net = sock.Host
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = time.Hour
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Port == 0 {
		return nil, errors.New("portmap: port 0")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	gw, err := Gateway(cfg.Net)
	if err != nil {
		return nil, err
	}
	var errs []error
	if cfg.Method == "" || cfg.Method == MethodNATPMP {
		m := &Mapping{Gateway: gw, Internal: cfg.Port, Method: MethodNATPMP, n: cfg.Net, timeout: cfg.Timeout}
		err := m.request(cfg.Lifetime)
		if err == nil {
			return m, nil
		}
		errs = append(errs, err)
	}
	if cfg.Method == "" || cfg.Method == MethodUPnP {
		m, err := mapUPnP(ctx, cfg, gw)
		if err == nil {
			return m, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("portmap: unknown method %q (%s, %s)", cfg.Method, MethodNATPMP, MethodUPnP)
	}
	return nil, errors.Join(errs...)
}

func mapUPnP(ctx context.Context, cfg Config, gw netip.Addr) (*Mapping, error) {
	g, err := discover(ctx, cfg.Net, gw, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	ext, err := g.externalIP(ctx)
	if err != nil {
		return nil, err
	}
	if err := g.add(ctx, cfg.Port, cfg.Lifetime); err != nil {
		return nil, err
	}
	g.external = ext
	return &Mapping{Gateway: gw, External: netip.AddrPortFrom(ext, cfg.Port), Internal: cfg.Port,
		Lifetime: cfg.Lifetime, Method: MethodUPnP, n: cfg.Net, timeout: cfg.Timeout, igd: g}, nil
}

// request adds (or with lifetime 0 deletes) the mapping.
func (m *Mapping) request(lifetime time.Duration) error {
	return sock.Do(m.n, func() error {
		c := natpmp.NewClientWithTimeout(net.IP(m.Gateway.AsSlice()), m.timeout)
		ext, err := c.GetExternalAddress()
		if err != nil {
			return fmt.Errorf("portmap: gateway %s does not answer NAT-PMP: %w", m.Gateway, err)
		}
		requested := int(m.Internal)
		if lifetime == 0 {
			requested = 0
		}
		res, err := c.AddPortMapping("tcp", int(m.Internal), requested, int(lifetime/time.Second))
		if err != nil {
			return fmt.Errorf("portmap: gateway %s refused mapping TCP %d: %w", m.Gateway, m.Internal, err)
		}
		m.External = netip.AddrPortFrom(netip.AddrFrom4(ext.ExternalIPAddress), res.MappedExternalPort)
		m.Lifetime = time.Duration(res.PortMappingLifetimeInSeconds) * time.Second
		return nil
	})
}

// Renew refreshes the lease (call it at half the Lifetime).
func (m *Mapping) Renew() error {
	if m.igd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
		defer cancel()
		return m.igd.add(ctx, m.Internal, max(m.Lifetime, time.Minute))
	}
	return m.request(max(m.Lifetime, time.Minute))
}

// Delete removes the mapping from the gateway.
func (m *Mapping) Delete() error {
	if m.igd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
		defer cancel()
		return m.igd.remove(ctx, m.Internal)
	}
	return m.request(0)
}
