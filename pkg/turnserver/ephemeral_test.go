package turnserver

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

func TestWarnsWhenRelayRangeOverlapsEphemeralPorts(t *testing.T) {
	lo, hi, ok := ephemeralRange()
	if !ok {
		t.Skip("no " + ephemeralFile + " on this system")
	}
	tests := []struct {
		name     string
		min, max int
		warn     bool
	}{
		{"inside", lo, lo + 10, true},
		{"straddles the top", hi - 5, min(hi+5, 65535), true},
		{"below", max(1024, lo-200), lo - 100, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.max < tc.min || tc.min < 1 {
				t.Skipf("ephemeral range %d-%d leaves no room for this case", lo, hi)
			}
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			s, err := New(Config{
				Realm: testRealm, Users: map[string]string{"alice": "pw"},
				ListenIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, UDPWorkers: 1,
				RelayBind: netip.MustParseAddr("127.0.0.1"), RelayMinPort: tc.min, RelayMaxPort: tc.max,
			}, log, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := strings.Contains(buf.String(), "overlaps the kernel's ephemeral ports"); got != tc.warn {
				t.Fatalf("warning logged = %v, want %v; log:\n%s", got, tc.warn, buf.String())
			}
		})
	}
}
