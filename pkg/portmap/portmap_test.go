package portmap

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/natlab"
)

func reach(t *testing.T, from *natlab.Host, to netip.AddrPort) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := from.Net().DialContext(ctx, "tcp", to.String())
	if err == nil {
		c.Close()
	}
	return err
}

// TestMiniupnpd maps a port through a real miniupnpd gateway, reaches it from
// the WAN, and removes it again.
func TestMiniupnpd(t *testing.T) {
	for _, method := range []string{MethodNATPMP, MethodUPnP} {
		t.Run(method, func(t *testing.T) { testMiniupnpd(t, method) })
	}
}

func testMiniupnpd(t *testing.T, method string) {
	// miniupnpd refuses reserved external addresses (documentation ranges
	// included), so this lab's WAN is a non-reserved /24, inside the lab only.
	lab := natlab.NewWithOptions(t, natlab.Options{WAN4: natlab.PublicWAN4})
	outside := lab.AddServer("outside")
	r := lab.AddRouter("home", natlab.PortRestrictedCone)
	h := r.AddHost("peer")
	gwProc := r.StartMiniupnpd(t)

	ln, err := h.Net().Listen(context.Background(), "tcp4", ":10001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	target := netip.AddrPortFrom(r.WANAddr(), 10001)
	if err := reach(t, outside, target); err == nil {
		t.Fatal("port reachable before mapping: the NAT is not in the way")
	}

	var m *Mapping
	for try := 0; try < 20; try++ { // miniupnpd needs a moment to start
		m, err = Map(context.Background(), Config{Net: h.Net(), Port: 10001, Lifetime: time.Minute, Timeout: 500 * time.Millisecond, Method: method})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("map: %v\nminiupnpd:\n%s", err, gwProc.Output())
	}
	if m.External != target || m.Gateway.String() != "10.1.0.1" || m.Method != method {
		t.Errorf("mapping %+v, want external %s via 10.1.0.1", m, target)
	}
	if err := reach(t, outside, target); err != nil {
		t.Fatalf("mapped port not reachable from the WAN: %v", err)
	}
	if err := m.Renew(); err != nil {
		t.Errorf("renew: %v", err)
	}
	if err := m.Delete(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := reach(t, outside, target); err == nil {
		t.Error("port still reachable after the mapping was deleted")
	}
}

func TestNoGateway(t *testing.T) {
	lab := natlab.New(t)
	h := lab.AddServer("lonely") // WAN host: no default route
	_, err := Map(context.Background(), Config{Net: h.Net(), Port: 10001})
	if !errors.Is(err, ErrNoGateway) {
		t.Fatalf("got %v, want ErrNoGateway", err)
	}
}

func TestGatewaySilent(t *testing.T) {
	lab := natlab.New(t)
	h := lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("peer") // no miniupnpd
	_, err := Map(context.Background(), Config{Net: h.Net(), Port: 10001, Timeout: 200 * time.Millisecond})
	if err == nil {
		t.Fatal("mapped without a NAT-PMP gateway")
	}
	t.Log(err)
}
