// Package netcheck measures what an agent would find about its network,
// without starting one: per interface the NAT (P2PD type and delta, RFC
// 4787 classes) of IPv4 and the IPv6 profile (its filtering: IPv6 is
// rarely translated but often filtered), external addresses, each STUN server's latency over UDP
// and TCP, and which port-mapping protocol the gateway speaks. `agent nat`
// prints it.
package netcheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/portmap"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

// Config configures Run. Zero fields take the defaults.
type Config struct {
	// STUN servers; the first of each family that answers change requests
	// (stund) is used for the NAT profile. Required.
	STUN []netip.AddrPort
	// Interfaces selects the NICs (default: every usable one). NICs, when
	// set, are used instead of listing them (lab tests).
	Interfaces netif.Options
	NICs       []netif.NIC
	// Net creates sockets (sock.Host).
	Net sock.Net
	// Timeout bounds each STUN request (default 2 s).
	Timeout time.Duration
	// NoPortMap skips asking the gateway about port mapping.
	NoPortMap bool
	// Progress receives a line as each step starts (nil: none).
	Progress func(string)
}

// Report is the whole result.
type Report struct {
	Interfaces []Interface `json:"interfaces"`
	TCP        []Server    `json:"stun_tcp"` // TCP Binding per server (the OS picks the interface)
	PortMap    PortMap     `json:"port_mapping"`
	Elapsed    string      `json:"elapsed"`
}

// Interface is one NIC's findings.
type Interface struct {
	Name     string    `json:"name"`
	Default  bool      `json:"is_default"`
	NIC      []string  `json:"nic_ips"`
	External []string  `json:"ext_ips"`
	NAT      netif.NAT `json:"nat"`
	NATError string    `json:"nat_error,omitempty"`
	// NAT6 is the profile of the first global IPv6 address (nil without
	// one, or when it could not be measured: NAT6Error says why).
	NAT6      *netif.NAT `json:"nat6,omitempty"`
	NAT6Error string     `json:"nat6_error,omitempty"`
	UDP       []Server   `json:"stun_udp"`
	Reachable bool       `json:"udp_reachable"` // some STUN server answered over UDP
}

// Server is one STUN server's answer.
type Server struct {
	Server    string  `json:"server"`
	LatencyMS float64 `json:"latency_ms,omitempty"`
	Mapped    string  `json:"mapped,omitempty"`
	Error     string  `json:"error,omitempty"`
}

// PortMap is what the gateway said about port mapping.
type PortMap struct {
	Method   string `json:"method,omitempty"` // nat-pmp, upnp; empty: none found
	External string `json:"external,omitempty"`
	Error    string `json:"error,omitempty"`
	Skipped  bool   `json:"skipped,omitempty"`
}

