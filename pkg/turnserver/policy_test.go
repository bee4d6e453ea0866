package turnserver

import (
	"net/netip"
	"testing"
)

func TestPolicyRefusesEveryForm(t *testing.T) {
	p := NewPolicy(nil, []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::7")},
		[]netip.Prefix{netip.MustParsePrefix("198.51.100.10/24")})
	for _, tc := range refusedMatrix {
		t.Run(tc.addr, func(t *testing.T) {
			if got := p.Check(netip.MustParseAddr(tc.addr)); got != tc.reason {
				t.Fatalf("Check(%s) = %q, want %q", tc.addr, got, tc.reason)
			}
		})
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808", "198.51.101.255"} {
		t.Run("allowed "+a, func(t *testing.T) {
			if got := p.Check(netip.MustParseAddr(a)); got != "" {
				t.Fatalf("Check(%s) = %q, want allowed", a, got)
			}
		})
	}
}

// refusedMatrix is every refused peer form with the reason it is refused for.
// The server tests send each of them to a real server and expect 403.
var refusedMatrix = []struct{ addr, reason string }{
	{"127.0.0.1", ReasonLoopback},
	{"127.255.255.254", ReasonLoopback},
	{"::1", ReasonLoopback},
	{"0.0.0.0", ReasonUnspecified},
	{"0.1.2.3", ReasonUnspecified},
	{"::", ReasonUnspecified},
	{"10.1.2.3", ReasonPrivate},
	{"172.16.0.1", ReasonPrivate},
	{"172.31.255.254", ReasonPrivate},
	{"192.168.1.1", ReasonPrivate},
	{"fc00::1", ReasonULA},
	{"fd12:3456::1", ReasonULA},
	{"169.254.1.1", ReasonLinkLocal},
	{"fe80::1", ReasonLinkLocal},
	{"fec0::1", ReasonLinkLocal},
	{"100.64.0.1", ReasonCGNAT},
	{"100.127.255.254", ReasonCGNAT},
	{"224.0.0.1", ReasonMulticast},
	{"239.255.255.250", ReasonMulticast},
	{"ff02::1", ReasonMulticast},
	{"255.255.255.255", ReasonBroadcast},
	{"198.51.100.255", ReasonBroadcast}, // directed broadcast of a server network
	{"169.254.169.254", ReasonMetadata},
	{"240.0.0.1", ReasonReserved},
	{"203.0.113.7", ReasonSelf},
	{"2001:db8::7", ReasonSelf},
	// IPv4-mapped forms
	{"::ffff:127.0.0.1", ReasonLoopback},
	{"::ffff:0.0.0.0", ReasonUnspecified},
	{"::ffff:10.0.0.1", ReasonPrivate},
	{"::ffff:192.168.0.1", ReasonPrivate},
	{"::ffff:100.64.0.1", ReasonCGNAT},
	{"::ffff:169.254.169.254", ReasonMetadata},
	{"::ffff:169.254.0.1", ReasonLinkLocal},
	{"::ffff:224.0.0.1", ReasonMulticast},
	{"::ffff:255.255.255.255", ReasonBroadcast},
	{"::ffff:203.0.113.7", ReasonSelf},
	// IPv4-compatible forms
	{"::127.0.0.1", ReasonLoopback},
	{"::10.0.0.1", ReasonPrivate},
	{"::172.16.0.1", ReasonPrivate},
	{"::100.64.0.1", ReasonCGNAT},
	{"::169.254.169.254", ReasonMetadata},
	{"::224.0.0.1", ReasonMulticast},
	{"::255.255.255.255", ReasonBroadcast},
	{"::203.0.113.7", ReasonSelf},
	// IPv4-translated and NAT64 forms
	{"::ffff:0:127.0.0.1", ReasonLoopback},
	{"64:ff9b::127.0.0.1", ReasonLoopback},
	{"64:ff9b::169.254.169.254", ReasonMetadata},
	{"64:ff9b:1::10.0.0.1", ReasonPrivate},
}

func TestPolicyAllowList(t *testing.T) {
	allow, err := ParsePrefixes([]string{"127.0.0.0/8", "10.1.0.0/16", "fd00::1"})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPolicy(allow, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil)
	tests := []struct {
		addr string
		want string
	}{
		{"127.0.0.1", ""}, // allowed even though it is the server's own address
		{"::ffff:127.0.0.2", ""},
		{"10.1.2.3", ""},
		{"10.2.0.1", ReasonPrivate},
		{"fd00::1", ""},
		{"fd00::2", ReasonULA},
		{"::1", ReasonLoopback},
		{"169.254.169.254", ReasonMetadata},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			if got := p.Check(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Fatalf("Check(%s) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string
		wantErr bool
	}{
		{in: []string{"10.0.0.0/8", " 192.168.1.5 ", ""}, want: []string{"10.0.0.0/8", "192.168.1.5/32"}},
		{in: []string{"10.0.0.1/8"}, want: []string{"10.0.0.0/8"}},
		{in: []string{"2001:db8::/32"}, want: []string{"2001:db8::/32"}},
		{in: []string{"10.0.0.0/33"}, wantErr: true},
		{in: []string{"not-an-ip"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(fmtList(tc.in), func(t *testing.T) {
			got, err := ParsePrefixes(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].String() != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func fmtList(l []string) string {
	s := ""
	for _, e := range l {
		s += e + ";"
	}
	return s
}

func FuzzPolicyCheck(f *testing.F) {
	for _, tc := range refusedMatrix {
		f.Add(netip.MustParseAddr(tc.addr).AsSlice())
	}
	f.Add([]byte{8, 8, 8, 8})
	p := NewPolicy(nil, nil, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		r := p.Check(a)
		// Any address whose embedded or unmapped IPv4 form is refused must be
		// refused in its IPv6 forms too.
		if a.Is4() {
			mapped := netip.AddrFrom16(a.As16())
			if (p.Check(mapped) == "") != (r == "") {
				t.Fatalf("%s -> %q but %s -> %q", a, r, mapped, p.Check(mapped))
			}
			v4 := a.As4()
			compat := netip.AddrFrom16([16]byte{12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
			if r != "" && p.Check(compat) == "" {
				t.Fatalf("%s refused (%s) but its compatible form %s is allowed", a, r, compat)
			}
		}
	})
}

func TestPolicySelfOnlyAtRelayPorts(t *testing.T) {
	self := netip.MustParseAddr("203.0.113.7")
	p := NewPolicy(nil, []netip.Addr{self}, nil).WithRelayPorts(49152, 65535)
	tests := []struct {
		port uint16
		want string
	}{
		{49152, ""}, {60000, ""}, {65535, ""},
		{3478, ReasonSelf}, {22, ReasonSelf}, {9102, ReasonSelf}, {49151, ReasonSelf}, {0, ReasonSelf},
	}
	for _, tc := range tests {
		t.Run(netip.AddrPortFrom(self, tc.port).String(), func(t *testing.T) {
			if got := p.CheckPeer(netip.AddrPortFrom(self, tc.port)); got != tc.want {
				t.Fatalf("CheckPeer = %q, want %q", got, tc.want)
			}
			mapped := netip.AddrPortFrom(netip.AddrFrom16(self.As16()), tc.port)
			if got := p.CheckPeer(mapped); got != tc.want {
				t.Fatalf("CheckPeer(%s) = %q, want %q", mapped, got, tc.want)
			}
		})
	}
	// A relay port never opens a special-purpose range.
	if got := p.CheckPeer(netip.MustParseAddrPort("127.0.0.1:50000")); got != ReasonLoopback {
		t.Fatalf("loopback at a relay port: %q", got)
	}
}
