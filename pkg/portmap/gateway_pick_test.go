package portmap

import (
	"errors"
	"net/netip"
	"testing"
)

func TestPickDefault(t *testing.T) {
	ip := netip.MustParseAddr
	zero := netip.IPv4Unspecified()
	def := func(gw string, scoped bool) route4 {
		return route4{dst: zero, mask: zero, gw: ip(gw), up: true, viaGW: true, scoped: scoped}
	}
	tests := []struct {
		name   string
		routes []route4
		want   string // "" = ErrNoGateway
	}{
		{"none", nil, ""},
		{"one default", []route4{def("192.168.1.1", false)}, "192.168.1.1"},
		{"no netmask given", []route4{{dst: zero, gw: ip("10.0.0.1"), up: true, viaGW: true}}, "10.0.0.1"},
		{"unscoped wins over scoped before it", []route4{def("10.9.9.1", true), def("192.168.1.1", false)}, "192.168.1.1"},
		{"only scoped: the first", []route4{def("10.9.9.1", true), def("10.8.8.1", true)}, "10.9.9.1"},
		{"down", []route4{func() route4 { r := def("192.168.1.1", false); r.up = false; return r }()}, ""},
		{"interface route has no next hop", []route4{{dst: zero, mask: zero, up: true, viaGW: true}}, ""},
		{"0.0.0.0/8 is not the default", []route4{{dst: zero, mask: ip("255.0.0.0"), gw: ip("10.0.0.1"), up: true, viaGW: true}}, ""},
		{"not via a gateway", []route4{{dst: zero, mask: zero, gw: ip("10.0.0.1"), up: true}}, ""},
		{"a subnet route", []route4{{dst: ip("10.1.0.0"), mask: ip("255.255.0.0"), gw: ip("10.0.0.1"), up: true, viaGW: true}, def("10.0.0.254", false)}, "10.0.0.254"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickDefault(tc.routes)
			if tc.want == "" {
				if !errors.Is(err, ErrNoGateway) {
					t.Fatalf("got %v, %v; want ErrNoGateway", got, err)
				}
				return
			}
			if err != nil || got != ip(tc.want) {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}
