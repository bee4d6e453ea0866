package turnserver

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

func fuzzFilter() *filter {
	m := NewMetrics()
	return &filter{
		auth:    NewAuth(testRealm, map[string]string{"alice": "alice-pw"}, []string{"s"}, nil),
		policy:  NewPolicy(nil, nil, nil),
		tracker: newTracker(1, 2, m),
		m:       m,
		log:     slog.New(slog.DiscardHandler),
		now:     time.Now,
	}
}

func seedFrames(t testing.TB) [][]byte {
	m := signed(t, "alice", testRealm, "alice-pw")
	perm, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest))
	perm.Add(stun.AttrXORPeerAddress, xorPeer(netip.MustParseAddr("::ffff:127.0.0.1"), 9, perm.TransactionID))
	_ = stun.NewUsername("alice").AddTo(perm)
	_ = stun.NewRealm(testRealm).AddTo(perm)
	_ = stun.MessageIntegrity(m.Raw[:0]).AddTo(perm)
	return [][]byte{m.Raw, perm.Raw, {0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c', 0}, {0x01, 0x03, 0, 0}}
}

// FuzzFilter feeds arbitrary frames to the request filter and to the
// outbound inspector: they must never panic, and a refusal must be a STUN
// error response to the same transaction.
func FuzzFilter(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
	f.Fuzz(func(t *testing.T, b []byte) {
		fl := fuzzFilter()
		in := append([]byte(nil), b...)
		reply, pass := fl.inbound(in, "udp", src, local)
		switch {
		case pass == nil && reply != nil:
			m := &stun.Message{Raw: reply}
			if err := m.Decode(); err != nil || m.Type.Class != stun.ClassErrorResponse || !bytes.Equal(m.Raw[8:20], b[8:20]) {
				t.Fatalf("refusal is not an error response to the request: %v", err)
			}
		case pass != nil && !bytes.Equal(pass, b):
			// The one rewrite: a request whose credentials failed loses its
			// MESSAGE-INTEGRITY and what follows, so pion answers 401.
			m := &stun.Message{Raw: pass}
			if err := m.Decode(); err != nil || m.Contains(stun.AttrMessageIntegrity) || !bytes.Equal(pass[4:], b[4:len(pass)]) {
				t.Fatalf("rewritten frame is not the request cut before MESSAGE-INTEGRITY: %v", err)
			}
		}
		if pass == nil && reply == nil && isSTUNOrChannelData(b) {
			t.Fatal("a STUN or ChannelData frame was dropped without an answer")
		}
		fl.outbound(in, "udp", src, local)
	})
}

// FuzzStreamFraming writes an arbitrary byte stream into a TCP-style
// connection: every frame the reader returns must be a whole STUN or
// ChannelData frame, in order, and together they must be a prefix of what
// was sent.
func FuzzStreamFraming(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		if len(stream) > 8192 {
			return
		}
		a, b := net.Pipe()
		defer a.Close()
		_ = a.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			step := int(chunk) + 1
			for i := 0; i < len(stream); i += step {
				if _, err := b.Write(stream[i:min(i+step, len(stream))]); err != nil {
					return
				}
			}
			_ = b.Close()
		}()
		set := &connSet{m: map[*streamConn]struct{}{}}
		fl := fuzzFilter()
		fl.auth = NewAuth(testRealm, nil, nil, nil) // no valid credential: every frame passes, signed ones cut
		sc := &streamConn{Conn: a, f: fl, network: "tcp", data: make([]byte, 16), set: set}
		pos := 0
		buf := make([]byte, maxFrame)
		for {
			n, err := sc.Read(buf)
			if err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF || err == errBadFrame {
					break
				}
				t.Fatalf("read: %v", err)
			}
			if l, ferr := frameLen(buf[:n]); ferr != nil || l != n {
				t.Fatalf("Read returned a partial frame (%d of %d bytes)", n, l)
			}
			// Each frame is the next frame of the stream, or (a request
			// with failed credentials) its start with a shorter length.
			l, _ := frameLen(stream[pos:])
			same := l == n && bytes.Equal(buf[:n], stream[pos:pos+l])
			cut := l > n && n >= stunHeader && bytes.Equal(buf[:2], stream[pos:pos+2]) && bytes.Equal(buf[4:n], stream[pos+4:pos+n])
			if !same && !cut {
				t.Fatalf("frame at %d is neither the stream's frame nor its start", pos)
			}
			pos += l
		}
	})
}
