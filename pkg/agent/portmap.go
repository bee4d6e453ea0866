package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/p2pd-go/p2pd/pkg/portmap"
)

// Port-mapping states (PortMapStatus.State).
const (
	PortMapOff     = "off"     // NoPortMap, or no NAT in front of the agent
	PortMapTrying  = "trying"  // asking the gateway
	PortMapNone    = "none"    // the gateway did not map the port
	PortMapMapped  = "mapped"  // the gateway forwards the node port
	PortMapStopped = "stopped" // the agent closed
)

// startPortMap asks the gateway, in the background, to forward the node
// port when the agent is behind a NAT (start-up and the API do not wait
// for a UPnP answer), and keeps the lease renewed until Close. Failure is
// normal (most gateways do not offer it) and only logged.
func (a *Agent) startPortMap() {
	a.mu.Lock()
	behindNAT := false
	for _, ifc := range a.ifs {
		if rs := ifc.Routes[2]; len(rs) > 0 && !rs[0].Public() {
			behindNAT = true
		}
	}
	if !behindNAT {
		a.mu.Unlock()
		return
	}
	a.pmState = PortMapStatus{State: PortMapTrying}
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-a.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		a.mapPort(ctx)
	}()
}

func (a *Agent) setPortMap(st PortMapStatus) {
	a.mu.Lock()
	a.pmState = st
	a.mu.Unlock()
}

func (a *Agent) mapPort(ctx context.Context) {
	m, err := portmap.Map(ctx, portmap.Config{Net: a.cfg.Net, Port: uint16(a.cfg.Port), Timeout: time.Second})
	if err != nil {
		a.cfg.Log.Info("no port mapping from the gateway", "err", err)
		a.setPortMap(PortMapStatus{State: PortMapNone, Error: err.Error()})
		return
	}
	if m.External.Port() != uint16(a.cfg.Port) {
		// Our address carries one port for external and LAN use alike.
		a.cfg.Log.Warn("gateway mapped a different external port; not using it", "want", a.cfg.Port, "got", m.External.Port())
		_ = m.Delete()
		a.setPortMap(PortMapStatus{State: PortMapNone, Method: m.Method,
			Error: fmt.Sprintf("the gateway offered external port %d, not %d", m.External.Port(), a.cfg.Port)})
		return
	}
	a.cfg.Log.Info("gateway forwards the node port", "external", m.External, "lifetime", m.Lifetime)
	a.mu.Lock()
	a.mapping = m
	a.pmState = mappedStatus(m)
	a.mu.Unlock()
	a.advertiseForwarded(m.External)
	{
		for {
			select {
			case <-a.stop:
				a.mu.Lock()
				a.mapping = nil
				a.pmState = PortMapStatus{State: PortMapStopped}
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
				a.pmState = mappedStatus(m)
				a.mu.Unlock()
			}
		}
	}
}

func mappedStatus(m *portmap.Mapping) PortMapStatus {
	return PortMapStatus{State: PortMapMapped, Method: m.Method, External: m.External.String(),
		Gateway: m.Gateway.String(), Lifetime: m.Lifetime.String()}
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
