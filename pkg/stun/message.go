// Package stun is p2pd's STUN server core and client: Binding over UDP and
// TCP, IPv4 and IPv6, RFC 5389/8489 requests and classic RFC 3489 requests
// (no magic cookie), RFC 3489 CHANGE-REQUEST with CHANGED-ADDRESS and the
// RFC 5780 OTHER-ADDRESS and RESPONSE-ORIGIN attributes. Messages are encoded
// and decoded with github.com/pion/stun/v2.
package stun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/stun/v2"
)

// Attribute types pion does not name.
const (
	AttrChangedAddress = stun.AttrType(0x0005) // RFC 3489 CHANGED-ADDRESS
	AttrSourceAddress  = stun.AttrType(0x0004) // RFC 3489 SOURCE-ADDRESS
)

// CHANGE-REQUEST flags (RFC 3489 section 11.2.4, RFC 5780 section 7.2).
const (
	ChangePort uint32 = 0x02
	ChangeIP   uint32 = 0x04
)

// MagicCookie is the RFC 5389 magic cookie.
const MagicCookie uint32 = 0x2112A442

const headerSize = 20

var (
	errNotSTUN   = errors.New("stun: not a STUN message")
	errTrailing  = errors.New("stun: bytes after the message")
	errBadLength = errors.New("stun: message length not a multiple of 4")
)

// IsClassic reports whether a STUN header lacks the magic cookie, i.e. comes
// from an RFC 3489 peer whose 16-byte transaction id starts at byte 4.
func IsClassic(b []byte) bool {
	return len(b) >= headerSize && binary.BigEndian.Uint32(b[4:8]) != MagicCookie
}

// decode parses b (one whole message, nothing after it) into m. Classic
// messages are decoded through a copy in scratch whose cookie bytes are set,
// because pion only accepts RFC 5389 headers; classic reports whether that
// happened and id holds the full 16-byte transaction id either way.
func decode(m *stun.Message, b, scratch []byte) (id [16]byte, classic bool, err error) {
	if len(b) < headerSize || b[0]&0xC0 != 0 {
		return id, false, errNotSTUN
	}
	size := int(binary.BigEndian.Uint16(b[2:4]))
	if size%4 != 0 {
		return id, false, errBadLength
	}
	if len(b) != headerSize+size {
		return id, false, errTrailing
	}
	copy(id[:], b[4:20])
	classic = IsClassic(b)
	raw := b
	if classic {
		raw = append(scratch[:0], b...)
		binary.BigEndian.PutUint32(raw[4:8], MagicCookie)
	}
	m.Raw = raw
	if err := m.Decode(); err != nil {
		return id, classic, fmt.Errorf("stun: %w", err)
	}
	return id, classic, nil
}

// finishClassic writes the classic 16-byte transaction id over the cookie and
// id of an encoded message.
func finishClassic(m *stun.Message, id [16]byte) {
	copy(m.Raw[4:20], id[:])
}

// addAddr appends an address attribute of type t in the MAPPED-ADDRESS format.
func addAddr(m *stun.Message, t stun.AttrType, a netip.AddrPort) {
	var v [20]byte
	ip := a.Addr().Unmap()
	n := 4
	if ip.Is4() {
		binary.BigEndian.PutUint16(v[0:2], 1)
		b := ip.As4()
		n += copy(v[4:], b[:])
	} else {
		binary.BigEndian.PutUint16(v[0:2], 2)
		b := ip.As16()
		n += copy(v[4:], b[:])
	}
	binary.BigEndian.PutUint16(v[2:4], a.Port())
	m.Add(t, v[:n])
}

// addXORAddr appends XOR-MAPPED-ADDRESS for a (RFC 8489 section 14.2).
func addXORAddr(m *stun.Message, a netip.AddrPort) {
	var v [20]byte
	ip := a.Addr().Unmap()
	binary.BigEndian.PutUint16(v[2:4], a.Port()^uint16(MagicCookie>>16))
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], MagicCookie)
	copy(key[4:], m.TransactionID[:])
	n := 4
	if ip.Is4() {
		binary.BigEndian.PutUint16(v[0:2], 1)
		b := ip.As4()
		for i := range b {
			v[4+i] = b[i] ^ key[i]
		}
		n += 4
	} else {
		binary.BigEndian.PutUint16(v[0:2], 2)
		b := ip.As16()
		for i := range b {
			v[4+i] = b[i] ^ key[i]
		}
		n += 16
	}
	m.Add(stun.AttrXORMappedAddress, v[:n])
}

// getAddr reads an address attribute of type t from m.
func getAddr(m *stun.Message, t stun.AttrType) (netip.AddrPort, bool) {
	var a stun.MappedAddress
	if err := a.GetFromAs(m, t); err != nil {
		return netip.AddrPort{}, false
	}
	return toAddrPort(a.IP, a.Port)
}

func getXORAddr(m *stun.Message) (netip.AddrPort, bool) {
	var a stun.XORMappedAddress
	if err := a.GetFrom(m); err != nil {
		return netip.AddrPort{}, false
	}
	return toAddrPort(a.IP, a.Port)
}

func toAddrPort(ip net.IP, port int) (netip.AddrPort, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port < 0 || port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}
