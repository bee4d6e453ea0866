package punch

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

// TestLabUDPLateSide punches over UDP between two sequential symmetric
// NATs 100 ms apart (one way: a side may be that late and still meet),
// each side's targets predicted from its STUN mapping. On time the punch
// meets. With one side 500 ms late the other's
// datagrams reach the late side's NAT first; conntrack then maps the late
// side's flows around the tuples they took, so the predicted ports are
// wrong and nothing is ever heard: with Quiet both sides say so
// (ErrQuiet) instead of running out the window.
func TestLabUDPLateSide(t *testing.T) {
	for _, tt := range []struct {
		name string
		late time.Duration
		want error
	}{{"on time", 0, nil}, {"one side late", 500 * time.Millisecond, ErrQuiet}} {
		t.Run(tt.name, func(t *testing.T) {
			lab := natlab.New(t)
			link := natlab.Link{Delay: 50 * time.Millisecond}
			a := lab.AddRouter("ra", natlab.SymmetricSequential, link).AddHost("a")
			b := lab.AddRouter("rb", natlab.SymmetricSequential, link).AddHost("b")
			s := lab.AddServer("s", lab.AllocWAN(1, 0)...)
			var srv *stun.Server
			if err := s.Do(func() (err error) {
				srv, err = stun.Listen(stun.ServerConfig{Primary4: s.IP4(), NoTCP: true})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			stunSrv := []netip.AddrPort{netip.AddrPortFrom(s.IP4(), 3478)}
			open := func(h *natlab.Host) (*UDPSocket, []netip.AddrPort) {
				u, err := ListenUDP(ctx, h.Net(), netip.AddrPortFrom(h.IP4(), 0))
				if err != nil {
					t.Fatal(err)
				}
				m, err := u.Mapping(ctx, stunSrv)
				if err != nil {
					t.Fatal(err)
				}
				var next []netip.AddrPort // the lab NAT's next ports, in send order
				for i := 1; i <= 8; i++ {
					next = append(next, netip.AddrPortFrom(m.Addr(), m.Port()+uint16(i)))
				}
				return u, next
			}
			ua, ta := open(a)
			ub, tb := open(b)
			at := time.Now().Add(300 * time.Millisecond)
			type res struct {
				st  UDPStats
				err error
			}
			run := func(u *UDPSocket, targets []netip.AddrPort, initiator bool, at time.Time) chan res {
				ch := make(chan res, 1)
				go func() {
					st, err := RunUDP(ctx, UDPConfig{Socket: u, PipeID: "p", Targets: targets, Initiator: initiator,
						At: at, Quiet: time.Second}, func(c net.Conn) bool { c.Close(); return true })
					ch <- res{st, err}
				}()
				return ch
			}
			ra, rb := run(ua, tb, true, at), run(ub, ta, false, at.Add(tt.late))
			for _, side := range []struct {
				name string
				ch   chan res
			}{{"a", ra}, {"b", rb}} {
				r := <-side.ch
				t.Logf("%s: %s, %v", side.name, r.st, r.err)
				if tt.want == nil && r.err != nil || tt.want != nil && !errors.Is(r.err, tt.want) {
					t.Errorf("%s: %v, want %v", side.name, r.err, tt.want)
				}
			}
		})
	}
}
