package stun

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

func TestExternalAddr(t *testing.T) {
	s, _ := startServer(t, ServerConfig{Primary4: lo1, Alternate4: lo2})
	addrs := s.UDPAddrs()
	for _, tc := range []struct {
		name    string
		servers []netip.AddrPort
		wantErr bool
	}{
		{"one server", addrs[:1], false},
		{"two agree", addrs[:2], false},
		{"one dead of three", append([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, addrs[2:4]...), false},
		{"all dead", []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExternalAddr(context.Background(), ExternalConfig{
				Local: netip.MustParseAddrPort("127.0.0.1:0"), Servers: tc.servers,
				RTO: 20 * time.Millisecond, Timeout: 500 * time.Millisecond,
			})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %s, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Addr() != lo1 || got.Port() == 0 {
				t.Errorf("external %s", got)
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	c := newConn(t, "udp4", "127.0.0.1:0")
	_, err := c.Do(ctxTimeout(t, 100*time.Millisecond), Request{Server: netip.MustParseAddrPort("127.0.0.1:9")})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
}

// TestClientRejectsWrongSource checks a change request is not satisfied by
// an answer from the address asked (a server ignoring CHANGE-REQUEST).
func TestClientRejectsWrongSource(t *testing.T) {
	for _, tc := range []struct {
		change uint32
		from   string
		ok     bool
	}{
		{0, "192.0.2.1:3478", true},
		{0, "192.0.2.1:3479", false},
		{ChangePort, "192.0.2.1:3479", true},
		{ChangePort, "192.0.2.1:3478", false},
		{ChangePort, "192.0.2.2:3479", false},
		{ChangeIP, "192.0.2.2:3478", true},
		{ChangeIP | ChangePort, "192.0.2.2:3479", true},
		{ChangeIP | ChangePort, "192.0.2.1:3478", false},
	} {
		r := Request{Server: netip.MustParseAddrPort("192.0.2.1:3478"), Change: tc.change}
		if got := acceptable(r, netip.MustParseAddrPort(tc.from)); got != tc.ok {
			t.Errorf("change %d from %s: %v, want %v", tc.change, tc.from, got, tc.ok)
		}
	}
}

func TestSNTP(t *testing.T) {
	s, reg := startServer(t, ServerConfig{Primary4: lo1, NTPAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	_ = reg
	resp, err := ntp.QueryWithOptions(s.NTPAddrs()[0].String(), ntp.QueryOptions{Timeout: 3 * time.Second, Port: int(s.NTPAddrs()[0].Port())})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Validate(); err != nil {
		t.Fatalf("beevik/ntp rejects the answer: %v", err)
	}
	if resp.Stratum != 1 {
		t.Errorf("stratum %d", resp.Stratum)
	}
	// The dispersion is an error bound: it must not claim less than 10 ms.
	if d := resp.RootDispersion; d < 10*time.Millisecond || d > 11*time.Millisecond {
		t.Errorf("root dispersion %s, want 10 ms rounded up", d)
	}
}
