package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/relay"
	"github.com/p2pd-go/p2pd/pkg/signal"
)

// The relay strategy connects through TURN, relay to relay: both agents
// hold a standing allocation (pkg/relay). The connecting side sends its
// relay address in a TURN message; the peer permits it and answers with its
// own; the connecting side permits that and opens a QUIC stream to it, and
// the node runs the Noise handshake on the stream as on any pipe. Relay to
// relay works whatever the NATs (even UDP-blocked: the allocation is then
// over TCP), and needs no allocation round trips at connect time.

// turnPayload is the body of a TURN signalling message.
type turnPayload struct {
	Relay string `json:"relay,omitempty"` // the sender's relayed address, ip:port
	Reply bool   `json:"reply,omitempty"` // an answer to a request with the same pipe id
	Error string `json:"error,omitempty"` // why the sender cannot relay (a reply)
	// Resume: the sender runs resumable pipes (pipe migration, migrate.go);
	// a requester that got it in the reply says so in the Noise Hello.
	Resume bool `json:"resume,omitempty"`
}

// maxRelayAnswers bounds TURN requests being answered at once.
const maxRelayAnswers = 16

type relayStrategy struct {
	a       *Agent
	rc      *relay.Client
	mu      sync.Mutex
	pending map[string]pendingRelay // our requests by pipe id
	answers chan struct{}
}

type pendingRelay struct {
	peer string
	ch   chan turnPayload
}

func newRelayStrategy(a *Agent, rc *relay.Client) *relayStrategy {
	return &relayStrategy{a: a, rc: rc, pending: map[string]pendingRelay{}, answers: make(chan struct{}, maxRelayAnswers)}
}

func (*relayStrategy) Name() string { return node.KindRelay }

func (r *relayStrategy) Plan(node.Attempt) string {
	if _, ok := r.rc.RelayAddr(); !ok {
		return "no relay allocation yet (TURN server unreachable?)"
	}
	return ""
}

func (r *relayStrategy) Connect(ctx context.Context, at node.Attempt) (*node.SecureConn, error) {
	mine, ok := r.rc.RelayAddr()
	if !ok {
		return nil, errors.New("no relay allocation")
	}
	ch := make(chan turnPayload, 1)
	r.mu.Lock()
	r.pending[at.PipeID] = pendingRelay{peer: at.To.NodeID, ch: ch}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, at.PipeID)
		r.mu.Unlock()
	}()
	if err := r.send(ctx, at.To, at.PipeID, turnPayload{Relay: mine.String(), Resume: !r.a.cfg.Migrate.Off}); err != nil {
		return nil, err
	}
	var ans turnPayload
	select {
	case ans = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("peer did not answer the TURN request: %w", ctx.Err())
	}
	if ans.Error != "" {
		return nil, fmt.Errorf("peer cannot relay: %s", ans.Error)
	}
	theirs, err := netip.ParseAddrPort(ans.Relay)
	if err != nil {
		return nil, fmt.Errorf("peer's relay address %q: %w", ans.Relay, err)
	}
	if err := r.rc.Permit(ctx, theirs); err != nil {
		return nil, err
	}
	c, err := r.rc.Dial(ctx, theirs)
	if err != nil {
		return nil, err
	}
	return r.a.node.Secure(ctx, c, at.Peer, node.Hello{PipeID: at.PipeID, Kind: node.KindRelay, Resume: ans.Resume && !r.a.cfg.Migrate.Off})
}

func (r *relayStrategy) send(ctx context.Context, to peeraddr.Address, pipeID string, p turnPayload) error {
	mine, err := r.a.Address()
	if err != nil {
		return err
	}
	body, _ := json.Marshal(p)
	return r.a.sig.SendTo(ctx, to, signal.Body{Type: signal.TypeTURN, PipeID: pipeID, TTL: 10, SrcAddr: mine.String(), Payload: body})
}

func (*relayStrategy) SignalTypes() []signal.Type { return []signal.Type{signal.TypeTURN} }

// HandleSignal takes answers to our requests, and answers peers' requests:
// permit their relay address, tell them ours.
func (r *relayStrategy) HandleSignal(m *signal.Message) {
	var p turnPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		r.a.cfg.Log.Info("TURN message with a bad payload dropped", "from", m.FromID(), "err", err)
		return
	}
	if p.Reply {
		r.mu.Lock()
		w, ok := r.pending[m.PipeID]
		r.mu.Unlock()
		if ok && w.peer == m.FromID() {
			select {
			case w.ch <- p:
			default: // a duplicate answer
			}
		}
		return
	}
	from, err := peeraddr.Parse(m.SrcAddr)
	if err != nil || from.NodeID != m.FromID() {
		r.a.cfg.Log.Info("TURN request with a bad or foreign return address dropped", "from", m.FromID())
		return
	}
	theirs, err := netip.ParseAddrPort(p.Relay)
	if err != nil {
		r.a.cfg.Log.Info("TURN request with a bad relay address dropped", "from", m.FromID(), "relay", p.Relay)
		return
	}
	select {
	case r.answers <- struct{}{}:
	default:
		r.a.cfg.Log.Info("TURN request dropped: too many being answered", "from", m.FromID())
		return
	}
	go func() {
		defer func() { <-r.answers }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ans := turnPayload{Reply: true, Resume: true}
		mine, ok := r.rc.RelayAddr()
		switch {
		case !ok:
			ans.Error = "no relay allocation"
		default:
			if err := r.rc.Permit(ctx, theirs); err != nil {
				ans.Error = "permission refused: " + err.Error()
			} else {
				ans.Relay = mine.String()
			}
		}
		if err := r.send(ctx, from, m.PipeID, ans); err != nil {
			r.a.cfg.Log.Info("TURN answer not sent", "to", m.FromID(), "err", err)
		}
	}()
}

// acceptRelayed hands streams peers open over our relay to the node, which
// authenticates them like its listeners' connections.
func (r *relayStrategy) acceptRelayed(ctx context.Context) {
	for {
		c, err := r.rc.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.a.cfg.Log.Info("relay accept", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		r.a.node.Serve(c)
	}
}

func (a *Agent) newRelay() (*relay.Client, error) {
	rc := *a.cfg.Relay
	if rc.Net == nil {
		rc.Net = a.cfg.Net
	}
	if rc.Log == nil {
		rc.Log = a.cfg.Log
	}
	if rc.Registry == nil {
		rc.Registry = a.cfg.Registry
	}
	c, err := relay.New(rc)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return c, nil
}

// relayStartWait is how long start-up waits for the first allocation. The
// client keeps trying in the background; until it has one, connects skip
// the relay and say why.
const relayStartWait = 3 * time.Second

// startRelay makes the standing allocation and accepts relayed streams
// until the agent stops (bg ends).
func (a *Agent) startRelay(ctx, bg context.Context, rs *relayStrategy) {
	done := make(chan error, 1)
	go func() { done <- a.relay.Start(bg) }()
	t := time.NewTimer(relayStartWait)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			a.cfg.Log.Warn("no TURN allocation yet; retrying in the background", "err", err)
		} else if ra, ok := a.relay.RelayAddr(); ok {
			a.cfg.Log.Info("TURN relay ready", "relay", ra, "transport", a.relay.Transport())
		}
	case <-t.C:
		a.cfg.Log.Warn("TURN allocation still pending after start-up wait; continuing", "waited", relayStartWait)
	case <-ctx.Done():
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		rs.acceptRelayed(bg)
	}()
}

// Relay is the relay client (nil when no TURN server is configured).
func (a *Agent) Relay() *relay.Client { return a.relay }
