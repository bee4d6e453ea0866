package nat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

// TestLabPredict checks predictions against the lab's real NATs: from the
// measured profile of each behaviour and a mapping learnt by STUN, predict the
// external port of (1) the same local port toward a new destination and
// (2) a new local port, then observe both with STUN. The observed port must
// be among the candidates, or the NAT must be one Predict refuses.
func TestLabPredict(t *testing.T) {
	s := newLabStund(t)
	primary, other := s.primary(), netip.AddrPortFrom(s.ip4[1], 3479)
	for _, b := range natlab.Behaviours() {
		if b == natlab.UDPBlocked {
			continue // nothing to learn a mapping from
		}
		t.Run(b.String(), func(t *testing.T) {
			h := s.lab.AddRouter("p"+fmt.Sprint(int(b)), b).AddHost("ph" + fmt.Sprint(int(b)))
			waitReachable(t, h, b, primary)
			prof, err := Profile(context.Background(), labConfig(s, h))
			if err != nil {
				t.Fatal(err)
			}
			checkTruth(t, prof, b.Truth())
			p := Predictor{Type: prof.Type, Delta: prof.Delta}
			a := labConn(t, h)
			last := Mapping{Local: int(a.LocalAddr().Port()), External: mapped(t, a, primary)}

			cands, err := p.Predict(last, last.Local, 4)
			got := mapped(t, a, other)
			t.Logf("%s: same port %d toward a new destination: predicted %v (%v), got %d", b, last.Local, cands, err, got)
			checkPrediction(t, p, cands, err, got)
			last.External = got

			c := labConn(t, h)
			local := int(c.LocalAddr().Port())
			cands, err = p.Predict(last, local, 4)
			got = mapped(t, c, primary)
			t.Logf("%s: new port %d: predicted %v (%v), got %d", b, local, cands, err, got)
			checkPrediction(t, p, cands, err, got)
		})
	}
}

func checkPrediction(t *testing.T, p Predictor, cands []int, err error, got int) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrUnpredictable) || p.Delta.Type != DeltaRandom || p.Type != SymmetricNAT {
			t.Errorf("unexpected error: %v", err)
		}
		return
	}
	if !slices.Contains(cands, got) {
		t.Errorf("external port %d not among the predicted %v", got, cands)
	}
}

func labConn(t *testing.T, h *natlab.Host) *stun.Conn {
	t.Helper()
	pc, err := h.Net().ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(h.IP4(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	c := stun.NewConn(pc, 100*time.Millisecond)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func mapped(t *testing.T, c *stun.Conn, srv netip.AddrPort) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Do(ctx, stun.Request{Server: srv})
	if err != nil {
		t.Fatalf("STUN %s from %s: %v", srv, c.LocalAddr(), err)
	}
	return int(r.Mapped.Port())
}
