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
	m := NewMetrics(nil)
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
		if !bytes.Equal(in, b) {
			t.Fatal("inbound modified the frame")
		}
		if !pass && reply != nil {
			m := &stun.Message{Raw: reply}
			if err := m.Decode(); err != nil || m.Type.Class != stun.ClassErrorResponse || !bytes.Equal(m.Raw[8:20], b[8:20]) {
				t.Fatalf("refusal is not an error response to the request: %v", err)
			}
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
		fl.auth = NewAuth(testRealm, nil, nil, nil) // no valid credential: every frame passes
		sc := &streamConn{Conn: a, f: fl, network: "tcp", data: make([]byte, 16), set: set}
		var got []byte
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
			got = append(got, buf[:n]...)
		}
		if !bytes.HasPrefix(stream, got) {
			t.Fatal("frames are not a prefix of the stream")
		}
	})
}
