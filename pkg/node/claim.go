package node

import (
	"net"
	"net/netip"
)

// A hole punch opens its connection from the node port, and the peer's SYN
// may arrive at the node listener instead of at the punch's own connect
// (it came while no connect to that peer was under way). Such a connection
// is neither side's Noise initiator yet: the punch decides the roles, so it
// claims connections from the peer's endpoints before the node's accept
// path runs a handshake on them.

type claim struct {
	match func(netip.AddrPort) bool
	ch    chan net.Conn
}

// Claim hands raw connections accepted by the node listeners whose remote
// endpoint satisfies match to the returned channel instead of the node's
// handshake, until release is called. A claimed connection nobody takes
// (the channel holds 4) goes the usual way. release closes connections
// still queued.
func (n *Node) Claim(match func(netip.AddrPort) bool) (<-chan net.Conn, func()) {
	cl := &claim{match: match, ch: make(chan net.Conn, 4)}
	n.mu.Lock()
	n.claims = append(n.claims, cl)
	n.mu.Unlock()
	return cl.ch, func() {
		n.mu.Lock()
		for i, x := range n.claims {
			if x == cl {
				n.claims = append(n.claims[:i], n.claims[i+1:]...)
				break
			}
		}
		n.mu.Unlock()
		for {
			select {
			case c := <-cl.ch:
				c.Close()
			default:
				return
			}
		}
	}
}

// claimed gives c to a claim that matches its remote endpoint.
func (n *Node) claimed(c net.Conn) bool {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, cl := range n.claims {
		if cl.match(ap) {
			select {
			case cl.ch <- c:
				return true
			default:
			}
		}
	}
	return false
}
