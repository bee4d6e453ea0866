package stun

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"
)

// SNTP (RFC 4330) answers so a private stack can agree on time without an
// outside source. The server reports its own system clock as stratum 1 with
// reference id "LOCL": fine for peers agreeing on a punching time, not a
// replacement for a real time service.

const ntpPacketSize = 48

// ntpEpochOffset is the number of seconds from 1900-01-01 to 1970-01-01.
const ntpEpochOffset = 2208988800

var errNotNTP = errors.New("stun: not an SNTP client request")

func ntpTime(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := (uint64(t.Nanosecond()) << 32) / 1e9
	return secs<<32 | frac
}

// sntpAnswer writes into out the reply to client request req received at
// recv, with transmit time now. It rejects anything but a mode 3 (client)
// request of version 1-4.
func sntpAnswer(out, req []byte, recv, now time.Time) ([]byte, error) {
	if len(req) < ntpPacketSize {
		return nil, errNotNTP
	}
	vn := (req[0] >> 3) & 7
	if req[0]&7 != 3 || vn < 1 || vn > 4 {
		return nil, errNotNTP
	}
	out = append(out[:0], make([]byte, ntpPacketSize)...)
	out[0] = vn<<3 | 4 // LI 0, version as asked, mode 4 (server)
	out[1] = 1         // stratum 1
	out[2] = req[2]    // poll
	out[3] = 0xEC      // precision 2^-20
	// root delay 0; root dispersion 10 ms in 16.16 seconds, rounded up
	// (656/65536 s = 10.01 ms): a dispersion is an error bound, and 655
	// would claim 9.99 ms, less than the 10 ms we mean.
	binary.BigEndian.PutUint32(out[8:12], 656)
	copy(out[12:16], "LOCL")
	binary.BigEndian.PutUint64(out[16:24], ntpTime(now.Truncate(time.Second)))
	copy(out[24:32], req[40:48]) // origin = client's transmit time
	binary.BigEndian.PutUint64(out[32:40], ntpTime(recv))
	binary.BigEndian.PutUint64(out[40:48], ntpTime(now))
	return out, nil
}

func (s *Server) serveNTP(c *net.UDPConn) {
	buf := make([]byte, 512)
	out := make([]byte, 0, ntpPacketSize)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		recv := time.Now()
		if !s.lim.allow(netip.AddrPortFrom(src.Addr().Unmap(), 0).Addr(), recv) {
			s.m.ntp.WithLabelValues("rate_limited").Inc()
			continue
		}
		resp, err := sntpAnswer(out, buf[:n], recv, time.Now())
		if err != nil {
			s.m.ntp.WithLabelValues("malformed").Inc()
			continue
		}
		if _, err := c.WriteToUDPAddrPort(resp, src); err != nil {
			s.m.errors.WithLabelValues("send").Inc()
			continue
		}
		s.m.ntp.WithLabelValues("answered").Inc()
	}
}
