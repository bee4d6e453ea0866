package turnserver

import (
	"net/netip"
	"testing"
)

func TestPolicyRefusesEveryForm(t *testing.T) {
	p := NewPolicy(nil, []netip.Addr{netip.MustParseAddr(testSelf4), netip.MustParseAddr(testSelf6)},
		[]netip.Prefix{netip.MustParsePrefix("81.2.69.10/24")})
	for _, tc := range refusedMatrix {
		t.Run(tc.addr, func(t *testing.T) {
			if got := p.Check(netip.MustParseAddr(tc.addr)); got != tc.reason {
				t.Fatalf("Check(%s) = %q, want %q", tc.addr, got, tc.reason)
			}
		})
	}
	for _, a := range allowedMatrix {
		t.Run("allowed "+a, func(t *testing.T) {
			if got := p.Check(netip.MustParseAddr(a)); got != "" {
				t.Fatalf("Check(%s) = %q, want allowed", a, got)
			}
		})
	}
}

// Addresses the tests give the server as its own (public, never contacted).
const (
	testSelf4 = "93.184.216.34"
	testSelf6 = "2a00:1450:4001::7"
)

// allowedMatrix are peers the policy must let through: public addresses in
// every form, and the globally reachable blocks inside refused ranges.
var allowedMatrix = []string{
	"8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808", "81.2.70.255",
	"192.0.0.9", "192.0.0.10", "2001:1::1", "2001:1::2", "2001:3::1", "2001:4:112::1", "2001:20::1", "2001:30::1",
	"2002:808:808::1",           // 6to4 of 8.8.8.8
	"2001:0:808:808::f7f7:f7f7", // Teredo: server 8.8.8.8, client 8.8.8.8
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
	{"81.2.69.255", ReasonBroadcast}, // directed broadcast of a server network
	{"169.254.169.254", ReasonMetadata},
	{"240.0.0.1", ReasonReserved},
	{testSelf4, ReasonSelf},
	{testSelf6, ReasonSelf},
	// IANA special-purpose blocks that are not globally reachable
	{"192.0.0.1", ReasonReserved},
	{"192.0.0.255", ReasonReserved},
	{"192.0.2.1", ReasonDocumentation},
	{"198.51.100.1", ReasonDocumentation},
	{"203.0.113.254", ReasonDocumentation},
	{"198.18.0.1", ReasonBenchmarking},
	{"198.19.255.254", ReasonBenchmarking},
	{"192.88.99.1", ReasonReserved},
	{"100::1", ReasonReserved},
	{"100::ffff:ffff:ffff:ffff", ReasonReserved},
	{"100:0:0:1::1", ReasonReserved},
	{"2001:2::1", ReasonBenchmarking},
	{"2001:10::1", ReasonReserved},  // deprecated ORCHID
	{"2001:100::1", ReasonReserved}, // rest of 2001::/23
	{"2001:1::4", ReasonReserved},
	{"2001:db8::1", ReasonDocumentation},
	{"3fff::1", ReasonDocumentation},
	{"3fff:fff::1", ReasonDocumentation},
	{"5f00::1", ReasonReserved},
	{"64:ff9b:1::808:808", ReasonReserved},
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
	{"::ffff:198.18.0.1", ReasonBenchmarking},
	{"::ffff:" + testSelf4, ReasonSelf},
	// IPv4-compatible forms
	{"::127.0.0.1", ReasonLoopback},
	{"::10.0.0.1", ReasonPrivate},
	{"::172.16.0.1", ReasonPrivate},
	{"::100.64.0.1", ReasonCGNAT},
	{"::169.254.169.254", ReasonMetadata},
	{"::224.0.0.1", ReasonMulticast},
	{"::255.255.255.255", ReasonBroadcast},
	{"::" + testSelf4, ReasonSelf},
	// IPv4-translated and NAT64 forms
	{"::ffff:0:127.0.0.1", ReasonLoopback},
	{"64:ff9b::127.0.0.1", ReasonLoopback},
	{"64:ff9b::169.254.169.254", ReasonMetadata},
	{"64:ff9b:1::10.0.0.1", ReasonReserved}, // local-use NAT64 is refused whatever it carries
	// 6to4 (2002::/16) by the IPv4 address in bits 16-47
	{"2002:7f00:1::1", ReasonLoopback},
	{"2002:a00:1::", ReasonPrivate},
	{"2002:c0a8:101::1", ReasonPrivate},
	{"2002:a9fe:a9fe::1", ReasonMetadata},
	{"2002:c000:201::1", ReasonDocumentation},
	{"2002:5db8:d822::1", ReasonSelf},
	// Teredo (2001::/32) by its server (bits 32-63) and inverted client (96-127) addresses
	{"2001:0:7f00:1::f7f7:f7f7", ReasonLoopback},
	{"2001:0:808:808::f5ff:fffe", ReasonPrivate},   // client 10.0.0.1
	{"2001:0:808:808::5601:fffe", ReasonLinkLocal}, // client 169.254.0.1
	{"2001:0:a9fe:a9fe::f7f7:f7f7", ReasonMetadata},
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

func TestPolicySelfOnlyAtLiveRelay(t *testing.T) {
	self := netip.MustParseAddr(testSelf4)
	live := map[uint16]bool{50000: true}
	p := NewPolicy(nil, []netip.Addr{self}, nil).WithLiveRelays(func(port uint16) bool { return live[port] })
	tests := []struct {
		port uint16
		want string
	}{
		{50000, ""},
		// Free ports of the relay range, or a plain socket bound in it, are not relays.
		{49152, ReasonSelf}, {50001, ReasonSelf}, {65535, ReasonSelf},
		{3478, ReasonSelf}, {22, ReasonSelf}, {9102, ReasonSelf}, {0, ReasonSelf},
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
	// The answer follows the allocation: once it ends the port is closed.
	if _, viaRelay := p.checkSend(netip.AddrPortFrom(self, 50000)); !viaRelay {
		t.Fatal("an allowed live relay port is not reported as such (the relay socket would remember it)")
	}
	delete(live, 50000)
	if got := p.CheckPeer(netip.AddrPortFrom(self, 50000)); got != ReasonSelf {
		t.Fatalf("after the allocation ended: %q, want self", got)
	}
	// A live relay port never opens a special-purpose range to other hosts,
	live[50000] = true
	if got := p.CheckPeer(netip.MustParseAddrPort("127.0.0.1:50000")); got != ReasonLoopback {
		t.Fatalf("loopback at a relay port: %q", got)
	}
	// but the server's own relay address is reachable even inside one (a
	// private deployment, or the NAT lab's TEST-NET-3 WAN).
	lab := NewPolicy(nil, []netip.Addr{netip.MustParseAddr("203.0.113.10")}, nil).WithLiveRelays(func(port uint16) bool { return live[port] })
	for peer, want := range map[string]string{
		"203.0.113.10:50000": "", "203.0.113.10:50001": ReasonDocumentation, "203.0.113.11:50000": ReasonDocumentation,
	} {
		if got := lab.CheckPeer(netip.MustParseAddrPort(peer)); got != want {
			t.Errorf("CheckPeer(%s) = %q, want %q", peer, got, want)
		}
	}
}

func TestPolicyAllowListNeverOpensOwnPorts(t *testing.T) {
	allow, err := ParsePrefixes([]string{"127.0.0.0/8", "::1", "0.0.0.0/0", "::/0"})
	if err != nil {
		t.Fatal(err)
	}
	self := netip.MustParseAddr(testSelf4)
	p := NewPolicy(allow, []netip.Addr{self}, nil).WithOwnPorts(3478, 5349, 9102)
	for _, tc := range []struct {
		peer, want string
	}{
		{"127.0.0.1:3478", ReasonOwnPort},
		{"127.0.0.2:9102", ReasonOwnPort},
		{"[::1]:5349", ReasonOwnPort},
		{"[::ffff:127.0.0.1]:3478", ReasonOwnPort},
		{"[64:ff9b::7f00:1]:3478", ReasonOwnPort},
		{"[2002:7f00:1::1]:9102", ReasonOwnPort},
		{"0.0.0.0:3478", ReasonOwnPort},
		{testSelf4 + ":9102", ReasonOwnPort},
		{"127.0.0.1:4000", ""},    // allowed: not a service port
		{testSelf4 + ":4000", ""}, // the allow list covers the server's address
		{"8.8.8.8:3478", ""},      // another host's TURN port
	} {
		t.Run(tc.peer, func(t *testing.T) {
			if got := p.CheckPeer(netip.MustParseAddrPort(tc.peer)); got != tc.want {
				t.Fatalf("CheckPeer(%s) = %q, want %q", tc.peer, got, tc.want)
			}
		})
	}
}
