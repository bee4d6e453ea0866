package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/flynn/noise"
	"github.com/p2pd-go/p2pd/pkg/identity"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

func newID(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// tcpPair returns the two ends of a real loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	return testenv.TCPPair(t, "tcp", "127.0.0.1:0")
}

type acceptResult struct {
	sc    *SecureConn
	hello Hello
	err   error
}

// acceptAsync runs the responder side on s in the background.
func acceptAsync(s net.Conn, id *identity.Identity) <-chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		sc, h, err := Accept(context.Background(), s, id)
		ch <- acceptResult{sc, h, err}
	}()
	return ch
}

func handshake(t *testing.T, initiator, responder *identity.Identity, claimed [identity.KeySize]byte) (*SecureConn, acceptResult, error) {
	t.Helper()
	c, s := tcpPair(t)
	ch := make(chan acceptResult, 1)
	go func() {
		sc, h, err := Accept(context.Background(), s, responder)
		if err != nil {
			s.Close() // as a node does: the initiator sees the refusal at once
		}
		ch <- acceptResult{sc, h, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc, err := Initiate(ctx, c, initiator, claimed, Hello{PipeID: "p1", Kind: "direct"})
	return cc, <-ch, err
}

func TestHandshake(t *testing.T) {
	a, b, mallory := newID(t), newID(t), newID(t)
	t.Run("both proven", func(t *testing.T) {
		cc, res, err := handshake(t, a, b, b.Public)
		if err != nil || res.err != nil {
			t.Fatalf("initiator %v, responder %v", err, res.err)
		}
		if cc.RemoteNodeID() != identity.NodeID(b.Public) {
			t.Errorf("initiator sees %s", cc.RemoteNodeID())
		}
		if res.sc.RemoteNodeID() != identity.NodeID(a.Public) {
			t.Errorf("responder sees %s, want %s", res.sc.RemoteNodeID(), identity.NodeID(a.Public))
		}
		if res.hello != (Hello{PipeID: "p1", Kind: "direct"}) {
			t.Errorf("hello %+v", res.hello)
		}
		// Both directions, a message larger than one frame, and message boundaries.
		big := make([]byte, 200_000)
		_, _ = rand.Read(big)
		go func() { _, _ = cc.Write(big); _, _ = cc.Write([]byte("ECHO hi")) }()
		got := make([]byte, len(big))
		if _, err := io.ReadFull(res.sc, got); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("stream: %v", err)
		}
		m, err := res.sc.ReadMessage()
		if err != nil || string(m) != "ECHO hi" {
			t.Fatalf("message %q %v", m, err)
		}
		if _, err := res.sc.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		if m, err := cc.ReadMessage(); err != nil || string(m) != "hi" {
			t.Fatalf("reply %q %v", m, err)
		}
	})
	t.Run("responder lacks the claimed key", func(t *testing.T) {
		// mallory answers a connection meant for b.
		_, res, err := handshake(t, a, mallory, b.Public)
		if !errors.Is(err, ErrHandshake) {
			t.Errorf("initiator: got %v, want ErrHandshake", err)
		}
		if !errors.Is(res.err, ErrHandshake) {
			t.Errorf("responder: got %v, want ErrHandshake", res.err)
		}
	})
}

// A hello from a newer agent, with a field this version does not know, is
// accepted with the fields it does know.
func TestAcceptNewerHello(t *testing.T) {
	a, b := newID(t), newID(t)
	c, s := tcpPair(t)
	ch := acceptAsync(s, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hello := Hello{PipeID: "p9", Kind: "direct"}
	payload := []byte(`{"pipe_id":"p9","kind":"direct","resume_token":"abc"}`)
	if _, err := initiateWith(ctx, c, a, b.Public, hello, payload, initiatorSuite()); err != nil {
		t.Fatalf("initiator: %v", err)
	}
	res := <-ch
	if res.err != nil {
		t.Fatalf("responder: %v", res.err)
	}
	if res.hello != hello {
		t.Errorf("hello %+v, want %+v", res.hello, hello)
	}
}

func TestAcceptGarbage(t *testing.T) {
	tests := map[string][]byte{
		"empty frame":  {0, 0},
		"short":        {0, 5, 1, 2},
		"random frame": append([]byte{0, 64}, bytes.Repeat([]byte{7}, 64)...),
		"http":         []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			c, s := tcpPair(t)
			go func() { _, _ = c.Write(in); time.Sleep(50 * time.Millisecond); c.Close() }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, _, err := Accept(ctx, s, newID(t))
			if !errors.Is(err, ErrHandshake) {
				t.Fatalf("got %v, want ErrHandshake", err)
			}
		})
	}
}

// FuzzAccept feeds arbitrary first frames to the responder: it must fail
// cleanly, never panic.
func FuzzAccept(f *testing.F) {
	f.Add([]byte{0, 0})
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, s := net.Pipe()
		defer s.Close()
		go func() { _, _ = c.Write(in); c.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, _, err := Accept(ctx, s, id); err == nil {
			t.Fatal("garbage accepted as a handshake")
		}
	})
}

// TestCipherSuites: a responder accepts either suite an initiator proposes
// (AES-GCM where the CPU has AES instructions, ChaCha20-Poly1305 elsewhere),
// both ends agree on it, and data crosses in both directions.
func TestCipherSuites(t *testing.T) {
	a, b := newID(t), newID(t)
	for _, tc := range []struct {
		name  string
		suite noise.CipherSuite
	}{
		{"AESGCM", suiteAESGCM},
		{"ChaChaPoly", suiteChaCha},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := tcpPair(t)
			ch := acceptAsync(s, b)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cc, err := initiate(ctx, c, a, b.Public, Hello{PipeID: "p1", Kind: "direct"}, tc.suite)
			res := <-ch
			if err != nil || res.err != nil {
				t.Fatalf("initiator %v, responder %v", err, res.err)
			}
			if cc.Cipher() != tc.name || res.sc.Cipher() != tc.name {
				t.Fatalf("ciphers: initiator %q, responder %q, want %q", cc.Cipher(), res.sc.Cipher(), tc.name)
			}
			big := make([]byte, 100_000)
			_, _ = rand.Read(big)
			go func() { _, _ = cc.Write(big) }()
			got := make([]byte, len(big))
			if _, err := io.ReadFull(res.sc, got); err != nil || !bytes.Equal(got, big) {
				t.Fatalf("initiator to responder: %v", err)
			}
			go func() { _, _ = res.sc.Write(big[:5000]) }()
			if _, err := io.ReadFull(cc, got[:5000]); err != nil || !bytes.Equal(got[:5000], big[:5000]) {
				t.Fatalf("responder to initiator: %v", err)
			}
		})
	}
}
