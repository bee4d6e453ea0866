package turnserver

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v2"
)

// STUN message types the filter looks at (RFC 5766 methods).
const (
	typeAllocateRequest           = 0x0003
	typeRefreshRequest            = 0x0004
	typeCreatePermRequest         = 0x0008
	typeChannelBindRequest        = 0x0009
	typeAllocateSuccess           = 0x0103
	typeAllocateError             = 0x0113
	typeDataIndication            = 0x0017
	attrData                      = 0x0013
	stunHeader                    = 20
	protoUDP                      = 17
	familyIPv4                    = 0x01
	familyIPv6                    = 0x02
	magicCookie            uint32 = 0x2112A442
)

// filter sits between the client sockets and pion. It sees every frame a
// client sends before pion does, and every frame pion sends to a client. It
// answers, instead of pion, the requests pion cannot refuse with the right
// code: 403 for refused peers, 486 over quota, 508 while draining.
type filter struct {
	auth     *Auth
	policy   *Policy
	tracker  *tracker
	m        *Metrics
	log      *slog.Logger
	draining atomic.Bool
	now      func() time.Time
	batch    *batchGroup // the server's batched UDP sockets; nil: none
}

func tupleKey(network string, remote, local net.Addr) string {
	return network + "|" + remote.String() + "|" + local.String()
}

// isChannelData reports whether b starts with a ChannelData header (channel
// numbers 0x4000-0x7FFF).
func isChannelData(b []byte) bool { return len(b) >= 4 && b[0]&0xC0 == 0x40 }

// isSTUNOrChannelData reports whether the first byte of a frame allows STUN
// (top two bits 0) or ChannelData (0x40-0x7F). pion/stun v2 ignores the two
// top bits of the message type, so 0x8003 would reach pion as an Allocate
// request that the checks below never saw.
func isSTUNOrChannelData(b []byte) bool { return len(b) > 0 && b[0]&0x80 == 0 }

// inbound inspects one whole frame from a client. It returns the frame pion
// should handle (frame itself, or a prefix of it rewritten in place), or nil
// with a reply (possibly nil) to send back instead.
func (f *filter) inbound(frame []byte, network string, src, local net.Addr) (reply, pass []byte) {
	if !isSTUNOrChannelData(frame) {
		f.m.invalid.Inc()
		return nil, nil
	}
	if len(frame) < stunHeader || frame[0]&0xC0 != 0 {
		return nil, frame
	}
	t := binary.BigEndian.Uint16(frame)
	switch t {
	case typeAllocateRequest, typeRefreshRequest, typeCreatePermRequest, typeChannelBindRequest:
	default:
		return nil, frame
	}
	m := &stun.Message{Raw: append([]byte(nil), frame...)}
	if err := m.Decode(); err != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return nil, frame // pion answers: 400 or 401 with a nonce
	}
	user, key, reason := f.auth.Verify(m, src)
	if reason != "" {
		f.m.authFailures.WithLabelValues(reason).Inc()
		f.log.Debug("auth failure", "reason", reason, "src", src.String())
		if reason == AuthMalformed {
			return nil, frame // no USERNAME: pion answers 400
		}
		return nil, unsigned(frame)
	}
	switch t {
	case typeAllocateRequest:
		return f.allocate(m, key, user, tupleKey(network, src, local), frame)
	case typeRefreshRequest:
		// pion v3.0.3 answers a Refresh for an allocation it does not have
		// (the server restarted, the allocation expired) with nothing, so
		// the client learns of the loss only when its retransmissions run
		// out; RFC 8656 §7.3 says 437 Allocation Mismatch.
		if !f.tracker.holds(tupleKey(network, src, local)) {
			f.m.refreshMismatch.Inc()
			return errorReply(m, key, stun.CodeAllocMismatch, "Allocation Mismatch"), nil
		}
	case typeCreatePermRequest, typeChannelBindRequest:
		return f.permission(m, key, src, frame)
	}
	return nil, frame
}

// unsigned cuts MESSAGE-INTEGRITY and what follows it off a request, in
// place. Wrong credentials (unknown user, bad password or REST secret,
// expired REST username) must be answered with 401 and a fresh nonce
// (RFC 8489 9.2.4); pion answers 400 to them, but 401 with a fresh nonce and
// the realm to a request without MESSAGE-INTEGRITY, so that is what it gets.
func unsigned(frame []byte) []byte {
	end := stunHeader + int(binary.BigEndian.Uint16(frame[2:4]))
	for i := stunHeader; i+4 <= end && end <= len(frame); {
		at := binary.BigEndian.Uint16(frame[i:])
		if at == uint16(stun.AttrMessageIntegrity) {
			binary.BigEndian.PutUint16(frame[2:4], uint16(i-stunHeader))
			return frame[:i]
		}
		i += 4 + (int(binary.BigEndian.Uint16(frame[i+2:]))+3)&^3
	}
	return frame // not reached: Verify found the attribute
}

