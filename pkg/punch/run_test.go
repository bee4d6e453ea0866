package punch

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
)

var share = sock.Options{ReuseAddr: true, ReusePort: true}

// side is one end of a loopback punch: a listener on the punch port, as
// the node listener is, feeding Accepted.
type side struct {
	ln       net.Listener
	port     netip.AddrPort
	accepted chan net.Conn
}

func newSide(t *testing.T, ip string) *side {
	t.Helper()
	ln, err := sock.Listen(context.Background(), sock.Host, "tcp4", ip+":0", share)
	if err != nil {
		t.Fatal(err)
	}
	s := &side{ln: ln, port: netip.MustParseAddrPort(ln.Addr().String()), accepted: make(chan net.Conn, 4)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *side) config(peer *side, at time.Time) Config {
	o := share
	o.Local = s.port
	return Config{Options: o, Targets: []netip.AddrPort{peer.port}, At: at, Accepted: s.accepted, Window: time.Second}
}

// TestRunLoopback punches between two ports on loopback, both dialling at
// the same moment and each with a listener on its punch port: both sides
// end up with the two ends of one connection, however it opened
// (simultaneous open, or one side's SYN at the other's listener).
func TestRunLoopback(t *testing.T) {
	for i := range 5 {
		a, b := newSide(t, "127.0.0.1"), newSide(t, "127.0.0.2")
		at := time.Now().Add(50 * time.Millisecond)
		type res struct {
			c   net.Conn
			st  Stats
			err error
		}
		run := func(s, peer *side, out chan<- res) {
			var kept net.Conn
			st, err := Run(context.Background(), s.config(peer, at), func(c net.Conn) bool { kept = c; return true })
			out <- res{kept, st, err}
		}
		ra, rb := make(chan res, 1), make(chan res, 1)
		go run(a, b, ra)
		go run(b, a, rb)
		x, y := <-ra, <-rb
		if x.err != nil || y.err != nil {
			t.Fatalf("attempt %d: punch failed: %v / %v", i, x.err, y.err)
		}
		t.Logf("attempt %d: a %+v, b %+v", i, x.st, y.st)
		if x.c.LocalAddr().String() != y.c.RemoteAddr().String() || x.c.RemoteAddr().String() != y.c.LocalAddr().String() {
			t.Fatalf("the kept connections are not one: %v-%v and %v-%v", x.c.LocalAddr(), x.c.RemoteAddr(), y.c.LocalAddr(), y.c.RemoteAddr())
		}
		if _, err := x.c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(y.c, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("read %q %v", buf, err)
		}
		x.c.Close()
		y.c.Close()
	}
}

// TestRunNobody: a punch toward a port where nothing answers ends after its
// rounds with ErrNoConnection, re-dialling after each refusal.
func TestRunNobody(t *testing.T) {
	a := newSide(t, "127.0.0.1")
	l, err := net.Listen("tcp4", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	cfg := a.config(&side{port: dead}, time.Now())
	cfg.Rounds, cfg.Window = 2, 100*time.Millisecond
	st, err := Run(context.Background(), cfg, func(c net.Conn) bool { t.Error("a connection to nobody"); return true })
	if !errors.Is(err, ErrNoConnection) {
		t.Fatalf("err %v, want ErrNoConnection", err)
	}
	if st.Rounds != 2 || st.Refused < 2 {
		t.Fatalf("stats %+v: want 2 rounds and re-dials after refusals", st)
	}
}

func TestRunConfig(t *testing.T) {
	if _, err := Run(context.Background(), Config{Targets: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}}, nil); err == nil {
		t.Error("a punch without a punch port ran")
	}
	if _, err := Run(context.Background(), Config{Options: sock.Options{Local: netip.MustParseAddrPort("127.0.0.1:1")}}, nil); err == nil {
		t.Error("a punch without targets ran")
	}
}
