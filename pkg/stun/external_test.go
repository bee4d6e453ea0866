package stun

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// noUDP is the host's network on which UDP sockets cannot be opened, as on
// a sandboxed host or under Wine.
type noUDP struct{ sock.Net }

var errNoUDP = errors.New("udp refused by this host")

func (noUDP) ListenPacket(context.Context, string, string) (net.PacketConn, error) {
	return nil, errNoUDP
}

func TestExternalAddrOverTCPWithoutUDP(t *testing.T) {
	s, _ := startServer(t, ServerConfig{Primary4: lo1, Alternate4: lo2})
	addrs := s.UDPAddrs() // the same ports serve TCP
	dead := netip.MustParseAddrPort("127.0.0.1:9")
	for _, tc := range []struct {
		name    string
		servers []netip.AddrPort
		wantErr string
	}{
		{"one server", addrs[:1], ""},
		{"two agree", addrs[:2], ""},
		{"one dead of three", []netip.AddrPort{dead, addrs[2], addrs[3]}, ""},
		{"all dead", []netip.AddrPort{dead}, "over TCP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExternalAddr(context.Background(), ExternalConfig{
				Net: noUDP{sock.Host}, Local: netip.MustParseAddrPort("127.0.0.1:0"), Servers: tc.servers,
				Timeout: 2 * time.Second,
			})
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, errNoUDP) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %s, %v; want an error naming the UDP refusal and %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Addr() != lo1 || got.Port() == 0 {
				t.Errorf("external %s, want %s and a port", got, lo1)
			}
		})
	}
}
