package quicpipe

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func listen(t *testing.T) *quic.Transport {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { _ = tr.Close(); _ = pc.Close() })
	return tr
}

// TestPipe: a stream over real loopback sockets carries data both ways, a
// Close reaches the peer as EOF after the data, and the stream hello does
// not show up as data.
func TestPipe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, ct, err := TLS("p2pd-test")
	if err != nil {
		t.Fatal(err)
	}
	a, b := listen(t), listen(t)
	ln, err := b.Listen(st, Config(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *Conn, 1)
	go func() {
		qc, err := ln.Accept(ctx)
		if err != nil {
			t.Error(err)
			close(accepted)
			return
		}
		c, err := Accept(ctx, qc, Options{Linger: time.Second})
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := Dial(ctx, a, b.Conn.LocalAddr(), ct, Config(5*time.Second), Options{Linger: time.Second, Prefix: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.FailNow()
	}
	for _, tt := range []struct {
		name     string
		from, to *Conn
	}{{"dialer to acceptor", c, s}, {"acceptor to dialer", s, c}} {
		t.Run(tt.name, func(t *testing.T) {
			msg := []byte("hello " + tt.name)
			if _, err := tt.from.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(tt.to, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != string(msg) {
				t.Fatalf("read %q, want %q", got, msg)
			}
		})
	}
	if _, err := c.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	rest, err := io.ReadAll(s)
	if err != nil || string(rest) != "last" {
		t.Fatalf("after the peer's Close: %q, %v; want \"last\" and EOF", rest, err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
	s.Close()
	select {
	case <-c.Context().Done():
	case <-ctx.Done():
		t.Fatal("the QUIC connection outlived both Closes")
	}
}

// TestAcceptRefusesNoHello: a connection whose stream starts with another
// byte is refused.
func TestAcceptRefusesNoHello(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, ct, err := TLS("p2pd-test")
	if err != nil {
		t.Fatal(err)
	}
	a, b := listen(t), listen(t)
	ln, err := b.Listen(st, Config(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	res := make(chan error, 1)
	go func() {
		qc, err := ln.Accept(ctx)
		if err != nil {
			res <- err
			return
		}
		_, err = Accept(ctx, qc, Options{})
		res <- err
	}()
	qc, err := a.Dial(ctx, b.Conn.LocalAddr(), ct, Config(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	stream, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Write([]byte{0x7f}); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err == nil {
		t.Fatal("a stream without the hello was accepted")
	}
}
