package pipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd-go/p2pd/internal/metricstest"
	"github.com/p2pd-go/p2pd/internal/testenv"
)

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t testing.TB, network, addr string) (client, server net.Conn) {
	t.Helper()
	return testenv.TCPPair(t, network, addr)
}

// pipePair wraps both ends of a loopback connection in pipes.
func pipePair(t *testing.T, opts Options) (a, b *Pipe) {
	t.Helper()
	c, s := tcpPair(t, "tcp4", "127.0.0.1:0")
	a, b = New(c, opts), New(s, opts)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// sync subscribes a handler on every message of p and returns a function
// that waits until n messages in total have been read by the pipe.
func syncOn(t *testing.T, p *Pipe) func(n int) {
	t.Helper()
	seen := make(chan struct{}, 1000)
	if err := p.SubscribeFunc(Sub{Msg: "", Addr: ".*"}, func(Message) { seen <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	got := 0
	return func(n int) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for got < n {
			select {
			case <-seen:
				got++
			case <-timeout:
				t.Fatalf("pipe read %d of %d messages", got, n)
			}
		}
	}
}

func recvAll(t *testing.T, p *Pipe, s Sub) []string {
	t.Helper()
	var out []string
	for {
		m, err := p.Recv(context.Background(), s, 50*time.Millisecond)
		if errors.Is(err, ErrTimeout) {
			return out
		}
		if err != nil {
			t.Fatalf("Recv(%+v): %v", s, err)
		}
		out = append(out, string(m.Data))
	}
}

// Every matching subscription gets its own copy of a message (v2 "find
// all" semantics); patterns are searched in the payload and in "ip:port".
func TestFanOut(t *testing.T) {
	a, b := pipePair(t, Options{})
	port := a.conn.LocalAddr().(*net.TCPAddr).Port
	subs := []struct {
		sub  Sub
		want []string
	}{
		{Sub{}, []string{"hello", "Helo", "bye", "ping 42"}},
		{Sub{Msg: "[hH]el+o"}, []string{"hello", "Helo"}},
		{Sub{Msg: "^bye$"}, []string{"bye"}},
		{Sub{Msg: `\d+`, Addr: `^127\.0\.0\.1:` + fmt.Sprint(port) + `$`}, []string{"ping 42"}},
		{Sub{Addr: `^\[::1\]`}, nil},
		{Sub{Msg: "nothing"}, nil},
	}
	for _, s := range subs {
		if err := b.Subscribe(s.sub); err != nil {
			t.Fatal(err)
		}
	}
	wait := syncOn(t, b)
	ctx := context.Background()
	for _, m := range []string{"hello", "Helo", "bye", "ping 42"} {
		if err := a.Send(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	wait(4)
	for _, s := range subs {
		t.Run(fmt.Sprintf("%q/%q", s.sub.Msg, s.sub.Addr), func(t *testing.T) {
			got := recvAll(t, b, s.sub)
			if strings.Join(got, "|") != strings.Join(s.want, "|") {
				t.Fatalf("got %q, want %q", got, s.want)
			}
		})
	}
}

func TestFramings(t *testing.T) {
	msgs := []string{"one", "", "two\x00with\xffbinary", strings.Repeat("x", 100_000), "last"}
	tests := []struct {
		framing Framing
		skip    func(string) bool // messages the framing cannot carry
	}{
		{Frames, func(string) bool { return false }},
		{Lines, func(string) bool { return false }},
		{Chunks, func(s string) bool { return s == "" }},
	}
	for _, tc := range tests {
		t.Run(tc.framing.String(), func(t *testing.T) {
			a, b := pipePair(t, Options{Framing: tc.framing})
			if err := b.Subscribe(Sub{}); err != nil {
				t.Fatal(err)
			}
			var sent []string
			for _, m := range msgs {
				if tc.skip(m) {
					continue
				}
				if err := a.Send(context.Background(), []byte(m)); err != nil {
					t.Fatalf("Send: %v", err)
				}
				sent = append(sent, m)
			}
			a.Close()
			var got []string
			for {
				m, err := b.Recv(context.Background(), Sub{}, 30*time.Second)
				if errors.Is(err, ErrClosed) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, string(m.Data))
			}
			if tc.framing == Chunks { // boundaries are not kept; bytes are
				if strings.Join(got, "") != strings.Join(sent, "") {
					t.Fatalf("chunks carried %d bytes, want %d", len(strings.Join(got, "")), len(strings.Join(sent, "")))
				}
				return
			}
			if len(got) != len(sent) {
				t.Fatalf("got %d messages, want %d", len(got), len(sent))
			}
			for i := range sent {
				if got[i] != sent[i] {
					t.Fatalf("message %d differs", i)
				}
			}
		})
	}
}

func TestQueueDropsOldest(t *testing.T) {
	metrics := NewMetrics()
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg); err != nil {
		t.Fatal(err)
	}
	a, b := pipePair(t, Options{QueueSize: 3, Metrics: metrics})
	if err := b.Subscribe(Sub{Msg: "^m"}); err != nil {
		t.Fatal(err)
	}
	wait := syncOn(t, b)
	for i := 1; i <= 5; i++ {
		if err := a.Send(context.Background(), []byte(fmt.Sprintf("m%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	wait(5)
	if got := strings.Join(recvAll(t, b, Sub{Msg: "^m"}), ","); got != "m3,m4,m5" {
		t.Fatalf("queue holds %s, want m3,m4,m5", got)
	}
	if b.Dropped() != 2 {
		t.Errorf("Dropped = %d, want 2", b.Dropped())
	}
	if got := testutil.ToFloat64(metrics.Dropped); got != 2 {
		t.Errorf("agent_pipe_queue_dropped_total = %v, want 2", got)
	}
	if got := testutil.ToFloat64(metrics.Sent); got != 5 {
		t.Errorf("agent_pipe_messages_sent_total = %v, want 5", got)
	}
	metricstest.Lint(t, reg, "agent")
}

// The byte budget drops the oldest messages too: four 400-byte messages
// in a 1000-byte queue leave the newest two.
func TestQueueByteBudget(t *testing.T) {
	a, b := pipePair(t, Options{QueueBytes: 1000})
	if err := b.Subscribe(Sub{}); err != nil {
		t.Fatal(err)
	}
	wait := syncOn(t, b)
	for i := 1; i <= 4; i++ {
		if err := a.Send(context.Background(), []byte(fmt.Sprintf("%d%s", i, strings.Repeat("x", 399)))); err != nil {
			t.Fatal(err)
		}
	}
	wait(4)
	var firsts []string
	for _, m := range recvAll(t, b, Sub{}) {
		firsts = append(firsts, m[:1])
	}
	if got := strings.Join(firsts, ","); got != "3,4" {
		t.Fatalf("queue holds messages %s, want 3,4", got)
	}
	if b.Dropped() != 2 {
		t.Errorf("Dropped = %d, want 2", b.Dropped())
	}
}

func TestUnmatchedCounted(t *testing.T) {
	metrics := NewMetrics()
	a, b := pipePair(t, Options{Metrics: metrics})
	if err := b.Subscribe(Sub{Msg: "keep"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []string{"drop me", "keep me"} {
		if err := a.Send(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := b.Recv(ctx, Sub{Msg: "keep"}, 30*time.Second)
	if err != nil || string(m.Data) != "keep me" {
		t.Fatalf("Recv = %q, %v", m.Data, err)
	}
	// The reader handles messages in order, so "drop me" was counted before
	// "keep me" was queued.
	if got := testutil.ToFloat64(metrics.Unmatched); got != 1 {
		t.Errorf("agent_pipe_unmatched_total = %v, want 1", got)
	}
}

func TestRecvErrors(t *testing.T) {
	_, b := pipePair(t, Options{})
	ctx := context.Background()
	if err := b.Subscribe(Sub{Msg: "x"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"timeout", func() error { _, err := b.Recv(ctx, Sub{Msg: "x"}, 10*time.Millisecond); return err }, ErrTimeout},
		{"unknown sub", func() error { _, err := b.Recv(ctx, Sub{Msg: "y"}, time.Second); return err }, ErrNoSub},
		{"duplicate sub", func() error { return b.Subscribe(Sub{Msg: "x"}) }, ErrSubExists},
		{"unsubscribe unknown", func() error { return b.Unsubscribe(Sub{Msg: "y"}) }, ErrNoSub},
		{"cancelled", func() error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			_, err := b.Recv(c, Sub{Msg: "x"}, time.Minute)
			return err
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("bad pattern", func(t *testing.T) {
		if err := b.Subscribe(Sub{Msg: "("}); err == nil || !strings.Contains(err.Error(), "message pattern") {
			t.Fatalf("Subscribe with bad regex: %v", err)
		}
		if err := b.Subscribe(Sub{Addr: "[z-a]"}); err == nil || !strings.Contains(err.Error(), "address pattern") {
			t.Fatalf("Subscribe with bad regex: %v", err)
		}
	})
	t.Run("unsubscribe wakes recv", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() { _, err := b.Recv(ctx, Sub{Msg: "x"}, time.Minute); errc <- err }()
		for {
			// Unsubscribe may win before Recv starts waiting; either way
			// Recv must end with ErrNoSub, not a timeout.
			if err := b.Unsubscribe(Sub{Msg: "x"}); err == nil {
				break
			}
		}
		if err := <-errc; !errors.Is(err, ErrNoSub) {
			t.Fatalf("Recv after Unsubscribe: %v", err)
		}
	})
}

func TestSendErrors(t *testing.T) {
	a, _ := pipePair(t, Options{Framing: Lines, MaxMessage: 10})
	ctx := context.Background()
	if err := a.Send(ctx, []byte("a\nb")); !errors.Is(err, ErrNewline) {
		t.Errorf("newline in lines framing: %v", err)
	}
	if err := a.Send(ctx, bytes.Repeat([]byte("a"), 11)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized message: %v", err)
	}
	if err := a.Send(ctx, []byte("fine")); err != nil {
		t.Errorf("valid message after refused ones: %v", err)
	}
}

// A peer announcing a frame larger than MaxMessage closes the pipe with
// ErrTooLarge instead of allocating it.
func TestOversizedFrameCloses(t *testing.T) {
	c, s := tcpPair(t, "tcp4", "127.0.0.1:0")
	p := New(s, Options{MaxMessage: 1000})
	defer p.Close()
	closed := make(chan error, 1)
	p.OnClose(func(err error) { closed <- err })
	c.Write([]byte{0x7f, 0xff, 0xff, 0xff})
	if err := <-closed; !errors.Is(err, ErrTooLarge) {
		t.Fatalf("close reason %v, want ErrTooLarge", err)
	}
}

func TestClose(t *testing.T) {
	t.Run("remote FIN", func(t *testing.T) {
		a, b := pipePair(t, Options{})
		if err := b.Subscribe(Sub{}); err != nil {
			t.Fatal(err)
		}
		closed := make(chan error, 1)
		b.OnClose(func(err error) { closed <- err })
		a.Send(context.Background(), []byte("last words"))
		a.Close()
		if err := <-closed; err != nil {
			t.Fatalf("clean close reported %v", err)
		}
		m, err := b.Recv(context.Background(), Sub{}, time.Second)
		if err != nil || string(m.Data) != "last words" {
			t.Fatalf("queued message after close: %q, %v", m.Data, err)
		}
		if _, err := b.Recv(context.Background(), Sub{}, time.Second); !errors.Is(err, ErrClosed) {
			t.Fatalf("Recv on closed, drained pipe: %v", err)
		}
		if err := b.Send(context.Background(), []byte("x")); err == nil {
			t.Fatal("Send on a closed pipe succeeded")
		}
		late := make(chan error, 1)
		b.OnClose(func(err error) { late <- err })
		if err := <-late; err != nil {
			t.Fatalf("late OnClose got %v", err)
		}
	})
	t.Run("remote RST", func(t *testing.T) {
		c, s := tcpPair(t, "tcp4", "127.0.0.1:0")
		b := New(s, Options{})
		defer b.Close()
		closed := make(chan error, 1)
		b.OnClose(func(err error) { closed <- err })
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
		if err := <-closed; err == nil {
			t.Fatal("reset connection reported a clean close")
		}
		if b.Err() == nil {
			t.Fatal("Err() is nil after a reset")
		}
	})
	t.Run("local close", func(t *testing.T) {
		a, _ := pipePair(t, Options{})
		closed := make(chan error, 1)
		a.OnClose(func(err error) { closed <- err })
		a.Close()
		if err := <-closed; err != nil {
			t.Fatalf("local close reported %v", err)
		}
		<-a.Done()
	})
}

func TestIPv6Address(t *testing.T) {
	c, s := tcpPair(t, "tcp6", "[::1]:0")
	a, b := New(c, Options{}), New(s, Options{})
	defer a.Close()
	defer b.Close()
	if err := b.Subscribe(Sub{Addr: `^\[::1\]:\d+$`}); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(context.Background(), []byte("v6")); err != nil {
		t.Fatal(err)
	}
	m, err := b.Recv(context.Background(), Sub{Addr: `^\[::1\]:\d+$`}, 30*time.Second)
	if err != nil || string(m.Data) != "v6" {
		t.Fatalf("Recv = %q, %v", m.Data, err)
	}
}

// TestDivert: messages queued before a Divert come back from it, later ones
// go to the handler, in order, none lost; after Undivert they queue again.
func TestDivert(t *testing.T) {
	a, b := net.Pipe()
	pa, pb := New(a, Options{}), New(b, Options{})
	defer pa.Close()
	defer pb.Close()
	all := Sub{}
	if err := pb.Subscribe(all); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := pa.Send(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for pb.Stats().Queued < 3 {
		time.Sleep(time.Millisecond)
	}
	got := make(chan byte, 10)
	old, err := pb.Divert(all, func(m Message) { got <- m.Data[0] })
	if err != nil || len(old) != 3 || old[2].Data[0] != 2 {
		t.Fatalf("Divert: %v %v", old, err)
	}
	if _, err := pb.Divert(all, func(Message) {}); err == nil {
		t.Error("second Divert accepted")
	}
	if _, err := pb.Recv(ctx, all, time.Millisecond); err == nil {
		t.Error("Recv on a diverted subscription")
	}
	for i := 3; i < 6; i++ {
		if err := pa.Send(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if b := <-got; b != byte(i) {
			t.Fatalf("handler got %d, want %d", b, i)
		}
	}
	// A message the handler could not pass on goes back, before later ones.
	if err := pb.Requeue(all, Message{Data: []byte{8}}); err != nil {
		t.Fatal(err)
	}
	pb.Undivert(all)
	if err := pa.Send(ctx, []byte{9}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []byte{8, 9} {
		if m, err := pb.Recv(ctx, all, 5*time.Second); err != nil || m.Data[0] != want {
			t.Errorf("after Undivert: %v %v, want %d", m, err, want)
		}
	}
	if err := pb.Requeue(Sub{Msg: "nope"}, Message{}); !errors.Is(err, ErrNoSub) {
		t.Errorf("Requeue on no subscription: %v", err)
	}
}

// TestDivertLentBuffers: a Divert handler is lent the reader's buffer, which
// is reused for later messages, so what queues and keeping handlers got, and
// what the handler requeued, must be copies that stay intact.
func TestDivertLentBuffers(t *testing.T) {
	c, s := tcpPair(t, "tcp", "127.0.0.1:0")
	pa, pb := New(c, Options{}), New(s, Options{})
	defer pa.Close()
	defer pb.Close()
	all, tagged := Sub{}, Sub{Msg: "^keep"}
	for _, sub := range []Sub{all, tagged} {
		if err := pb.Subscribe(sub); err != nil {
			t.Fatal(err)
		}
	}
	var kept [][]byte
	var mu sync.Mutex
	if err := pb.SubscribeFunc(Sub{Msg: "^keep 0"}, func(m Message) {
		mu.Lock()
		kept = append(kept, m.Data)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	msg := func(i int) []byte { // large enough for a pooled buffer
		b := bytes.Repeat([]byte{byte('a' + i)}, 3*pooledMin)
		copy(b, fmt.Sprintf("keep %d ", i))
		return b
	}
	lent := make(chan []byte, 16)
	if _, err := pb.Divert(all, func(m Message) {
		lent <- bytes.Clone(m.Data)
		if m.Data[5] == '1' { // "keep 1": the handler cannot pass it on
			_ = pb.Requeue(all, m)
		}
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 6
	for i := range n {
		if err := pa.Send(ctx, msg(i)); err != nil {
			t.Fatal(err)
		}
		if got := <-lent; !bytes.Equal(got, msg(i)) {
			t.Fatalf("handler got message %d wrong", i)
		}
	}
	for i := range n {
		m, err := pb.Recv(ctx, tagged, 5*time.Second)
		if err != nil || !bytes.Equal(m.Data, msg(i)) {
			t.Fatalf("queued message %d changed after later reads (%v)", i, err)
		}
	}
	pb.Undivert(all)
	if m, err := pb.Recv(ctx, all, 5*time.Second); err != nil || !bytes.Equal(m.Data, msg(1)) {
		t.Fatalf("requeued message changed after later reads (%v)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(kept) != 1 || !bytes.Equal(kept[0], msg(0)) {
		t.Fatalf("keeping handler's message changed after later reads")
	}
}
