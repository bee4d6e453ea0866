package turnserver

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v3"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/p2pd-go/p2pd/pkg/natlab"
)

// labClient allocates on server addr from inside a lab host.
func labClient(t *testing.T, nw sock.Net, network, server string, wantMapped netip.Addr) net.PacketConn {
	t.Helper()
	ctx := context.Background()
	var conn net.PacketConn
	if network == "tcp" {
		c, err := nw.DialContext(ctx, "tcp4", server)
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	} else {
		c, err := nw.ListenPacket(ctx, "udp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: "alice", Password: "alice-pw", Realm: testRealm, LoggerFactory: lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	// The server must see the client from its NAT router, not from the client.
	mapped, err := c.SendBindingRequest()
	if err != nil {
		t.Fatal(err)
	}
	if got := mapped.(*net.UDPAddr).AddrPort().Addr().Unmap(); got != wantMapped {
		t.Fatalf("server sees the client as %s, want the NAT's %s", got, wantMapped)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate from the lab (%s): %v", network, err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return relay
}

// exchange has both relays send to each other until each has heard the other.
func exchange(t *testing.T, a, b net.PacketConn) {
	t.Helper()
	got := make(chan error, 2)
	listen := func(self, other net.PacketConn, msg, want []byte) {
		buf := make([]byte, 1500)
		for attempt := 0; attempt < 40; attempt++ {
			if _, err := self.WriteTo(msg, other.LocalAddr()); err != nil {
				got <- err
				return
			}
			_ = self.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			for {
				n, from, err := self.ReadFrom(buf)
				if err != nil {
					break
				}
				if from.String() == other.LocalAddr().String() && bytes.Equal(buf[:n], want) {
					// keep answering a few times so the other side hears us too
					for range 5 {
						_, _ = self.WriteTo(msg, other.LocalAddr())
					}
					got <- nil
					return
				}
			}
		}
		got <- errNoExchange
	}
	go listen(a, b, []byte("from a"), []byte("from b"))
	go listen(b, a, []byte("from b"), []byte("from a"))
	for range 2 {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
}

var errNoExchange = &net.OpError{Op: "exchange", Err: net.ErrClosed}

func TestSymmetricNATClientsRelay(t *testing.T) {
	lab := natlab.New(t)
	srvHost := lab.AddServer("turn")
	ra := lab.AddRouter("nata", natlab.Symmetric)
	rb := lab.AddRouter("natb", natlab.Symmetric)
	ha, hb := ra.AddHost("a"), rb.AddHost("b")
	ip := srvHost.IP4()
	s, err := New(Config{
		Realm: testRealm, Users: map[string]string{"alice": "alice-pw"},
		ListenIPs: []netip.Addr{ip}, Net: srvHost.Net(),
		RelayBind: ip, RelayIP: ip, RelayMinPort: 40000, RelayMaxPort: 41000,
		// The lab's WAN is TEST-NET-3, which the peer policy refuses, but
		// relay to relay on the server's own address is allowed.
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	udp, tcp := s.UDPAddrs()[0].String(), s.TCPAddrs()[0].String()
	for _, tc := range []struct{ name, netA, netB string }{
		{"udp-udp", "udp", "udp"},
		{"tcp-udp", "tcp", "udp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := func(n string) string {
				if n == "tcp" {
					return tcp
				}
				return udp
			}
			a := labClient(t, ha.Net(), tc.netA, addr(tc.netA), ra.WANAddr())
			b := labClient(t, hb.Net(), tc.netB, addr(tc.netB), rb.WANAddr())
			exchange(t, a, b)
		})
	}
	if metric(t, s.f.m.pktsPeer) == 0 || metric(t, s.f.m.pktsClient) == 0 {
		t.Error("no relayed traffic counted")
	}
}
