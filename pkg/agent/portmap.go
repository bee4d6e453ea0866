package agent

import (
	"context"
	"time"

	"github.com/p2pd-go/p2pd/pkg/portmap"
)

// mapPort asks the gateway to forward the node port when the agent is behind
// a NAT, and keeps the lease renewed until Close. Failure is normal (most
// gateways do not offer it) and only logged.
func (a *Agent) mapPort(ctx context.Context) {
	a.mu.Lock()
	behindNAT := false
	for _, ifc := range a.ifs {
		if rs := ifc.Routes[2]; len(rs) > 0 && !rs[0].Public() {
			behindNAT = true
		}
	}
	a.mu.Unlock()
	if !behindNAT {
		return
	}
	m, err := portmap.Map(ctx, portmap.Config{Net: a.cfg.Net, Port: uint16(a.cfg.Port), Timeout: time.Second})
	if err != nil {
		a.cfg.Log.Info("no port mapping from the gateway", "err", err)
		return
	}
	if m.External.Port() != uint16(a.cfg.Port) {
		// Our address carries one port for external and LAN use alike.
		a.cfg.Log.Warn("gateway mapped a different external port; not using it", "want", a.cfg.Port, "got", m.External.Port())
		_ = m.Delete()
		return
	}
	a.cfg.Log.Info("gateway forwards the node port", "external", m.External, "lifetime", m.Lifetime)
	a.mu.Lock()
	a.mapping = m
	a.mu.Unlock()
	a.advertiseForwarded(m.External)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			select {
			case <-a.stop:
				a.mu.Lock()
				a.mapping = nil
				a.mu.Unlock()
				if err := m.Delete(); err != nil {
					a.cfg.Log.Info("removing port mapping", "err", err)
				}
				return
			case <-time.After(max(a.mappingLifetime()/2, time.Second)):
				next := *m // renew a copy: readers copy a.mapping under a.mu
				if err := next.Renew(); err != nil {
					a.cfg.Log.Warn("renewing port mapping", "err", err)
					continue
				}
				a.mu.Lock()
				m = &next
				a.mapping = m
				a.mu.Unlock()
			}
		}
	}()
}

// PortMapping is a copy of the gateway's forwarding of the node port, or
// nil.
func (a *Agent) PortMapping() *portmap.Mapping {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mapping == nil {
		return nil
	}
	m := *a.mapping
	return &m
}

func (a *Agent) mappingLifetime() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mapping == nil {
		return time.Minute
	}
	return a.mapping.Lifetime
}
