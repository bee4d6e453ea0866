package node

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// testStrategy is a strategy whose behaviour the race tests choose.
type testStrategy struct {
	name    string
	skip    string
	connect func(ctx context.Context, a Attempt) (*SecureConn, error)
	started chan time.Time
}

func (s *testStrategy) Name() string        { return s.name }
func (s *testStrategy) Plan(Attempt) string { return s.skip }
func (s *testStrategy) Connect(ctx context.Context, a Attempt) (*SecureConn, error) {
	if s.started != nil {
		s.started <- time.Now()
	}
	return s.connect(ctx, a)
}

var errBoom = errors.New("boom")

func startNodeWith(t *testing.T, extra ...Strategy) *Node {
	t.Helper()
	n, err := New(Config{Identity: newID(t), Listen: []string{"127.0.0.1:0"}, DirectTimeout: 2 * time.Second, Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestConnectRace(t *testing.T) {
	b, _ := startNode(t, "127.0.0.1")
	waitCancel := func(ctx context.Context, _ Attempt) (*SecureConn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	fail := func(context.Context, Attempt) (*SecureConn, error) { return nil, errBoom }

	t.Run("first pipe wins, a slower strategy is cancelled", func(t *testing.T) {
		slow := &testStrategy{name: "slow", connect: waitCancel}
		a := startNodeWith(t, slow)
		sc, rep, err := a.ConnectWith(context.Background(), addressOf(b), Options{Strategies: []string{Direct, "slow"}, NoStagger: true})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		if rep.Winner != Direct || rep.Phases[0].Result != ResultOK || rep.Phases[1].Result != ResultCancelled {
			t.Fatalf("report %+v", rep)
		}
		if rep.Remote != b.Addrs()[0].String() {
			t.Errorf("report remote %q, want the winner's %s", rep.Remote, b.Addrs()[0])
		}
	})
	t.Run("a skipped strategy lets the next start at once", func(t *testing.T) {
		skipped := &testStrategy{name: "never", skip: "cannot work here", connect: fail}
		var a *Node
		next := &testStrategy{name: "next", connect: func(ctx context.Context, at Attempt) (*SecureConn, error) {
			c, err := net.Dial("tcp", b.Addrs()[0].String())
			if err != nil {
				return nil, err
			}
			return a.Secure(ctx, c, at.Peer, Hello{PipeID: at.PipeID, Kind: "next"})
		}}
		a = startNodeWith(t, skipped, next)
		sc, rep, err := a.ConnectWith(context.Background(), addressOf(b), Options{Strategies: []string{"never", "next"}})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		if rep.Phases[0].Result != ResultSkipped || rep.Phases[0].Err != "cannot work here" {
			t.Errorf("skipped phase %+v", rep.Phases[0])
		}
		if rep.Winner != "next" || rep.Phases[1].Start != 0 {
			t.Errorf("the next strategy did not start at once: %+v", rep.Phases[1])
		}
	})
	t.Run("every strategy failed: the errors stay errors", func(t *testing.T) {
		broken := &testStrategy{name: "broken", connect: fail}
		a := startNodeWith(t, broken)
		_, rep, err := a.ConnectWith(context.Background(), addressOf(b), Options{Strategies: []string{"broken"}})
		if !errors.Is(err, ErrNoStrategy) || !errors.Is(err, errBoom) {
			t.Fatalf("error %v: want ErrNoStrategy joined with the strategy's own error", err)
		}
		if rep.Winner != "" || rep.Phases[0].Result != ResultFailed {
			t.Errorf("report %+v", rep)
		}
	})
	t.Run("unknown strategy", func(t *testing.T) {
		a := startNodeWith(t)
		if _, _, err := a.ConnectWith(context.Background(), addressOf(b), Options{Strategies: []string{"carrier-pigeon"}}); err == nil {
			t.Fatal("an unknown strategy was accepted")
		}
	})
	t.Run("a later strategy waits for its stagger", func(t *testing.T) {
		late := &testStrategy{name: KindRelay, connect: waitCancel, started: make(chan time.Time, 1)}
		a := startNodeWith(t, late)
		begin := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// Direct to a closed port fails at once; the relay still starts only
		// after its delay (ordering, not a timing bound: it must not start
		// before the delay has passed).
		to := addressOf(b)
		to.IPv4[0].Port = closedPort(t)
		go func() { _, _, _ = a.ConnectWith(ctx, to, Options{Strategies: []string{Direct, KindRelay}}) }()
		select {
		case at := <-late.started:
			if at.Sub(begin) < DefaultDelay(KindRelay) {
				t.Errorf("relay started after %v, before its delay %v", at.Sub(begin), DefaultDelay(KindRelay))
			}
		case <-ctx.Done():
			t.Fatal("relay never started")
		}
	})
	t.Run("two strategies with one name", func(t *testing.T) {
		_, err := New(Config{Identity: newID(t), Extra: []Strategy{&testStrategy{name: Direct}}})
		if err == nil {
			t.Fatal("a second strategy named direct was accepted")
		}
	})
}

func closedPort(t *testing.T) uint16 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return p
}