// Run measures. Failures of single probes are in the report; an error
// means nothing could be measured.
func Run(ctx context.Context, cfg Config) (Report, error) {
	start := time.Now()
	if len(cfg.STUN) == 0 {
		return Report{}, errors.New("netcheck: no STUN servers configured")
	}
	if cfg.Net == nil {
		cfg.Net = sock.Host
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
	nics := cfg.NICs
	if nics == nil {
		var err error
		if nics, err = netif.List(cfg.Interfaces); err != nil {
			return Report{}, fmt.Errorf("netcheck: %w", err)
		}
	}
	rep := Report{Interfaces: []Interface{}, TCP: []Server{}}
	for _, nic := range nics {
		rep.Interfaces = append(rep.Interfaces, cfg.checkNIC(ctx, nic))
	}
	cfg.Progress("STUN over TCP")
	for _, s := range cfg.STUN {
		rep.TCP = append(rep.TCP, cfg.tcpBinding(ctx, s))
	}
	if cfg.NoPortMap {
		rep.PortMap.Skipped = true
	} else {
		cfg.Progress("asking the gateway about port mapping (NAT-PMP, UPnP; nothing is mapped)")
		method, ext, err := portmap.Probe(ctx, portmap.Config{Net: cfg.Net, Timeout: cfg.Timeout})
		if err != nil {
			rep.PortMap.Error = err.Error()
		} else {
			rep.PortMap.Method, rep.PortMap.External = method, ext.String()
		}
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, nil
}

// checkNIC measures one interface: STUN latency from each NIC address
// family, external addresses, and the IPv4 and IPv6 NAT profiles.
func (cfg Config) checkNIC(ctx context.Context, nic netif.NIC) Interface {
	out := Interface{Name: nic.Name, Default: nic.Default[netif.AF4] || nic.Default[netif.AF6], UDP: []Server{}, NIC: []string{}, External: []string{}}
	seenExt := map[string]bool{}
	var local4, local6 netip.Addr
	for _, p := range nic.Addrs {
		a := p.Addr()
		if a.IsLinkLocalUnicast() || a.IsLoopback() {
			continue
		}
		out.NIC = append(out.NIC, a.String())
		if a.Is4() && !local4.IsValid() {
			local4 = a
		}
		if a.Is6() && a.IsGlobalUnicast() && !a.IsPrivate() && !local6.IsValid() {
			local6 = a
		}
		cfg.Progress(fmt.Sprintf("%s: STUN over UDP from %s", nic.Name, a))
		for _, s := range cfg.STUN {
			if s.Addr().Is4() != a.Is4() {
				continue
			}
			srv := cfg.udpBinding(ctx, a, s)
			out.UDP = append(out.UDP, srv)
			if srv.Error == "" {
				out.Reachable = true
				if ext, err := netip.ParseAddrPort(srv.Mapped); err == nil && !seenExt[ext.Addr().String()] {
					seenExt[ext.Addr().String()] = true
					out.External = append(out.External, ext.Addr().String())
				}
			}
		}
	}
	if local6.IsValid() {
		cfg.Progress(fmt.Sprintf("%s: IPv6 filtering (NAT type, RFC 4787 classes) from %s", nic.Name, local6))
		n, err := cfg.profile(ctx, local6)
		if err != nil {
			out.NAT6Error = err.Error()
		} else {
			out.NAT6 = &n
		}
	}
	if !local4.IsValid() {
		out.NAT = netif.NAT{Info: "no IPv4 address"}
		return out
	}
	cfg.Progress(fmt.Sprintf("%s: NAT type, delta and RFC 4787 classes from %s", nic.Name, local4))
	n, err := cfg.profile(ctx, local4)
	if err != nil {
		out.NATError = err.Error()
		return out
	}
	out.NAT = n
	return out
}

// profile measures the NAT in front of local against the STUN servers of
// its family.
func (cfg Config) profile(ctx context.Context, local netip.Addr) (netif.NAT, error) {
	var servers []netip.AddrPort
	for _, s := range cfg.STUN {
		if s.Addr().Is4() == local.Is4() {
			servers = append(servers, s)
		}
	}
	if len(servers) == 0 {
		return netif.NAT{}, fmt.Errorf("netcheck: no STUN server for %s", local)
	}
	r, err := nat.Profile(ctx, nat.Config{Servers: servers, Local: local, Net: cfg.Net})
	if err != nil {
		return netif.NAT{}, fmt.Errorf("netcheck: %w", err)
	}
	return netif.NAT{Type: int(r.Type), Info: r.Type.String(), Delta: netif.Delta{Type: int(r.Delta.Type), Value: r.Delta.Value},
		DeltaInfo: r.Delta.Type.String(), Mapping: string(r.Mapping), Filtering: string(r.Filtering)}, nil
}

func (cfg Config) udpBinding(ctx context.Context, local netip.Addr, s netip.AddrPort) Server {
	out := Server{Server: s.String()}
	pc, err := cfg.Net.ListenPacket(ctx, "udp", netip.AddrPortFrom(local, 0).String())
	if err != nil {
		out.Error = err.Error()
		return out
	}
	c := stun.NewConn(pc, 0)
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	t0 := time.Now()
	resp, err := c.Do(rctx, stun.Request{Server: s})
	return finish(out, t0, resp, err)
}

func (cfg Config) tcpBinding(ctx context.Context, s netip.AddrPort) Server {
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	t0 := time.Now()
	resp, err := stun.BindTCP(rctx, cfg.Net, stun.Request{Server: s})
	return finish(Server{Server: s.String()}, t0, resp, err)
}

func finish(out Server, t0 time.Time, resp stun.Response, err error) Server {
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.LatencyMS = float64(time.Since(t0).Microseconds()) / 1000
	out.Mapped = resp.Mapped.String()
	return out
}