func (f *filter) allocate(m *stun.Message, key []byte, user, tuple string, frame []byte) (reply, pass []byte) {
	// pion v3.0.3 accepts REQUESTED-TRANSPORT TCP but hands out a UDP relay;
	// RFC 6062 clients must hear that TCP relays are not offered.
	if v, err := m.Get(stun.AttrRequestedTransport); err == nil && len(v) > 0 && v[0] != protoUDP {
		return errorReply(m, key, stun.CodeUnsupportedTransProto, "Unsupported Transport Protocol"), nil
	}
	// pion v3.0.3 ignores REQUESTED-ADDRESS-FAMILY and relays over IPv4
	// only: a client asking for an IPv6 relay hears so (RFC 6156 4.2).
	if v, err := m.Get(stun.AttrRequestedAddressFamily); err == nil {
		switch {
		case len(v) != 4 || (v[0] != familyIPv4 && v[0] != familyIPv6):
			return errorReply(m, key, stun.CodeBadRequest, "Bad REQUESTED-ADDRESS-FAMILY"), nil
		case v[0] == familyIPv6:
			f.m.familyRefused.Inc()
			return errorReply(m, key, stun.CodeAddrFamilyNotSupported, "Address Family not Supported"), nil
		}
	}
	if f.draining.Load() {
		f.m.drainRefused.Inc()
		return errorReply(m, key, stun.CodeInsufficientCapacity, "Server is draining"), nil
	}
	switch err := f.tracker.reserve(tuple, user, f.now()); {
	case errors.Is(err, errUserQuota):
		f.m.quota.WithLabelValues(quotaUser).Inc()
		return errorReply(m, key, stun.CodeAllocQuotaReached, "Allocation Quota Reached"), nil
	case errors.Is(err, errTotalQuota):
		f.m.quota.WithLabelValues(quotaTotal).Inc()
		return errorReply(m, key, stun.CodeAllocQuotaReached, "Server Allocation Limit Reached"), nil
	}
	return nil, frame
}

func (f *filter) permission(m *stun.Message, key []byte, src net.Addr, frame []byte) (reply, pass []byte) {
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		ap, err := decodeXORAddr(a.Value, m.TransactionID)
		if err != nil {
			return nil, frame // pion answers 400
		}
		if r := f.policy.CheckPeer(ap); r != "" {
			f.m.denials.WithLabelValues(r).Inc()
			f.log.Debug("peer refused", "reason", r, "src", src.String())
			return errorReply(m, key, stun.CodeForbidden, "Forbidden"), nil
		}
		if a.Value[1] != familyIPv4 { // relays are IPv4: RFC 6156 6.1
			f.m.familyRefused.Inc()
			return errorReply(m, key, stun.CodePeerAddrFamilyMismatch, "Peer Address Family Mismatch"), nil
		}
	}
	return nil, frame
}

// outbound inspects one frame pion sends to a client: it counts relayed data
// and follows Allocate answers for the quota tracker. For an Allocate
// success it returns the relayed address.
func (f *filter) outbound(p []byte, network string, dst, local net.Addr) (relay netip.AddrPort) {
	if isChannelData(p) {
		f.m.pktsClient.Inc()
		f.m.bytesClient.Add(float64(binary.BigEndian.Uint16(p[2:4])))
		return relay
	}
	if len(p) < stunHeader {
		return relay
	}
	switch binary.BigEndian.Uint16(p) {
	case typeDataIndication:
		f.m.pktsClient.Inc()
		if v, ok := findAttr(p, attrData); ok {
			f.m.bytesClient.Add(float64(len(v)))
		}
	case typeAllocateSuccess:
		v, ok := findAttr(p, uint16(stun.AttrXORRelayedAddress))
		if !ok {
			return relay
		}
		var tid [stun.TransactionIDSize]byte
		copy(tid[:], p[8:20])
		ap, err := decodeXORAddr(v, tid)
		if err != nil {
			return relay
		}
		f.tracker.activate(tupleKey(network, dst, local), ap.String())
		return ap
	case typeAllocateError:
		f.tracker.fail(tupleKey(network, dst, local))
	}
	return relay
}

// findAttr walks a STUN message's attributes for type t.
func findAttr(p []byte, t uint16) ([]byte, bool) {
	end := stunHeader + int(binary.BigEndian.Uint16(p[2:4]))
	if end > len(p) {
		end = len(p)
	}
	for i := stunHeader; i+4 <= end; {
		at := binary.BigEndian.Uint16(p[i:])
		l := int(binary.BigEndian.Uint16(p[i+2:]))
		if i+4+l > end {
			return nil, false
		}
		if at == t {
			return p[i+4 : i+4+l], true
		}
		i += 4 + (l+3)&^3
	}
	return nil, false
}

var errBadAddr = errors.New("turnserver: malformed XOR address attribute")

// decodeXORAddr decodes an XOR-PEER-ADDRESS / XOR-RELAYED-ADDRESS value.
func decodeXORAddr(v []byte, tid [stun.TransactionIDSize]byte) (netip.AddrPort, error) {
	if len(v) < 4 {
		return netip.AddrPort{}, errBadAddr
	}
	var x [16]byte
	binary.BigEndian.PutUint32(x[:4], magicCookie)
	copy(x[4:], tid[:])
	port := binary.BigEndian.Uint16(v[2:4]) ^ uint16(magicCookie>>16)
	switch v[1] {
	case familyIPv4:
		if len(v) != 8 {
			return netip.AddrPort{}, errBadAddr
		}
		var b [4]byte
		for i := range b {
			b[i] = v[4+i] ^ x[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom4(b), port), nil
	case familyIPv6:
		if len(v) != 20 {
			return netip.AddrPort{}, errBadAddr
		}
		var b [16]byte
		for i := range b {
			b[i] = v[4+i] ^ x[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom16(b), port), nil
	}
	return netip.AddrPort{}, errBadAddr
}

// errorReply builds an error response to request m, signed with key.
func errorReply(m *stun.Message, key []byte, code stun.ErrorCode, reason string) []byte {
	out, err := stun.Build(
		stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(m.Type.Method, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: code, Reason: []byte(reason)},
		stun.NewSoftware("p2pd turnd"),
		stun.MessageIntegrity(key),
		stun.Fingerprint,
	)
	if err != nil {
		return nil
	}
	return out.Raw
}
