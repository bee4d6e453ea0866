package node

import (
	"context"
	"net"
	"net/netip"

	"github.com/p2pd-go/p2pd/pkg/identity"
)

// Secure runs the initiator's handshake over a raw connection a strategy
// opened (a relayed stream, a punched socket) and returns the pipe. It
// closes c when the handshake fails.
func (n *Node) Secure(ctx context.Context, c net.Conn, peer [identity.KeySize]byte, hello Hello) (*SecureConn, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HandshakeTimeout)
	defer cancel()
	sc, err := Initiate(ctx, c, n.cfg.Identity, peer, hello)
	if err != nil {
		c.Close()
		return nil, err
	}
	return sc, nil
}

// Serve authenticates an inbound connection that did not come through the
// node's listeners (a stream a peer opened over our relay, the responder
// side of a punch) and routes it like a listener's: to the strategy
// awaiting its pipe id, or to OnPipe. It returns at once; a connection over
// the handshake limit is closed. Such connections share the global
// handshake limit but not the per-address one (all relayed peers arrive
// from the relay server's address).
func (n *Node) Serve(c net.Conn) {
	if !n.takeSlot(netip.Addr{}) {
		n.cfg.Metrics.Handshakes.WithLabelValues("busy").Inc()
		c.Close()
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		n.releaseSlot(netip.Addr{})
		c.Close()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		n.inbound(c, netip.Addr{})
	}()
}
