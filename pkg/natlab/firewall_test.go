package natlab

import "testing"

// TestFirewall4: behind a firewall router a host has a public IPv4
// address that every peer sees unchanged (no translation), and the
// router filters inbound UDP and TCP by the class Truth6 names.
func TestFirewall4(t *testing.T) {
	for _, b := range Behaviours() {
		t.Run(b.String(), func(t *testing.T) {
			t.Parallel()
			lab := New(t)
			addrs := lab.AllocWAN(2, 0)
			w := &world{lab: lab, srv: lab.AddServer("srv", addrs...), a1: addrs[0], a2: addrs[1]}
			w.r = lab.AddFirewall("fw", b)
			w.h = w.r.AddHost("peer")
			own := w.h.IP4()
			if !WANPrefix4.Contains(own) || own == w.r.WANAddr() {
				t.Fatalf("host address %s: want a public address of its own in %s", own, WANPrefix4)
			}
			if b != Open && (!w.r.IsFirewall() || !w.h.IP6().IsGlobalUnicast()) {
				t.Fatalf("router firewall %v, host addresses %v: want a firewall and a global IPv6 address", w.r.IsFirewall(), w.h.Addrs())
			}
			truth := b.Truth6()
			t.Run("udp", func(t *testing.T) { checkUDP6(t, w, own, truth) })
			tcpTruth := truth
			if b == UDPBlocked { // TCP still passes, filtered like port-restricted
				tcpTruth = PortRestrictedCone.Truth6()
			}
			t.Run("tcp", func(t *testing.T) { checkTCP6(t, w, own, tcpTruth) })
		})
	}
}
