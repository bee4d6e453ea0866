package natlab

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestBehaviours6: behind a v6 router a host has a global IPv6 address
// that every peer sees unchanged (no translation), and the router's
// firewall filters inbound UDP and TCP by the class Truth6 names.
func TestBehaviours6(t *testing.T) {
	for _, b := range Behaviours() {
		t.Run(b.String(), func(t *testing.T) {
			t.Parallel()
			lab := New(t)
			addrs := lab.AllocWAN(0, 2)
			w := &world{lab: lab, srv: lab.AddServer("srv", addrs...), a1: addrs[0], a2: addrs[1]}
			w.r = lab.AddRouter6("fw", b)
			w.h = w.r.AddHost("peer")
			if !w.h.IP6().IsGlobalUnicast() || !w.h.IP4().IsValid() {
				t.Fatalf("host addresses %v: want a global IPv6 and an IPv4 address", w.h.Addrs())
			}
			if b != Open && !w.r.LANPrefix6().Contains(w.h.IP6()) {
				t.Fatalf("host address %s outside the router's %s", w.h.IP6(), w.r.LANPrefix6())
			}
			truth := b.Truth6()
			t.Run("udp", func(t *testing.T) { checkUDP6(t, w, w.h.IP6(), truth) })
			tcpTruth := truth
			if b == UDPBlocked { // TCP still passes, filtered like port-restricted
				tcpTruth = PortRestrictedCone.Truth6()
			}
			t.Run("tcp", func(t *testing.T) { checkTCP6(t, w, w.h.IP6(), tcpTruth) })
		})
	}
}

// checkUDP6 checks a non-translating firewall (v6 router, or a firewall
// router's IPv4) from the host's own address own.
func checkUDP6(t *testing.T, w *world, own netip.Addr, want Truth) {
	network := "udp4"
	if own.Is6() {
		network = "udp6"
	}
	listen, m1, m2, m3, ok := udpProbe(t, w, network, func(port int) string { return joinHostPort(own, port) }, want)
	if !ok {
		return
	}
	self := netip.AddrPortFrom(own, 41000)
	if m1 != self || mappingClass(m1, m2, m3) != want.Mapping {
		t.Errorf("seen as %v, %v, %v: want %v everywhere (no translation)", m1, m2, m3, self)
	}
	// Filtering: a fresh socket that has only talked to a1:5000.
	srcOther := checkUDPFiltering(t, w, listen, want)
	// A socket that has sent nothing is reachable only through an open router.
	silent := listen(41200)
	if got, open := udpReaches(srcOther, netip.AddrPortFrom(own, 41200), silent), want.Filtering == EndpointIndependent; got != open {
		t.Errorf("unsolicited datagram to a silent socket arrived: %v, want %v", got, open)
	}
}

func checkTCP6(t *testing.T, w *world, own netip.Addr, want Truth) {
	network := "tcp4"
	if own.Is6() {
		network = "tcp6"
	}
	for _, a := range []string{joinHostPort(w.a1, 6000), joinHostPort(w.a1, 6001), joinHostPort(w.a2, 6000)} {
		tcpReflector(t, w.srv, a)
	}
	m1, err := tcpAsk(t, w.h, 43000, joinHostPort(w.a1, 6000))
	if err != nil {
		t.Fatal(err)
	}
	if self := netip.AddrPortFrom(own, 43000); m1 != self {
		t.Errorf("seen as %v, want %v (no translation)", m1, self)
	}
	checkTCPFiltering(t, w, network, want)
}

// TestSimultaneousOpen6: two hosts behind port-restricted IPv6 firewalls
// cannot dial each other, but a TCP simultaneous open between their known
// global endpoints passes both firewalls, with no port prediction.
func TestSimultaneousOpen6(t *testing.T) {
	lab := New(t)
	ha := lab.AddRouter6("fwa", PortRestrictedCone).AddHost("a")
	hb := lab.AddRouter6("fwb", PortRestrictedCone).AddHost("b")
	ea, eb := netip.AddrPortFrom(ha.IP6(), 44000), netip.AddrPortFrom(hb.IP6(), 44001)

	// A plain dial to a listener behind the other firewall goes nowhere.
	ln, err := hb.Net().Listen(context.Background(), "tcp6", eb.String())
	if err != nil {
		t.Fatal(err)
	}
	reached, err := tcpReaches(ha, joinHostPort(ha.IP6(), 44002), eb)
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	if reached {
		t.Fatal("an unsolicited connection passed a port-restricted IPv6 firewall")
	}

	// Both dial at once, each from its endpoint to the other's, retrying on
	// RST (the other firewall had no state yet) and on a dropped SYN.
	dial := func(h *Host, from, to netip.AddrPort) <-chan error {
		ch := make(chan error, 1)
		go func() {
			deadline := time.Now().Add(10 * time.Second)
			for {
				var c net.Conn
				err := h.Do(func() error {
					d := net.Dialer{Control: reuse, Timeout: 500 * time.Millisecond, LocalAddr: net.TCPAddrFromAddrPort(from)}
					var err error
					c, err = d.Dial("tcp6", to.String())
					return err
				})
				if err == nil {
					_, err = c.Write([]byte("hi " + strconv.Itoa(int(from.Port()))))
					c.Close()
					ch <- err
					return
				}
				var ne net.Error
				if !errors.Is(err, syscall.ECONNREFUSED) && !(errors.As(err, &ne) && ne.Timeout()) && !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
					ch <- err
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		return ch
	}
	da, db := dial(ha, ea, eb), dial(hb, eb, ea)
	if err := <-da; err != nil {
		t.Errorf("a: %v", err)
	}
	if err := <-db; err != nil {
		t.Errorf("b: %v", err)
	}
}
