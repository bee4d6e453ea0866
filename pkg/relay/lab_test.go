package relay

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testbin"
	"github.com/p2pd-go/p2pd/pkg/natlab"
)

// TestLabRelay runs turnd on a lab server and agents behind NATs: one whose
// network drops all UDP (it must fall back to TCP), and two symmetric /
// port-restricted NATs whose links lose 2% of packets each way (and add
// 10 ms each way, so the relayed path has a 40 ms round trip).
func TestLabRelay(t *testing.T) {
	lab := natlab.New(t)
	srv := lab.AddServer("turn")
	ip := srv.IP4()
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte(testUser+":"+testPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Start(t, testbin.Build(t, "cmd/turnd"), "--listen", ip.String(), "--relay-bind", ip.String(), "--relay-ip", ip.String(),
		"--relay-min-port", "40000", "--relay-max-port", "41000", "--users-file", users, "--admin", "", "--realm", "lab")
	server := netip.AddrPortFrom(ip, 3478)
	hostUp(t, srv, server)

	blocked := lab.AddRouter("blocked", natlab.UDPBlocked).AddHost("a")
	lossy := natlab.Link{Loss: 2, Delay: 10 * time.Millisecond}
	sym := lab.AddRouter("sym", natlab.Symmetric, lossy).AddHost("b")
	prc := lab.AddRouter("prc", natlab.PortRestrictedCone, lossy).AddHost("c")
	client := func(h *natlab.Host) *Client {
		c, _ := newClient(t, Config{Servers: []Server{{Addr: server.String()}}, Net: h.Net(), DialTimeout: 2 * time.Second})
		return c
	}
	a, b, c := client(blocked), client(sym), client(prc)

	t.Run("udp blocked falls back to tcp", func(t *testing.T) {
		if a.Transport() != TCP || b.Transport() != UDP {
			t.Fatalf("transports: blocked %q, symmetric %q; want tcp, udp", a.Transport(), b.Transport())
		}
		ca, cb := pair(t, a, b)
		sendAndCheck(t, ca, cb, 1<<20)
	})
	t.Run("1 MiB with 2% loss", func(t *testing.T) {
		cb, cc := pair(t, b, c)
		sendAndCheck(t, cb, cc, 1<<20)
		cc2, cb2 := pair(t, c, b)
		sendAndCheck(t, cc2, cb2, 1<<20)
	})
}

// hostUp waits until something listens on addr, seen from h.
func hostUp(t *testing.T, h *natlab.Host, addr netip.AddrPort) {
	t.Helper()
	eventually(t, 10*time.Second, addr.String()+" listening", func() bool {
		c, err := h.Net().DialContext(context.Background(), "tcp", addr.String())
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
}
