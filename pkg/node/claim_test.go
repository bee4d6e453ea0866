package node

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestClaim: a connection from a claimed endpoint reaches the claim raw
// (no handshake runs on it, so the claimer can be the Noise initiator);
// others, and all after release, take the usual path.
func TestClaim(t *testing.T) {
	n, in := startNode(t, "127.0.0.1")
	b, _ := startNode(t, "127.0.0.2")
	target := n.Addrs()[0].String()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
	claimed := netip.MustParseAddr("127.0.0.3")
	ch, release := n.Claim(func(ap netip.AddrPort) bool { return ap.Addr() == claimed })
	c, err := d.Dial("tcp4", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var raw net.Conn
	select {
	case raw = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the claimed connection did not reach the claim")
	}
	// The claimer runs the initiator over the raw connection; the dialler
	// is the responder: the roles are the claimer's to decide.
	done := make(chan error, 1)
	go func() {
		_, _, err := Accept(context.Background(), c, b.cfg.Identity)
		done <- err
	}()
	sc, err := n.Secure(context.Background(), raw, b.cfg.Identity.Public, Hello{PipeID: "p", Kind: KindPunch})
	if err != nil {
		t.Fatalf("initiator over a claimed connection: %v", err)
	}
	defer sc.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Not claimed: another address, and any address after release.
	release()
	for _, ip := range []string{"127.0.0.4", "127.0.0.3"} {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).Dial("tcp4", target)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			t.Fatalf("a connection from %s was claimed after release: %v", ip, r.RemoteAddr())
		default:
		}
		// The node runs its responder handshake on it: the peer's
		// initiator completes and the pipe reaches OnPipe.
		psc, err := Initiate(context.Background(), c, b.cfg.Identity, n.cfg.Identity.Public, Hello{PipeID: "q", Kind: KindDirect})
		if err != nil {
			t.Fatalf("from %s: %v", ip, err)
		}
		p := <-in
		if p.sc.RemoteNodeID() != b.ID() {
			t.Fatalf("inbound pipe from %s", p.sc.RemoteNodeID())
		}
		p.sc.Close()
		psc.Close()
	}
}
