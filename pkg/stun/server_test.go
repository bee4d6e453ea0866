package stun

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v2"

	"github.com/p2pd-go/p2pd/internal/metricstest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestServerUDPChangeRequests(t *testing.T) {
	s, _ := startServer(t, ServerConfig{Primary4: lo1, Alternate4: lo2, Software: "p2pd"})
	port := s.cfg.Port
	alt := s.cfg.AltPort
	pp := netip.AddrPortFrom(lo1, port)
	cases := []struct {
		name   string
		to     netip.AddrPort
		change uint32
		from   netip.AddrPort
		other  netip.AddrPort
	}{
		{"plain", pp, 0, pp, netip.AddrPortFrom(lo2, alt)},
		{"change port", pp, ChangePort, netip.AddrPortFrom(lo1, alt), netip.AddrPortFrom(lo2, alt)},
		{"change ip", pp, ChangeIP, netip.AddrPortFrom(lo2, port), netip.AddrPortFrom(lo2, alt)},
		{"change both", pp, ChangeIP | ChangePort, netip.AddrPortFrom(lo2, alt), netip.AddrPortFrom(lo2, alt)},
		{"alternate plain", netip.AddrPortFrom(lo2, alt), 0, netip.AddrPortFrom(lo2, alt), pp},
		{"alternate change both", netip.AddrPortFrom(lo2, alt), ChangeIP | ChangePort, pp, pp},
		{"alternate ip primary port change port", netip.AddrPortFrom(lo2, port), ChangePort, netip.AddrPortFrom(lo2, alt), netip.AddrPortFrom(lo1, alt)},
	}
	for _, classic := range []bool{false, true} {
		for _, tc := range cases {
			name := tc.name
			if classic {
				name += " classic"
			}
			t.Run(name, func(t *testing.T) {
				c := newConn(t, "udp4", "127.0.0.1:0")
				r, err := c.Do(ctxTimeout(t, 3*time.Second), Request{Server: tc.to, Change: tc.change, Classic: classic})
				if err != nil {
					t.Fatal(err)
				}
				if r.Mapped != c.LocalAddr() {
					t.Errorf("mapped %s, want %s", r.Mapped, c.LocalAddr())
				}
				if r.From != tc.from || r.Origin != tc.from {
					t.Errorf("from %s origin %s, want %s", r.From, r.Origin, tc.from)
				}
				if r.Other != tc.other {
					t.Errorf("other %s, want %s", r.Other, tc.other)
				}
			})
		}
	}
}

