package punch

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestOfferRoundTrip(t *testing.T) {
	now := time.Now()
	o := Offer{At: now.Add(time.Second).UnixMicro(), Sent: now.UnixMicro(), Uncertainty: 1500,
		Targets: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.7:20001"), netip.MustParseAddrPort("[2001:db8::1]:10001")}}
	b, err := o.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseOffer(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.At != o.At || got.Sent != o.Sent || got.ClockUncertainty() != 1500*time.Microsecond || len(got.Targets) != 2 || got.Targets[0] != o.Targets[0] {
		t.Fatalf("round trip: %+v, want %+v", got, o)
	}
}

// TestOfferIPv6Only: an offer may carry IPv6 targets alone (no IPv4 punch
// is possible, an IPv6 one is).
func TestOfferIPv6Only(t *testing.T) {
	now := time.Now()
	o := Offer{At: now.Add(time.Second).UnixMicro(), Sent: now.UnixMicro(), Targets6: []netip.AddrPort{netip.MustParseAddrPort("[2001:db8:0:1::10]:10001")}}
	b, err := o.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseOffer(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Targets) != 0 || len(got.Targets6) != 1 || got.Targets6[0] != o.Targets6[0] {
		t.Fatalf("round trip: %+v, want %+v", got, o)
	}
}

func TestParseOfferRefuses(t *testing.T) {
	for _, tt := range []struct{ name, in string }{
		{"empty", ``},
		{"not json", `PUNCH`},
		{"no targets", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":[]}`},
		{"no targets of either family", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":[],"targets6":[]}`},
		{"IPv4 as an IPv6 target", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":[],"targets6":["203.0.113.1:1"]}`},
		{"mapped IPv4 as an IPv6 target", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":[],"targets6":["[::ffff:203.0.113.1]:1"]}`},
		{"ULA IPv6 target", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":[],"targets6":["[fd00::1]:1"]}`},
		{"link-local IPv6 target", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":[],"targets6":["[fe80::1%eth0]:1"]}`},
		{"too many IPv6 targets", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":[],"targets6":["[2001:db8::1]:1","[2001:db8::1]:2","[2001:db8::1]:3","[2001:db8::1]:4","[2001:db8::1]:5"]}`},
		{"zero port", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:0"]}`},
		{"loopback", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["127.0.0.1:80"]}`},
		{"multicast", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["224.0.0.1:80"]}`},
		{"bad address", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["nowhere:80"]}`},
		{"no time", `{"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"]}`},
		{"negative uncertainty", `{"at_us":1,"sent_us":1,"unc_us":-1,"targets":["203.0.113.1:1"]}`},
		{"huge uncertainty", `{"at_us":1,"sent_us":1,"unc_us":600000000,"targets":["203.0.113.1:1"]}`},
		{"bad udp target", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"],"udp":["127.0.0.1:5"]}`},
		{"udp zero port", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"],"udp":["203.0.113.1:0"]}`},
		{"too many udp targets", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"],"udp":["203.0.113.1:1","203.0.113.1:2","203.0.113.1:3","203.0.113.1:4","203.0.113.1:5","203.0.113.1:6","203.0.113.1:7","203.0.113.1:8","203.0.113.1:9"]}`},
		{"trailing data", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"]} {}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseOffer([]byte(tt.in)); !errors.Is(err, ErrBadOffer) {
				t.Fatalf("ParseOffer(%s) = %v, want ErrBadOffer", tt.in, err)
			}
		})
	}
}

// TestParseOfferUDP: UDP targets round-trip (IPv4-mapped ones unmapped),
// an offer of an agent that does not punch over UDP still parses, with
// none, and so does one of a newer agent with fields this one lacks.
func TestParseOfferUDP(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		udp  []netip.AddrPort
	}{
		{"old offer", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"]}`, nil},
		{"newer offer", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"],"quic":["203.0.113.1:4433"],"udp":["203.0.113.1:40000"]}`,
			[]netip.AddrPort{netip.MustParseAddrPort("203.0.113.1:40000")}},
		{"udp targets", `{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"],"udp":["203.0.113.1:40000","[::ffff:203.0.113.2]:40001"]}`,
			[]netip.AddrPort{netip.MustParseAddrPort("203.0.113.1:40000"), netip.MustParseAddrPort("203.0.113.2:40001")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOffer([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(o.UDP) != len(tt.udp) {
				t.Fatalf("UDP targets %v, want %v", o.UDP, tt.udp)
			}
			for i := range tt.udp {
				if o.UDP[i] != tt.udp[i] {
					t.Fatalf("UDP targets %v, want %v", o.UDP, tt.udp)
				}
			}
			b, err := o.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if again, err := ParseOffer(b); err != nil || len(again.UDP) != len(tt.udp) {
				t.Fatalf("re-parse: %+v, %v", again, err)
			}
		})
	}
}

func TestMeetAt(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tt := range []struct {
		name            string
		rtt, mine, peer time.Duration
		want            time.Duration
	}{
		{"fast signalling uses the floor", 40 * time.Millisecond, 0, 0, MinLead},
		{"slow signalling", 400 * time.Millisecond, 0, 0, 600 * time.Millisecond},
		{"uncertainties add", 400 * time.Millisecond, 5 * time.Millisecond, 7 * time.Millisecond, 612 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := MeetAt(now, tt.rtt, tt.mine, tt.peer).Sub(now); got != tt.want {
				t.Fatalf("lead %s, want %s", got, tt.want)
			}
		})
	}
	at := now.Add(100 * time.Millisecond)
	if TooLate(now, at, 20*time.Millisecond, 10*time.Millisecond) {
		t.Error("an offer with 100 ms to go and a 30 ms answer path is not late")
	}
	if !TooLate(now, at, 80*time.Millisecond, 30*time.Millisecond) {
		t.Error("an offer whose answer cannot arrive before the meeting is late")
	}
}

func FuzzParseOffer(f *testing.F) {
	f.Add([]byte(`{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"]}`))
	f.Add([]byte(`{"answer":true,"at_us":99,"sent_us":98,"unc_us":5,"targets":["[2001:db8::1]:10001"]}`))
	f.Add([]byte(`{"at_us":1,"sent_us":1,"unc_us":0,"targets":[],"targets6":["[2001:db8:0:1::10]:10001"]}`))
	f.Add([]byte(`{"at_us":1,"sent_us":1,"unc_us":0,"targets":["203.0.113.1:1"],"udp":["203.0.113.1:40000"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOffer(b)
		if err != nil {
			return
		}
		out, err := o.Marshal()
		if err != nil {
			t.Fatalf("a parsed offer does not marshal: %v", err)
		}
		if _, err := ParseOffer(out); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}
