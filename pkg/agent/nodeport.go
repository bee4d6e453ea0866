package agent

import (
	"context"
	"net/netip"
	"time"

	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

// Behind a NAT the node port has no mapping until it sends something, so
// even a full-cone NAT drops a peer's connection to it. The agent opens a
// TCP connection to a STUN server *from the node port* (sharing it with the
// listener through SO_REUSEPORT): the answer is the port's external
// mapping, which the address advertises, and the open connection, with a
// Binding request every keepAlive, keeps the mapping alive while the agent
// runs.

// nodePortKeepAlive is how often the node port's mapping is refreshed: below
// stund's default TCP idle time (30 s) and far below NATs' TCP timeouts.
const nodePortKeepAlive = 20 * time.Second

// holdNodePorts starts a keeper for each NATed IPv4 route and waits (up to
// a second) for the first answers so the address is right from the start.
func (a *Agent) holdNodePorts(ctx context.Context) {
	a.mu.Lock()
	var locals []netip.Addr
	for _, ifc := range a.ifs {
		rs := ifc.Routes[netif.AF4]
		if len(rs) == 0 || rs[0].Public() || a.stunNotes[rs[0].NICIP()] == stunNone {
			continue
		}
		locals = append(locals, rs[0].NICIP())
	}
	a.mu.Unlock()
	var servers []netip.AddrPort
	for _, s := range a.cfg.STUNServers {
		if s.Addr().Is4() {
			servers = append(servers, s)
		}
	}
	if len(servers) == 0 {
		return
	}
	first := make(chan struct{}, len(locals))
	for _, local := range locals {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.keepNodePort(netip.AddrPortFrom(local, uint16(a.cfg.Port)), servers, first)
		}()
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for range locals {
		select {
		case <-first:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// keepNodePort holds one STUN connection from local, re-dialling with
// backoff when it breaks, until the agent stops.
func (a *Agent) keepNodePort(local netip.AddrPort, servers []netip.AddrPort, first chan<- struct{}) {
	backoff := time.Second
	told := false
	for i := 0; ; i++ {
		srv := servers[i%len(servers)]
		err := a.holdOne(local, srv, func(mapped netip.AddrPort) {
			a.setNodeMapping(local, mapped)
			backoff = time.Second
			if !told {
				told = true
				first <- struct{}{}
			}
		})
		a.cfg.Log.Info("node port mapping connection ended; re-dialling", "local", local, "server", srv, "err", err, "in", backoff)
		select {
		case <-a.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// holdOne dials srv from local and keeps asking for the mapping until the
// connection fails or the agent stops.
func (a *Agent) holdOne(local, srv netip.AddrPort, mapped func(netip.AddrPort)) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-a.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	o := node.PortOptions()
	o.Local = local
	dctx, dcancel := context.WithTimeout(ctx, stun.DefaultTimeout)
	c, err := stun.DialTCPWith(dctx, a.cfg.Net, srv, o)
	dcancel()
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		rctx, rcancel := context.WithTimeout(ctx, stun.DefaultTimeout)
		r, err := c.Do(rctx, stun.Request{Server: srv})
		rcancel()
		if err != nil {
			return err
		}
		mapped(r.Mapped)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(nodePortKeepAlive):
		}
	}
}

// setNodeMapping records the external mapping of the node port on local
// and, when the NAT did not keep the port, advertises the external one.
func (a *Agent) setNodeMapping(local, mapped netip.AddrPort) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nodeMapped == nil {
		a.nodeMapped = map[netip.Addr]netip.AddrPort{}
	}
	old := a.nodeMapped[local.Addr()]
	a.nodeMapped[local.Addr()] = mapped
	if old != mapped {
		a.cfg.Log.Info("node port mapping", "local", local, "external", mapped)
	}
	for i, b := range a.addr.IPv4 {
		// A symmetric NAT maps per destination: the port seen by the
		// STUN server says nothing about the one a peer would reach.
		if b.NIC == local.Addr() && b.Ext == mapped.Addr() && b.NATType != int(nat.SymmetricNAT) {
			a.addr.IPv4[i].Port = mapped.Port()
		}
	}
}

// advertiseForwarded marks the IPv4 blocks on ext as open: the gateway
// forwards the node port there (NAT-PMP/UPnP), so peers may dial it.
func (a *Agent) advertiseForwarded(ext netip.AddrPort) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, b := range a.addr.IPv4 {
		if b.Ext == ext.Addr() {
			a.addr.IPv4[i].NATType = int(nat.OpenInternet)
			a.addr.IPv4[i].Port = ext.Port()
		}
	}
}

// NodeMappings are the learned external mappings of the node port, by NIC
// address.
func (a *Agent) NodeMappings() map[netip.Addr]netip.AddrPort {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[netip.Addr]netip.AddrPort, len(a.nodeMapped))
	for k, v := range a.nodeMapped {
		out[k] = v
	}
	return out
}