func TestServerSingleIP(t *testing.T) {
	has6(t)
	s, reg := startServer(t, ServerConfig{Primary6: lo6})
	if got := len(s.UDPAddrs()); got != 1 {
		t.Fatalf("listening on %d UDP addresses, want 1", got)
	}
	to := s.UDPAddrs()[0]
	for _, tc := range []struct {
		name    string
		change  uint32
		classic bool
		wantErr bool
	}{
		{"binding", 0, false, false},
		{"binding classic", 0, true, false},
		{"change port", ChangePort, false, true},
		{"change both classic", ChangeIP | ChangePort, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConn(t, "udp6", "[::1]:0")
			r, err := c.Do(ctxTimeout(t, 3*time.Second), Request{Server: to, Change: tc.change, Classic: tc.classic})
			if tc.wantErr {
				var er *ErrorResponse
				if !errors.As(err, &er) || er.Code != 420 {
					t.Fatalf("got %v, %v; want a 420 error response", r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Mapped != c.LocalAddr() || r.Other.IsValid() {
				t.Errorf("mapped %s other %s; want %s and no other address", r.Mapped, r.Other, c.LocalAddr())
			}
		})
	}
	if v := testutil.ToFloat64(s.m.errors.WithLabelValues("change_unsupported")); v != 2 {
		t.Errorf("change_unsupported = %v, want 2", v)
	}
	metricstest.Lint(t, reg, "stund")
}

func TestServerTCP(t *testing.T) {
	s, reg := startServer(t, ServerConfig{Primary4: lo1, Alternate4: lo2})
	for _, to := range s.TCPAddrs() {
		t.Run(to.String(), func(t *testing.T) {
			ctx := ctxTimeout(t, 3*time.Second)
			c, err := DialTCP(ctx, nil, to)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i, classic := range []bool{false, true, false} {
				r, err := c.Do(ctx, Request{Server: to, Classic: classic})
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if r.Mapped != c.LocalAddr() || r.Origin != to {
					t.Errorf("request %d: mapped %s origin %s", i, r.Mapped, r.Origin)
				}
			}
			_, err = c.Do(ctx, Request{Server: to, Change: ChangePort})
			var er *ErrorResponse
			if !errors.As(err, &er) || er.Code != 420 {
				t.Fatalf("change over tcp: %v, want 420", err)
			}
			if _, err := c.Do(ctx, Request{Server: to}); err != nil {
				t.Fatalf("after the error: %v", err)
			}
		})
	}
	if v := testutil.ToFloat64(s.m.requests.WithLabelValues("tcp", "ipv4", "binding_classic")); v != 4 {
		t.Errorf("tcp classic requests = %v, want 4", v)
	}
	metricstest.Lint(t, reg, "stund")
}

func TestServerMalformed(t *testing.T) {
	s, _ := startServer(t, ServerConfig{Primary4: lo1, Alternate4: lo2})
	to := s.UDPAddrs()[0]
	raw, err := net.Dial("udp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	bad := [][]byte{
		{},
		[]byte("hello"),
		make([]byte, 20), // type 0: not a Binding request
		append([]byte{0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...),                                 // length past the end
		append([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 13)...),                                 // trailing byte
		append([]byte{0xC0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...),                              // top bits set
		append([]byte{0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42}, append(make([]byte, 12), 0, 3, 0, 2, 0, 0, 0, 0)...), // short CHANGE-REQUEST
	}
	for _, b := range bad {
		if _, err := raw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	c := newConn(t, "udp4", "127.0.0.1:0")
	if _, err := c.Do(ctxTimeout(t, 3*time.Second), Request{Server: to}); err != nil {
		t.Fatalf("server stopped answering after bad input: %v", err)
	}
	// One socket's datagrams are read in order: once a request sent after
	// the junk on the same socket is answered, the junk has been counted.
	if _, err := raw.Write(mustRequest(t)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = raw.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := raw.Read(buf); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(s.m.malformed.WithLabelValues("udp")); v != float64(len(bad)) {
		t.Errorf("malformed = %v, want %d", v, len(bad))
	}
}

func mustRequest(t testing.TB) []byte {
	t.Helper()
	var m = newWorker().req
	if _, err := newRequest(&m, Request{}); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), m.Raw...)
}

// 420 answers list each unknown comprehension-required attribute once, at
// most maxUnknown of them, two bytes per type (RFC 8489 14.9), so no answer
// grows past the documented 156 bytes however many attributes a request has.
func TestServerUnknownAttribute(t *testing.T) {
	s, _ := startServer(t, ServerConfig{Primary4: lo1, Software: "p2pd"})
	to := s.UDPAddrs()[0]
	raw, err := net.Dial("udp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	distinct := func(n int) []stun.AttrType {
		var out []stun.AttrType
		for i := range n {
			out = append(out, stun.AttrType(0x0040+i))
		}
		return out
	}
	tests := []struct {
		name string
		send []stun.AttrType
		want []stun.AttrType
	}{
		{"one", []stun.AttrType{0x0099}, []stun.AttrType{0x0099}},
		// 1,380 bytes of request, as in the report (a 1,428-byte answer before)
		{"duplicates", append(slices.Repeat([]stun.AttrType{0x0099}, 168), 0x0098, 0x0099), []stun.AttrType{0x0099, 0x0098}},
		{"more than the cap", append(slices.Repeat([]stun.AttrType{0x0041}, 5), distinct(40)...),
			append([]stun.AttrType{0x0041, 0x0040}, distinct(maxUnknown)[2:]...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := stun.Build(stun.TransactionID, stun.BindingRequest)
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range tc.send {
				m.Add(at, []byte{1, 2, 3, 4})
			}
			if _, err := raw.Write(m.Raw); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			_ = raw.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := raw.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if n > 156 {
				t.Fatalf("420 answer of %d bytes to a %d-byte request, over the documented 156", n, len(m.Raw))
			}
			_, _, err = ParseResponse(buf[:n])
			var er *ErrorResponse
			if !errors.As(err, &er) || er.Code != 420 {
				t.Fatalf("got %v, want 420", err)
			}
			res := &stun.Message{Raw: buf[:n]}
			if err := res.Decode(); err != nil {
				t.Fatal(err)
			}
			v, err := res.Get(stun.AttrUnknownAttributes)
			if err != nil {
				t.Fatal(err)
			}
			var got []stun.AttrType
			for i := 0; i+1 < len(v); i += 2 {
				got = append(got, stun.AttrType(binary.BigEndian.Uint16(v[i:])))
			}
			if len(v) != 2*len(tc.want) || !slices.Equal(got, tc.want) {
				t.Fatalf("UNKNOWN-ATTRIBUTES %x (%d bytes), want the types %v at 2 bytes each", v, len(v), tc.want)
			}
		})
	}
}

func TestServerRateLimit(t *testing.T) {
	s, _ := startServer(t, ServerConfig{Primary4: lo1, Rate: 0.001, Burst: 3})
	to := s.UDPAddrs()[0]
	c := newConn(t, "udp4", "127.0.0.1:0")
	answered := 0
	for range 5 {
		if _, err := c.Do(ctxTimeout(t, 300*time.Millisecond), Request{Server: to}); err == nil {
			answered++
		}
	}
	if answered != 3 {
		t.Errorf("answered %d requests, want the burst of 3", answered)
	}
	if v := testutil.ToFloat64(s.m.rateLimited.WithLabelValues("udp")); v < 2 {
		t.Errorf("rate_limited = %v, want >= 2", v)
	}
}

func TestServerConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ServerConfig
	}{
		{"nothing", ServerConfig{}},
		{"alt without primary", ServerConfig{Alternate4: lo2}},
		{"same ip", ServerConfig{Primary4: lo1, Alternate4: lo1}},
		{"wrong family", ServerConfig{Primary4: lo6}},
		{"same port", ServerConfig{Primary4: lo1, Port: 4000, AltPort: 4000}},
		{"no transport", ServerConfig{Primary4: lo1, NoUDP: true, NoTCP: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Listen(tc.cfg); err == nil {
				_ = s.Close()
				t.Fatal("no error")
			}
		})
	}
}

// TestMetricsSecondRegistration: a second server's metrics on a registry
// that holds the first's are refused with an error (this used to panic).
func TestMetricsSecondRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := NewMetrics().Register(reg); err != nil {
		t.Fatal(err)
	}
	err := NewMetrics().Register(reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("second registration: err = %v, want prometheus.AlreadyRegisteredError", err)
	}
}
