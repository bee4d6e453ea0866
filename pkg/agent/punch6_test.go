package agent

import (
	"net/netip"
	"testing"

	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

func TestCheckTargets6(t *testing.T) {
	ip := netip.MustParseAddr
	blk := func(ext string) peeraddr.Block {
		return peeraddr.Block{Ext: ip(ext), NIC: ip(ext), Port: 10001, NATType: 5, DeltaType: 2}
	}
	from := peeraddr.Address{IPv6: []peeraddr.Block{blk("2001:db8:0:1::10")}}
	mine := peeraddr.Address{IPv6: []peeraddr.Block{blk("2001:db8:0:2::10")}}
	for _, tt := range []struct {
		name    string
		from    peeraddr.Address
		mine    peeraddr.Address
		targets []string
		ok      bool
	}{
		{"none", from, mine, nil, true},
		{"the sender's address", from, mine, []string{"[2001:db8:0:1::10]:10001"}, true},
		{"a third party", from, mine, []string{"[2001:db8:0:3::10]:10001"}, false},
		{"our own address", from, mine, []string{"[2001:db8:0:2::10]:10001"}, false},
		{"we have no global IPv6", from, peeraddr.Address{}, []string{"[2001:db8:0:1::10]:10001"}, false},
		{"the sender's ULA block", peeraddr.Address{IPv6: []peeraddr.Block{blk("fd00::1")}}, mine, []string{"[fd00::1]:10001"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ts []netip.AddrPort
			for _, s := range tt.targets {
				ts = append(ts, netip.MustParseAddrPort(s))
			}
			if err := checkTargets6(tt.from, tt.mine, ts); (err == nil) != tt.ok {
				t.Fatalf("checkTargets6 = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestBlocks6(t *testing.T) {
	ip := netip.MustParseAddr
	b := func(ext string) peeraddr.Block { return peeraddr.Block{Ext: ip(ext), NIC: ip(ext), Port: 10001} }
	a := peeraddr.Address{IPv6: []peeraddr.Block{b("fd00::1"), b("2001:db8:0:1::10")}}
	c := peeraddr.Address{IPv6: []peeraddr.Block{b("2001:db8:0:2::10")}}
	m, p, ok := blocks6(a, c)
	if !ok || m.Ext != ip("2001:db8:0:1::10") || p.Ext != ip("2001:db8:0:2::10") {
		t.Fatalf("blocks6 = %v %v %v: want the first global block of each", m, p, ok)
	}
	if _, _, ok := blocks6(a, peeraddr.Address{IPv6: []peeraddr.Block{b("fe80::1")}}); ok {
		t.Fatal("a link-local block counted as global")
	}
}
