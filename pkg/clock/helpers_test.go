package clock

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd-go/p2pd/pkg/stun"
)

// startStund runs our STUN server (TCP only, on a random 127/8 address so
// it shares no port with other tests) with SNTP on a free loopback port, and
// returns the SNTP address.
func startStund(t testing.TB) string {
	t.Helper()
	var err error
	for range 20 {
		ip := netip.AddrFrom4([4]byte{127, byte(10 + rand.IntN(200)), byte(rand.IntN(256)), byte(1 + rand.IntN(250))})
		var s *stun.Server
		s, err = stun.Listen(stun.ServerConfig{
			Primary4: ip, NoUDP: true, Sockets: 1,
			NTPAddrs: []netip.AddrPort{netip.AddrPortFrom(ip, 0)},
			Metrics:  stun.NewMetrics(),
		})
		if err == nil {
			t.Cleanup(func() { _ = s.Close() })
			return s.NTPAddrs()[0].String()
		}
	}
	t.Fatalf("start stund: %v", err)
	return ""
}

// skewed is a local clock that runs ahead of the real one by a settable
// amount (negative: behind).
type skewed struct{ d atomic.Int64 }

func (s *skewed) set(d time.Duration) { s.d.Store(int64(d)) }
func (s *skewed) now() time.Time      { return time.Now().Add(time.Duration(s.d.Load())) }

// fakeNTP answers every request on a loopback UDP port with reply(req).
// A nil reply means no answer.
func fakeNTP(t testing.TB, reply func(req []byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := reply(append([]byte(nil), buf[:n]...)); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// closedPort is a loopback UDP port nobody listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	return addr
}

// ntpReply builds a server reply to req: a sane stratum-2 answer with the
// real time, then edit changes fields (offsets as in RFC 5905 figure 8).
func ntpReply(req []byte, edit func(b []byte)) []byte {
	b := make([]byte, 48)
	b[0] = 4<<3 | 4 // LI 0, v4, server
	b[1] = 2
	b[3] = 0xEC
	binary.BigEndian.PutUint32(b[8:], 1<<10) // root dispersion ~16 ms
	copy(b[12:16], []byte{192, 0, 2, 1})
	now := time.Now()
	binary.BigEndian.PutUint64(b[16:], ntpTS(now.Add(-time.Minute)))
	if len(req) >= 48 {
		copy(b[24:32], req[40:48])
	}
	binary.BigEndian.PutUint64(b[32:], ntpTS(now))
	binary.BigEndian.PutUint64(b[40:], ntpTS(now))
	if edit != nil {
		edit(b)
	}
	return b
}

func ntpTS(t time.Time) uint64 {
	secs := uint64(t.Unix() + 2208988800)
	frac := (uint64(t.Nanosecond()) << 32) / 1e9
	return secs<<32 | frac
}

func counter(t testing.TB, c *Clock, vec, label string) int {
	t.Helper()
	switch vec {
	case "syncs":
		return int(testutil.ToFloat64(c.m.syncs.WithLabelValues(label)))
	default:
		return int(testutil.ToFloat64(c.m.queries.WithLabelValues(label)))
	}
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
