package stun

import (
	"encoding/binary"
	"net/netip"

	"github.com/pion/stun/v2"
)

// Attributes a Binding request may carry that the server understands or
// safely ignores. RESPONSE-ADDRESS (RFC 3489), RESPONSE-PORT and PADDING
// (RFC 5780) are ignored on purpose: honouring them would let anyone aim
// (larger) responses at a third party.
var ignoredAttrs = map[stun.AttrType]bool{
	0x0002: true, // RESPONSE-ADDRESS
	0x0006: true, // USERNAME
	0x0008: true, // MESSAGE-INTEGRITY
	0x0014: true, // REALM
	0x0015: true, // NONCE
	0x001C: true, // MESSAGE-INTEGRITY-SHA256
	0x001E: true, // USERHASH
	0x0024: true, // PRIORITY
	0x0025: true, // USE-CANDIDATE
	0x0026: true, // PADDING
	0x0027: true, // RESPONSE-PORT
}

// site describes the socket a request arrived on: its family's four
// addresses (index = ip<<1 | port, ip 0 = primary, port 0 = primary) and
// which of them it is.
type site struct {
	addrs  *[4]netip.AddrPort
	hasAlt bool
	at     int
	family string
}

// outcome says what the handler did with a request.
type outcome int

const (
	outMalformed outcome = iota
	outSuccess
	outUnknownAttr
	outChangeUnsupported
)

// worker holds the reusable buffers of one serving goroutine.
type worker struct {
	req     stun.Message
	resp    stun.Message
	scratch []byte
	unknown []stun.AttrType
}

func newWorker() *worker {
	return &worker{scratch: make([]byte, 0, 1500), resp: stun.Message{Raw: make([]byte, 0, 256)}}
}

// result of handling one request.
type result struct {
	out       outcome
	resp      []byte // valid until the worker's next request
	via       int    // index of the address to answer from
	kindIndex int    // change<<1 | classic, for metrics
	classic   bool
}

// handle processes one request b from src that arrived on s. It never
// panics on any input; malformed input yields outMalformed and no response.
func (srv *Server) handle(w *worker, b []byte, src netip.AddrPort, s site, tcp bool) result {
	id, classic, err := decode(&w.req, b, w.scratch)
	if err != nil || w.req.Type != stun.BindingRequest {
		return result{out: outMalformed}
	}
	if !classic && w.req.Contains(stun.AttrFingerprint) {
		if stun.Fingerprint.Check(&w.req) != nil {
			return result{out: outMalformed}
		}
	}
	var change uint32
	w.unknown = w.unknown[:0]
	for _, a := range w.req.Attributes {
		switch {
		case a.Type == stun.AttrChangeRequest:
			if len(a.Value) != 4 {
				return result{out: outMalformed}
			}
			change = binary.BigEndian.Uint32(a.Value) & (ChangeIP | ChangePort)
		case a.Type == stun.AttrFingerprint, ignoredAttrs[a.Type], a.Type >= 0x8000:
		default:
			w.unknown = addUnknown(w.unknown, a.Type)
		}
	}
	r := result{via: s.at, classic: classic}
	if classic {
		r.kindIndex = 1
	}
	if change != 0 {
		r.kindIndex |= 2
	}

	m := &w.resp
	m.Reset()
	copy(m.TransactionID[:], id[4:])
	switch {
	case len(w.unknown) > 0:
		r.out = outUnknownAttr
		srv.errorResponse(m, w.unknown)
	case change != 0 && (tcp || !s.hasAlt):
		r.out = outChangeUnsupported
		w.unknown = addUnknown(w.unknown, stun.AttrChangeRequest)
		srv.errorResponse(m, w.unknown)
	default:
		r.out = outSuccess
		if change&ChangeIP != 0 {
			r.via ^= 2
		}
		if change&ChangePort != 0 {
			r.via ^= 1
		}
		srv.successResponse(m, src, s, r.via, classic)
	}
	if classic {
		finishClassic(m, id)
	} else {
		_ = stun.Fingerprint.AddTo(m)
	}
	r.resp = m.Raw
	return r
}

func (srv *Server) successResponse(m *stun.Message, src netip.AddrPort, s site, via int, classic bool) {
	m.Type = stun.BindingSuccess
	m.WriteHeader()
	origin := s.addrs[via]
	if classic {
		addAddr(m, stun.AttrMappedAddress, src)
		addAddr(m, AttrSourceAddress, origin)
		if s.hasAlt {
			addAddr(m, AttrChangedAddress, s.addrs[s.at^3])
		}
		return
	}
	addXORAddr(m, src)
	addAddr(m, stun.AttrMappedAddress, src)
	addAddr(m, stun.AttrResponseOrigin, origin)
	if s.hasAlt {
		addAddr(m, stun.AttrOtherAddress, s.addrs[s.at^3])
		addAddr(m, AttrChangedAddress, s.addrs[s.at^3])
	}
	if len(srv.software) > 0 {
		m.Add(stun.AttrSoftware, srv.software)
	}
}

// maxUnknown caps the UNKNOWN-ATTRIBUTES list. The RFCs do not ask for every
// unknown attribute, and with the cap a 420 answer stays at 92 bytes (default
// SOFTWARE), below a success answer, however many attributes a request holds.
const maxUnknown = 12

// addUnknown adds t to list unless it is there already or the list is full.
func addUnknown(list []stun.AttrType, t stun.AttrType) []stun.AttrType {
	if len(list) >= maxUnknown {
		return list
	}
	for _, u := range list {
		if u == t {
			return list
		}
	}
	return append(list, t)
}

func (srv *Server) errorResponse(m *stun.Message, unknown []stun.AttrType) {
	m.Type = stun.BindingError
	m.WriteHeader()
	_ = (&stun.ErrorCodeAttribute{Code: stun.CodeUnknownAttribute, Reason: []byte("Unknown Attribute")}).AddTo(m)
	// RFC 8489 14.9: a list of 16-bit types (pion/stun v2 writes 32 bits
	// each, which RFC decoders read as pairs with a zero type).
	var v [2 * maxUnknown]byte
	for i, t := range unknown {
		binary.BigEndian.PutUint16(v[2*i:], uint16(t))
	}
	m.Add(stun.AttrUnknownAttributes, v[:2*len(unknown)])
	if len(srv.software) > 0 {
		m.Add(stun.AttrSoftware, srv.software)
	}
}
