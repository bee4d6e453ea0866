package agent

import (
	"net/url"
	"slices"
	"time"
)

// BrokerStatus is one entry of the shared broker list as this agent sees
// it. Credentials are never included.
type BrokerStatus struct {
	Offset     int    `json:"offset"`
	URL        string `json:"url"`
	Own        bool   `json:"own"`        // one of this agent's signal offsets
	Subscribed bool   `json:"subscribed"` // connected and subscribed to our topic
}

// PortMapStatus is the state of the gateway's forwarding of the node port.
type PortMapStatus struct {
	State    string `json:"state"` // PortMapOff, PortMapTrying, PortMapNone, PortMapMapped, PortMapStopped
	Method   string `json:"method,omitempty"`
	External string `json:"external,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
	Lifetime string `json:"lifetime,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Status is what the status page shows besides interfaces and pipes.
type Status struct {
	Brokers []BrokerStatus `json:"brokers"`
	STUN    []STUNStatus   `json:"stun"`
	PortMap PortMapStatus  `json:"port_mapping"`
	Started time.Time      `json:"started"`
}

// Status reports brokers, STUN servers (checked again in the background when
// the last check is over 30 s old) and port mapping.
func (a *Agent) Status() Status {
	var subscribed []int
	if a.sig != nil {
		subscribed = a.sig.Subscribed()
	}
	st := Status{}
	for i, b := range a.cfg.Brokers {
		st.Brokers = append(st.Brokers, BrokerStatus{Offset: i, URL: withoutUserinfo(b.URL),
			Own: slices.Contains(a.offsets, i), Subscribed: slices.Contains(subscribed, i)})
	}
	st.STUN = a.stunStatus()
	a.mu.Lock()
	st.PortMap = a.pmState
	st.Started = a.started
	a.mu.Unlock()
	return st
}

// withoutUserinfo drops any user:password@ from a broker URL.
func withoutUserinfo(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}
