package agent

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/pkg/stun"
)

// stunCheckEvery is how old the STUN servers' state may get before a
// status read starts a fresh check in the background.
const stunCheckEvery = 30 * time.Second

// STUNStatus is one STUN server's answer to the agent's last check.
type STUNStatus struct {
	Server    string    `json:"server"`
	OK        bool      `json:"ok"`
	LatencyMS float64   `json:"latency_ms,omitempty"`
	Mapped    string    `json:"mapped,omitempty"` // our address as this server sees it
	Error     string    `json:"error,omitempty"`
	Checked   time.Time `json:"checked"` // zero: not checked yet
}

// stunState caches the servers' state between checks.
type stunState struct {
	mu       sync.Mutex
	list     []STUNStatus
	checked  time.Time
	checking bool
	closed   bool
	done     chan struct{} // closed by close: a running check stops
}

// close stops checks: none starts after it returns (Close then waits for
// a running one through a.wg).
func (s *stunState) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		if s.done != nil {
			close(s.done)
		}
	}
}

// stunStatus returns the last check's results and, when they are older
// than stunCheckEvery, starts a new check (one at a time, ended by Close).
func (a *Agent) stunStatus() []STUNStatus {
	s := &a.stunSt
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.list == nil {
		for _, srv := range a.cfg.STUNServers {
			s.list = append(s.list, STUNStatus{Server: srv.String()})
		}
	}
	if !s.checking && !s.closed && time.Since(s.checked) >= stunCheckEvery {
		if s.done == nil {
			s.done = make(chan struct{})
		}
		s.checking = true
		a.wg.Add(1)
		go a.checkSTUN(s.done)
	}
	return append([]STUNStatus(nil), s.list...)
}

// checkSTUN sends one Binding request to every server at once.
func (a *Agent) checkSTUN(done <-chan struct{}) {
	defer a.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	out := make([]STUNStatus, len(a.cfg.STUNServers))
	var wg sync.WaitGroup
	for i, srv := range a.cfg.STUNServers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = a.bindOnce(ctx, srv)
		}()
	}
	wg.Wait()
	s := &a.stunSt
	s.mu.Lock()
	s.list, s.checked, s.checking = out, time.Now(), false
	s.mu.Unlock()
}

func (a *Agent) bindOnce(ctx context.Context, srv netip.AddrPort) STUNStatus {
	st := STUNStatus{Server: srv.String(), Checked: time.Now().UTC()}
	network := "udp4"
	if srv.Addr().Is6() {
		network = "udp6"
	}
	pc, err := a.cfg.Net.ListenPacket(ctx, network, ":0")
	if err != nil {
		st.Error = err.Error()
		return st
	}
	c := stun.NewConn(pc, 0)
	defer c.Close()
	t0 := time.Now()
	resp, err := c.Do(ctx, stun.Request{Server: srv})
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.OK, st.LatencyMS, st.Mapped = true, float64(time.Since(t0).Microseconds())/1000, resp.Mapped.String()
	return st
}
