package stun

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkHandle is the CPU cost of answering one Binding request, without
// the socket calls.
func BenchmarkHandle(b *testing.B) {
	srv := fuzzServer()
	addrs := [4]netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:3478"), netip.MustParseAddrPort("192.0.2.1:3479"),
		netip.MustParseAddrPort("192.0.2.2:3478"), netip.MustParseAddrPort("192.0.2.2:3479"),
	}
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	for _, tc := range []struct {
		name string
		req  Request
	}{{"modern", Request{}}, {"classic", Request{Classic: true}}, {"change", Request{Change: ChangeIP | ChangePort}}} {
		b.Run(tc.name, func(b *testing.B) {
			m := newWorker().req
			if _, err := newRequest(&m, tc.req); err != nil {
				b.Fatal(err)
			}
			req := append([]byte(nil), m.Raw...)
			w := newWorker()
			st := site{addrs: &addrs, hasAlt: true, family: "ipv4"}
			b.ReportAllocs()
			for b.Loop() {
				if r := srv.handle(w, req, src, st, false); r.out != outSuccess {
					b.Fatal(r.out)
				}
			}
		})
	}
}

// BenchmarkServerUDPRoundTrip is one request/response over loopback through
// the whole server (one client, no concurrency).
func BenchmarkServerUDPRoundTrip(b *testing.B) {
	s, _ := startServer(b, ServerConfig{Primary4: lo1, Alternate4: lo2})
	c := newConn(b, "udp4", "127.0.0.1:0")
	to := s.UDPAddrs()[0]
	ctx := ctxTimeout(b, time.Hour)
	for b.Loop() {
		if _, err := c.Do(ctx, Request{Server: to}); err != nil {
			b.Fatal(err)
		}
	}
}
