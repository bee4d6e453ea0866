package netcheck

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/p2pd-go/p2pd/pkg/netif"
)

// TestWriteTextNAT6: the text and JSON reports carry the IPv6 profile
// beside the IPv4 one, or why it is missing, and say nothing of IPv6 on
// an interface without a global IPv6 address.
func TestWriteTextNAT6(t *testing.T) {
	nat4 := netif.NAT{Type: 5, Info: "restrict port", Delta: netif.Delta{Type: 2}, DeltaInfo: "equal delta",
		Mapping: "endpoint-independent", Filtering: "address-and-port-dependent"}
	nat6 := netif.NAT{Type: 4, Info: "restrict reuse", Delta: netif.Delta{Type: 2}, DeltaInfo: "equal delta",
		Mapping: "endpoint-independent", Filtering: "address-dependent"}
	for _, tt := range []struct {
		name    string
		ifc     Interface
		text    []string // lines the text must have
		notText string
		jsonHas string
		jsonNot string
	}{
		{"profiled", Interface{Name: "eth0", NAT: nat4, NAT6: &nat6},
			[]string{"  NAT type:                5 restrict port", "  IPv6 NAT type:           4 restrict reuse", "  IPv6 RFC 4787 filtering: address-dependent"},
			"", `"nat6":{"type":4`, "nat6_error"},
		{"not measured", Interface{Name: "eth0", NAT: nat4, NAT6Error: "netcheck: no STUN server for 2001:db8::1"},
			[]string{"  IPv6 NAT:                not measured: netcheck: no STUN server for 2001:db8::1"},
			"IPv6 NAT type", `"nat6_error":"netcheck: no STUN server`, `"nat6":`},
		{"no IPv6", Interface{Name: "eth0", NAT: nat4},
			[]string{"  RFC 4787 filtering:      address-and-port-dependent"},
			"IPv6", `"nat":{"type":5`, "nat6"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := Report{Interfaces: []Interface{tt.ifc}}
			var b strings.Builder
			rep.WriteText(&b)
			out := b.String()
			for _, l := range tt.text {
				if !strings.Contains(out, l+"\n") {
					t.Errorf("text lacks %q:\n%s", l, out)
				}
			}
			if tt.notText != "" && strings.Contains(out, tt.notText) {
				t.Errorf("text has %q:\n%s", tt.notText, out)
			}
			j, err := json.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(j), tt.jsonHas) || strings.Contains(string(j), tt.jsonNot) {
				t.Errorf("JSON %s: want %q, not %q", j, tt.jsonHas, tt.jsonNot)
			}
		})
	}
}
