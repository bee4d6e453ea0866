package turnserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// A second server on a held UDP port refuses to start, with or without TCP,
// whether the holder is another turnd or any SO_REUSEPORT socket.
func TestHeldPortRefused(t *testing.T) {
	first, _ := testServer(t, func(c *Config) { c.NoTCP = true; c.UDPWorkers = 1 })
	port := first.UDPAddrs()[0].(*net.UDPAddr).Port
	for _, noTCP := range []bool{true, false} {
		t.Run(fmt.Sprintf("turnd noTCP=%v", noTCP), func(t *testing.T) {
			_, err := New(claimConfig(port, noTCP), nil, nil)
			if !errors.Is(err, errPortHeld) {
				t.Fatalf("second server on port %d: err = %v, want errPortHeld", port, err)
			}
		})
	}
	// The claim ends with the server: the port can be served again.
	_ = first.Close()
	again, err := New(claimConfig(port, true), nil, nil)
	if err != nil {
		t.Fatalf("after the first server closed: %v", err)
	}
	_ = again.Close()

	// Any other socket in an SO_REUSEPORT group (coturn, a second stund) holds it too.
	other, err := sock.ListenPacket(t.Context(), sock.Host, "udp4", "127.0.0.1:0", sock.Options{ReusePort: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	held := other.LocalAddr().(*net.UDPAddr).Port
	if _, err := New(claimConfig(held, true), nil, nil); !errors.Is(err, errPortHeld) {
		t.Fatalf("server on a port another socket holds with SO_REUSEPORT: err = %v, want errPortHeld", err)
	}
}

func claimConfig(port int, noTCP bool) Config {
	return Config{
		Realm: testRealm, Users: map[string]string{"alice": "pw"}, Port: port, NoTCP: noTCP,
		ListenIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, UDPWorkers: 2,
		RelayBind: netip.MustParseAddr("127.0.0.1"), RelayMinPort: 20000, RelayMaxPort: 20100,
	}
}
