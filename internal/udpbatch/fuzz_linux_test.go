package udpbatch

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FuzzSockaddr: whatever bytes and length the kernel could leave in a
// sender's address, decoding them never panics, and an address that
// decodes encodes back (for a socket of either family) to one that decodes
// to the same address.
func FuzzSockaddr(f *testing.F) {
	v4 := unix.RawSockaddrInet4{Family: unix.AF_INET, Port: 0x3412, Addr: [4]byte{127, 0, 0, 1}}
	f.Add((*[unix.SizeofSockaddrInet4]byte)(unsafe.Pointer(&v4))[:], uint32(unix.SizeofSockaddrInet4))
	v6 := unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: 0x3412, Scope_id: 3}
	v6.Addr[15] = 1
	f.Add((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&v6))[:], uint32(unix.SizeofSockaddrInet6))
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, n uint32) {
		var sa unix.RawSockaddrInet6
		copy((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:], b)
		ap := sockaddr(&sa, n)
		if !ap.IsValid() {
			return
		}
		for _, v6 := range []bool{false, true} {
			if !v6 && !ap.Addr().Unmap().Is4() {
				continue // an IPv4 socket cannot send to it
			}
			s := sys{v6: v6}
			var out unix.RawSockaddrInet6
			got := sockaddr(&out, s.putSockaddr(&out, ap))
			want := ap
			if !v6 {
				want = netipUnmap(ap)
			} else if ap.Addr().Is4() {
				want = netipMap(ap)
			}
			if got != want {
				t.Fatalf("v6 socket %v: %v encoded and decoded as %v, want %v", v6, ap, got, want)
			}
		}
	})
}

func netipUnmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

func netipMap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
}
