package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// A recorded first handshake message replayed to the responder must not
// yield a pipe: the replayer cannot send the key confirmation.
func TestHandshakeReplayRefused(t *testing.T) {
	a, b := newID(t), newID(t)
	// Record what the initiator sends.
	c, s := tcpPair(t)
	var rec bytes.Buffer
	go func() {
		_, _, _ = Accept(context.Background(), &teeConn{Conn: s, w: &rec}, b)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Initiate(ctx, c, a, b.Public, Hello{PipeID: "p", Kind: KindDirect}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	first, err := readFrame(bytes.NewReader(rec.Bytes()), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Replay it on a fresh connection.
	c2, s2 := tcpPair(t)
	go func() {
		_ = writeFrame(c2, first)
		_, _ = io.Copy(io.Discard, c2) // read the reply, send nothing more
	}()
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	if _, _, err := Accept(actx, s2, b); !errors.Is(err, ErrHandshake) {
		t.Fatalf("replayed handshake accepted: %v", err)
	}
}

// teeConn copies what is read from the connection into w.
type teeConn struct {
	net.Conn
	w io.Writer
}

func (t *teeConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	t.w.Write(p[:n])
	return n, err
}

func TestSafeCandidates(t *testing.T) {
	ip := netip.MustParseAddr
	blk := func(ext, nic string) peeraddr.Block {
		return peeraddr.Block{Ext: ip(ext), NIC: ip(nic), Port: 10001, NATType: 5, DeltaType: 2}
	}
	mine := peeraddr.Address{IPv4: []peeraddr.Block{blk("203.0.113.5", "10.0.0.5")}}
	tests := []struct {
		name string
		to   []peeraddr.Block
		want int
	}{
		{"public", []peeraddr.Block{blk("198.51.100.7", "10.0.0.7")}, 1},
		{"loopback ext", []peeraddr.Block{blk("127.0.0.1", "127.0.0.1")}, 0},
		{"private ext (LAN scan)", []peeraddr.Block{blk("192.168.1.1", "192.168.1.1")}, 0},
		{"broadcast", []peeraddr.Block{blk("255.255.255.255", "10.0.0.7")}, 0},
		{"multicast", []peeraddr.Block{blk("224.0.0.1", "10.0.0.7")}, 0},
		{"same router: NIC allowed", []peeraddr.Block{blk("203.0.113.5", "10.0.0.7")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := safeCandidates(peeraddr.Address{IPv4: tt.to}, mine); len(got) != tt.want {
				t.Errorf("got %v, want %d candidates", got, tt.want)
			}
		})
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(1, 3, 2)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if !l.allow("a") {
			t.Fatalf("burst token %d refused", i)
		}
	}
	if l.allow("a") {
		t.Fatal("4th at once allowed")
	}
	now = now.Add(time.Second)
	if !l.allow("a") || l.allow("a") {
		t.Fatal("refill is not 1 per second")
	}
	l.allow("b")
	l.allow("c") // evicts one: the map stays bounded
	if len(l.buckets) > 2 {
		t.Fatalf("%d buckets, bound is 2", len(l.buckets))
	}
}

// One source address cannot hold every handshake slot.
func TestHandshakeSlotsPerIP(t *testing.T) {
	n, err := New(Config{Identity: newID(t), Listen: []string{"127.0.0.1:0"}, MaxHandshakesPerIP: 2, OnPipe: func(sc *SecureConn, _ Hello) { sc.Close() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	addr := n.Addrs()[0].String()
	var idle []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		defer c.Close()
	}
	// The third idle connection from 127.0.0.1 is closed at once.
	_ = idle[2].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle[2].Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("third connection from one address: %v, want closed", err)
	}
	// Another source address still gets a pipe.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Initiate(ctx, c, newID(t), n.cfg.Identity.Public, Hello{PipeID: "x", Kind: KindDirect}); err != nil {
		t.Errorf("127.0.0.2 was refused while 127.0.0.1 held its slots: %v", err)
	}
}
