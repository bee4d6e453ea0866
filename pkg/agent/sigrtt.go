package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/p2pd-go/p2pd/pkg/signal"
)

// The clock's fallback when no NTP server answers (a UDP-blocked network)
// is offset 0 with half a signalling round trip as the uncertainty. The
// round trip is an ECHO the agent sends to its own node id: through its
// brokers and back, the path a PUNCH takes to a peer and its answer back.

// maxEchoes bounds the echoes awaiting their return.
const maxEchoes = 4

// signallingRTT measures one signalling round trip (clock.Config.RTT).
func (a *Agent) signallingRTT(ctx context.Context) (time.Duration, error) {
	if a.punch == nil || a.sig == nil {
		return 0, errors.New("agent: signalling not started")
	}
	return a.punch.echo(ctx)
}

func (p *punchStrategy) echo(ctx context.Context) (time.Duration, error) {
	id := signal.NewPipeID()
	ch := make(chan struct{}, 1)
	p.mu.Lock()
	if len(p.echoes) >= maxEchoes {
		p.mu.Unlock()
		return 0, errors.New("agent: too many signalling echoes under way")
	}
	p.echoes[id] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.echoes, id)
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.a.sig.Send(ctx, p.a.ID(), p.a.offsets, signal.Body{Type: signal.TypeEcho, PipeID: id, TTL: 10}); err != nil {
		return 0, fmt.Errorf("agent: signalling echo: %w", err)
	}
	select {
	case <-ch:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("agent: signalling echo did not come back: %w", ctx.Err())
	}
}

// echoed takes an ECHO: only our own, awaited ones count.
func (p *punchStrategy) echoed(m *signal.Message) {
	if m.FromID() != p.a.ID() {
		p.a.cfg.Log.Debug("signalling ECHO from another node ignored", "from", m.FromID())
		return
	}
	p.mu.Lock()
	ch, ok := p.echoes[m.PipeID]
	p.mu.Unlock()
	if ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
