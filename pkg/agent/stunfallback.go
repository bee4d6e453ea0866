package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

// What STUN could tell about an interface, when it was less than usual.
const (
	stunUDPBlocked = "udp-blocked" // no answer over UDP; facts learned over TCP
	stunNone       = "unreachable" // no answer over UDP or TCP
)

// blockedNAT is reported for UDP on a network that lets no UDP through:
// P2PD's type 7. TCP still works there (direct, reverse, relay over TCP).
var blockedNAT = natInfo(nat.BlockedNAT, nat.Delta{Type: nat.DeltaRandom}, "", "")

// externalIP finds the external address of local with STUN: over UDP, else
// over TCP (a network that blocks UDP), else it gives up gracefully: the
// NIC address stands in, so the agent still starts and is reachable where
// that address is (its LAN), and the interface says what was not learned.
func (a *Agent) externalIP(ctx context.Context, local netip.Addr, servers []netip.AddrPort) (netip.Addr, error) {
	if len(servers) == 0 {
		return netip.Addr{}, fmt.Errorf("no STUN server for %s", local)
	}
	ap, uerr := stun.ExternalAddr(ctx, stun.ExternalConfig{Net: a.cfg.Net, Local: netip.AddrPortFrom(local, 0), Servers: servers})
	if uerr == nil {
		return ap.Addr(), nil
	}
	ip, terr := a.externalTCP(ctx, local, servers)
	if terr == nil {
		a.cfg.Log.Warn("no STUN answer over UDP: this network seems to block UDP; external address learned over TCP",
			"local", local, "external", ip, "udp_err", uerr)
		a.noteSTUN(local, stunUDPBlocked)
		return ip, nil
	}
	if ctx.Err() != nil {
		return netip.Addr{}, errors.Join(uerr, terr)
	}
	a.cfg.Log.Warn("no STUN server answered over UDP or TCP: external address unknown, advertising the NIC address",
		"local", local, "udp_err", uerr, "tcp_err", terr)
	a.noteSTUN(local, stunNone)
	return local, nil
}

// externalTCP asks the servers in turn over TCP for local's mapped address.
func (a *Agent) externalTCP(ctx context.Context, local netip.Addr, servers []netip.AddrPort) (netip.Addr, error) {
	var errs []error
	for _, s := range servers {
		ctx, cancel := context.WithTimeout(ctx, stun.DefaultTimeout)
		r, err := bindTCP(ctx, a.cfg.Net, s, sock.Options{Local: netip.AddrPortFrom(local, 0)})
		cancel()
		if err == nil {
			return r.Mapped.Addr(), nil
		}
		errs = append(errs, err)
	}
	return netip.Addr{}, errors.Join(errs...)
}

// bindTCP does one Binding request over a fresh TCP connection.
func bindTCP(ctx context.Context, n sock.Net, server netip.AddrPort, o sock.Options) (stun.Response, error) {
	c, err := stun.DialTCPWith(ctx, n, server, o)
	if err != nil {
		return stun.Response{}, err
	}
	defer c.Close()
	return c.Do(ctx, stun.Request{Server: server})
}

func (a *Agent) noteSTUN(local netip.Addr, what string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stunNotes == nil {
		a.stunNotes = map[netip.Addr]string{}
	}
	a.stunNotes[local] = what
}

func (a *Agent) stunNote(local netip.Addr) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stunNotes[local]
}

// interfaceNAT is the NAT record of an interface whose first IPv4 route is
// r4, measured unless STUN said it cannot be. A public route (no
// translation) is measured too, for its filtering (natprofile.go).
func (a *Agent) interfaceNAT(ctx context.Context, nic netif.NIC, r4 netif.Route) netif.NAT {
	switch {
	case a.stunNote(r4.NICIP()) == stunUDPBlocked:
		return blockedNAT
	case a.stunNote(r4.NICIP()) == stunNone:
		return defaultNAT
	case a.cfg.SkipNATProfile && r4.Public():
		return defaultFirewallNAT
	case a.cfg.SkipNATProfile:
		return defaultNAT
	}
	profile := a.cfg.Profile
	if profile == nil {
		profile = a.stunProfiler()
	}
	n, err := profile(ctx, r4.NICIP())
	switch {
	case err != nil && r4.Public():
		a.cfg.Log.Warn("filtering of a public IPv4 route not measured; assuming a stateful firewall (restrict-port)", "if", nic.Name, "err", err)
		return defaultFirewallNAT
	case err != nil:
		a.cfg.Log.Warn("NAT profile failed; assuming port-restricted cone", "if", nic.Name, "err", err)
		return defaultNAT
	case r4.Public():
		return untranslatedNAT(n)
	}
	return n
}
