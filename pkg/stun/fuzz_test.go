package stun

import (
	"net/netip"
	"testing"
	"time"
)

func fuzzServer() *Server {
	return &Server{m: NewMetrics(), software: []byte("p2pd")}
}

// FuzzHandle feeds arbitrary bytes to the request handler: it must never
// panic, and whatever it answers must be a response our client can parse.
func FuzzHandle(f *testing.F) {
	f.Add(rfc5769Request, false)
	f.Add(rfc5769Response4, true)
	var m = newWorker().req
	for _, r := range []Request{{}, {Classic: true}, {Change: ChangeIP | ChangePort}, {Change: ChangePort, Classic: true}} {
		if _, err := newRequest(&m, r); err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte(nil), m.Raw...), false)
	}
	srv := fuzzServer()
	addrs := [4]netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:3478"), netip.MustParseAddrPort("192.0.2.1:3479"),
		netip.MustParseAddrPort("192.0.2.2:3478"), netip.MustParseAddrPort("192.0.2.2:3479"),
	}
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	w := newWorker()
	f.Fuzz(func(t *testing.T, b []byte, tcp bool) {
		for at := range 4 {
			r := srv.handle(w, b, src, site{addrs: &addrs, hasAlt: at != 3, at: at, family: "ipv4"}, tcp)
			if r.out == outMalformed {
				continue
			}
			if len(r.resp) > 200 {
				t.Fatalf("response of %d bytes", len(r.resp))
			}
			resp, key, err := ParseResponse(r.resp)
			if [16]byte(b[4:20]) != key {
				t.Fatalf("transaction id not echoed")
			}
			if r.out == outSuccess {
				if err != nil {
					t.Fatalf("unparsable success response: %v", err)
				}
				if resp.Mapped != src {
					t.Fatalf("mapped %s", resp.Mapped)
				}
			} else if err == nil {
				t.Fatalf("error outcome %d but parsed as success", r.out)
			}
		}
	})
}

// FuzzParseResponse checks the client's response parser never panics.
func FuzzParseResponse(f *testing.F) {
	f.Add(rfc5769Response4)
	f.Add(rfc5769Response6)
	f.Add(rfc5769Request)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ParseResponse(b)
	})
}

// FuzzSNTP checks the SNTP responder never panics and answers only client
// requests, always with a 48-byte server packet.
func FuzzSNTP(f *testing.F) {
	req := make([]byte, 48)
	req[0] = 4<<3 | 3
	f.Add(req)
	f.Add([]byte{0x1b})
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := sntpAnswer(nil, b, now, now)
		if err != nil {
			return
		}
		if len(out) != 48 || out[0]&7 != 4 {
			t.Fatalf("bad answer %x", out)
		}
	})
}
