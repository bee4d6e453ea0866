package turnserver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ChannelData on UDP is relayed by turnd itself. pion handles every
// ChannelData datagram with a lookup of the allocation, a lookup of the
// channel and, towards the client, a fresh frame per datagram; under a
// flood that was a third of turnd's work in Go. channels keeps a copy of
// pion's channel bindings for UDP clients, learned from what passes the
// filter (a ChannelBind request, then pion's success answer to it), and
// relays datagrams on them in the reader that received them:
//
//   - from a client: the frame goes to the relay socket's WriteTo (policy,
//     bandwidth cap and counters apply as for pion's own sends);
//   - from a peer: the relay socket's reader frames it and queues it on the
//     client's listening socket.
//
// The copy never outlives pion's state: a binding is used only until
// bindTTL after its last ChannelBind success, less bindMargin (pion's
// channel timer started a moment earlier), and never once its relay socket
// is closed (pion closes it when the allocation ends, by expiry or
// release). Whatever the copy does not know goes to pion, which stays the
// authority: a miss costs speed, never correctness. TCP and TLS clients
// are left to pion.
const (
	bindTTL    = 10 * time.Minute // pion's default ChannelBindTimeout (turnd does not change it)
	bindMargin = 5 * time.Second

	pendingBindsMax = 1 << 16          // ChannelBind requests awaiting pion's answer
	pendingBindTTL  = 30 * time.Second // a request unanswered this long is forgotten

	// Bindings of one allocation the copy holds; more are left to pion
	// (pion sets no limit). The peer side scans its list per datagram,
	// so it holds fewer.
	maxCopiedBinds = 64
	maxPeerBinds   = 8

	typeChannelBindSuccess = 0x0109
	typeChannelBindError   = 0x0119
	attrChannelNumber      = 0x000C
	attrXORPeerAddress     = 0x0012
)

// binding is one channel of one UDP client's allocation.
type binding struct {
	ln       *packetConn // the listening socket the client uses
	client   netip.AddrPort
	clientNA net.Addr
	num      uint16
	peer     netip.AddrPort
	peerNA   *net.UDPAddr
	rc       *relayConn
	expires  atomic.Int64 // nanoseconds since channels.epoch (monotonic)
}

// unmap turns an IPv4-mapped IPv6 address into IPv4.
func unmap(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }

func (b *binding) live(now time.Duration) bool {
	return int64(now) < b.expires.Load() && !b.rc.closed.Load()
}

type clientKey struct {
	ln     *packetConn
	client netip.AddrPort
}

type chanKey struct {
	clientKey
	num uint16
}

type pendingBind struct {
	clientKey
	num  uint16
	peer netip.AddrPort
	at   time.Time
}

// channels is the copy of pion's UDP channel bindings (see above).
type channels struct {
	gen   *relayGen
	m     *Metrics
	now   func() time.Time
	epoch time.Time // expiries count from here, on the monotonic clock

	mu      sync.RWMutex
	binds   map[chanKey]*binding
	byRelay map[*relayConn][]chanKey // the keys in binds of each relay socket
	allocs  map[clientKey]*relayConn
	pending map[[12]byte]pendingBind
	swept   time.Time // pending last cleared of requests pion never answered
}

func newChannels(gen *relayGen, m *Metrics, now func() time.Time) *channels {
	return &channels{
		gen: gen, m: m, now: now, epoch: now(),
		binds: map[chanKey]*binding{}, byRelay: map[*relayConn][]chanKey{},
		allocs: map[clientKey]*relayConn{}, pending: map[[12]byte]pendingBind{},
	}
}

// since is the time on the copy's clock.
func (cs *channels) since() time.Duration { return cs.now().Sub(cs.epoch) }

// allocated records that pion gave the UDP client on ln the relay socket
// on relay's port.
func (cs *channels) allocated(ln *packetConn, client netip.AddrPort, relay netip.AddrPort) {
	rc := cs.gen.conn(relay.Port())
	if rc == nil {
		return
	}
	k := clientKey{ln, unmap(client)}
	cs.mu.Lock()
	known := cs.allocs[k] == rc // a retransmitted Allocate's answer
	cs.allocs[k] = rc
	cs.mu.Unlock()
	if !known {
		rc.onClose(func() { cs.dropRelay(k, rc) })
	}
}

// dropRelay forgets rc, whose allocation has ended.
func (cs *channels) dropRelay(k clientKey, rc *relayConn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.allocs[k] == rc {
		delete(cs.allocs, k)
	}
	for _, ck := range cs.byRelay[rc] {
		if b := cs.binds[ck]; b != nil && b.rc == rc {
			delete(cs.binds, ck)
		}
	}
	delete(cs.byRelay, rc)
}

// request notes a ChannelBind request that passed the filter on its way to
// pion; frame is the whole request.
func (cs *channels) request(ln *packetConn, src net.Addr, frame []byte, now time.Time) {
	ua, ok := src.(*net.UDPAddr)
	if !ok || len(frame) < stunHeader {
		return
	}
	num, ok := findAttr(frame, attrChannelNumber)
	if !ok || len(num) < 2 {
		return
	}
	pa, ok := findAttr(frame, attrXORPeerAddress)
	if !ok {
		return
	}
	var tid [12]byte
	copy(tid[:], frame[8:20])
	peer, err := decodeXORAddr(pa, tid)
	if err != nil {
		return
	}
	k := clientKey{ln, unmap(ua.AddrPort())}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.allocs[k] == nil {
		// pion answers nothing to a ChannelBind without an allocation: a
		// request that can never bind is not kept.
		return
	}
	if now.Sub(cs.swept) > pendingBindTTL {
		cs.swept = now
		for tid, p := range cs.pending {
			if now.Sub(p.at) > pendingBindTTL {
				delete(cs.pending, tid)
			}
		}
	}
	if len(cs.pending) >= pendingBindsMax {
		return // pion still binds the channel; only the shortcut is missed
	}
	cs.pending[tid] = pendingBind{clientKey: k, num: binary.BigEndian.Uint16(num), peer: unmap(peer), at: now}
}

// isChannelBindAnswer reports whether frame is a ChannelBind success or
// error response.
func isChannelBindAnswer(frame []byte) bool {
	if len(frame) < stunHeader {
		return false
	}
	t := binary.BigEndian.Uint16(frame)
	return t == typeChannelBindSuccess || t == typeChannelBindError
}

// answered sees pion's answer to a ChannelBind request of a UDP client on
// ln (isChannelBindAnswer): a success installs or refreshes the binding.
func (cs *channels) answered(ln *packetConn, dst net.Addr, frame []byte, now time.Time) {
	if len(frame) < stunHeader {
		return
	}
	var tid [12]byte
	copy(tid[:], frame[8:20])
	cs.mu.Lock()
	defer cs.mu.Unlock()
	p, ok := cs.pending[tid]
	if !ok {
		return
	}
	delete(cs.pending, tid)
	if binary.BigEndian.Uint16(frame) != typeChannelBindSuccess {
		return
	}
	ua, ok := dst.(*net.UDPAddr)
	if !ok || p.ln != ln || p.client != unmap(ua.AddrPort()) {
		return
	}
	rc := cs.allocs[p.clientKey]
	if rc == nil || rc.closed.Load() {
		return
	}
	exp := int64(now.Sub(cs.epoch) + bindTTL - bindMargin)
	k := chanKey{p.clientKey, p.num}
	if b := cs.binds[k]; b != nil && b.rc == rc && b.peer == p.peer {
		b.expires.Store(exp)
		rc.addBinding(b) // back on the peer side if a rebinding had taken it off
		return
	}
	if len(cs.byRelay[rc]) >= maxCopiedBinds {
		return
	}
	b := &binding{
		ln: ln, client: p.client, clientNA: dst, num: p.num,
		peer: p.peer, peerNA: net.UDPAddrFromAddrPort(p.peer), rc: rc,
	}
	b.expires.Store(exp)
	if _, had := cs.binds[k]; !had {
		cs.byRelay[rc] = append(cs.byRelay[rc], k)
	}
	cs.binds[k] = b
	rc.addBinding(b)
}

// fromClient relays ChannelData frame from a UDP client if it is on a
// binding the copy holds; false leaves the frame to pion.
func (cs *channels) fromClient(ln *packetConn, src net.Addr, frame []byte) bool {
	ua, ok := src.(*net.UDPAddr)
	if !ok || len(frame) < 4 {
		return false
	}
	n := int(binary.BigEndian.Uint16(frame[2:4]))
	if 4+n > len(frame) || len(frame) >= batchMTU {
		return false // pion drops it: short, or too long for its buffer
	}
	k := chanKey{clientKey{ln, unmap(ua.AddrPort())}, binary.BigEndian.Uint16(frame)}
	cs.mu.RLock()
	b := cs.binds[k]
	cs.mu.RUnlock()
	if b == nil || !b.live(cs.since()) {
		return false
	}
	// A refusal (the policy, a closed socket) is counted by WriteTo; pion
	// would drop the datagram too.
	if _, err := b.rc.WriteTo(frame[4:4+n], b.peerNA); err == nil {
		cs.m.fast.Inc()
	}
	return true
}

// toClient sends data from peer (unmapped) to the client bound to it on
// rc, framed as ChannelData; false leaves the datagram to pion.
func (rc *relayConn) toClient(data []byte, ap netip.AddrPort) bool {
	bs := rc.binds.Load()
	if bs == nil {
		return false
	}
	var b *binding
	for _, x := range *bs {
		if x.peer == ap {
			b = x
			break
		}
	}
	if b == nil || !b.live(b.ln.chans.since()) {
		return false
	}
	var hdr [4]byte
	binary.BigEndian.PutUint16(hdr[0:], b.num)
	binary.BigEndian.PutUint16(hdr[2:], uint16(len(data)))
	rc.f.m.pktsClient.Inc()
	rc.f.m.bytesClient.Add(float64(len(data)))
	rc.f.m.fast.Inc()
	b.ln.writeChannelData(hdr, data, b.clientNA)
	return true
}

// addBinding makes b visible to rc's reader.
func (rc *relayConn) addBinding(b *binding) {
	rc.bmu.Lock()
	defer rc.bmu.Unlock()
	var next []*binding
	if old := rc.binds.Load(); old != nil {
		for _, x := range *old {
			if x == b {
				return // there already
			}
			if x.num != b.num && x.peer != b.peer {
				next = append(next, x)
			}
		}
	}
	if len(next) >= maxPeerBinds {
		return // the peer side of this one stays with pion
	}
	next = append(next, b)
	rc.binds.Store(&next)
	rc.startPolling()
}
