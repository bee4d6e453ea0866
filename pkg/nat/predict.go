package nat

import (
	"errors"
	"fmt"
)

// Port prediction (p2pd-behaviour.md 2.4): from a NAT's type, its delta and
// the last mapping a STUN server saw, which external port(s) will the NAT
// give the next mapping, toward a destination it has not seen yet? Hole
// punching dials those ports on the peer, and tells the peer ours.

// MaxPredictions caps the candidates of one prediction (P2PD's MAX_MAP_NO).
const MaxPredictions = 100

// ErrUnpredictable means the NAT's next external port cannot be derived from
// what is known: a random allocator that does not reuse mappings (symmetric
// NAT with random delta), a blocked or unmeasured NAT, or a cone NAT with
// random delta asked about a local port it has no mapping for.
var ErrUnpredictable = errors.New("nat: external port cannot be predicted")

// Mapping is one NAT mapping: the local port and the external port a STUN
// server saw it as.
type Mapping struct {
	Local    int `json:"local"`
	External int `json:"external"`
}

// PortRange is an inclusive range of external ports a NAT allocates from.
type PortRange struct {
	Lo int `json:"lo"`
	Hi int `json:"hi"`
}

// DefaultPortRange is used when a range is zero: NATs keep allocations out
// of the well-known ports.
var DefaultPortRange = PortRange{Lo: 1024, Hi: 65535}

// Contains reports whether p is in r.
func (r PortRange) Contains(p int) bool { return p >= r.Lo && p <= r.Hi }

// Intersect is P2PD's nats_intersect: the ports both ranges hold; ok is
// false when they are disjoint.
func (r PortRange) Intersect(o PortRange) (PortRange, bool) {
	out := PortRange{Lo: max(r.Lo, o.Lo), Hi: min(r.Hi, o.Hi)}
	return out, out.Lo <= out.Hi
}

// wrap maps p into r the way allocators wrap around: past Hi it continues at
// Lo, below Lo it continues down from Hi.
func (r PortRange) wrap(p int) int {
	n := r.Hi - r.Lo + 1
	off := (p - r.Lo) % n
	if off < 0 {
		off += n
	}
	return r.Lo + off
}

func (r PortRange) validate() error {
	if r.Lo < 1 || r.Hi > 65535 || r.Lo > r.Hi {
		return fmt.Errorf("nat: port range %d-%d is not within 1-65535", r.Lo, r.Hi)
	}
	return nil
}

// Predictor is what prediction needs to know about one NAT (ours or a
// peer's, as its peer address announces it).
type Predictor struct {
	Type  Type
	Delta Delta
	// Range holds the NAT's external ports (zero: DefaultPortRange); for a
	// punch between two NATs, the intersection of both (P2PD's use_range).
	Range PortRange
}

// endpointIndependent reports whether the NAT reuses a local port's
// mapping toward every destination (P2PD types 1, 3, 4 and 5).
func (p Predictor) endpointIndependent() bool {
	switch p.Type {
	case OpenInternet, SymmetricUDPFirewall, FullCone, RestrictNAT, RestrictPortNAT:
		return true
	}
	return false
}

func (p Predictor) check(last Mapping, local, n int) (PortRange, error) {
	r := p.Range
	if r == (PortRange{}) {
		r = DefaultPortRange
	}
	if err := r.validate(); err != nil {
		return r, err
	}
	if n < 1 || n > MaxPredictions {
		return r, fmt.Errorf("nat: %d predictions asked for, want 1-%d", n, MaxPredictions)
	}
	for _, f := range []struct {
		name string
		port int
	}{{"local port", local}, {"last local port", last.Local}, {"last external port", last.External}} {
		if f.port < 1 || f.port > 65535 {
			return r, fmt.Errorf("nat: %s %d out of range 1-65535", f.name, f.port)
		}
	}
	if p.Type < OpenInternet || p.Type > BlockedNAT {
		return r, fmt.Errorf("%w: NAT type %d unknown", ErrUnpredictable, p.Type)
	}
	if p.Type == BlockedNAT {
		return r, fmt.Errorf("%w: NAT blocks STUN", ErrUnpredictable)
	}
	return r, nil
}

// Predict returns up to n external ports, most likely first and without
// repeats, that the NAT will give a new mapping from local port local toward
// a destination it has not sent to, given its last mapping (learnt by STUN,
// ideally from local itself). The rules, by NAT and delta:
//
//   - no NAT (open internet): the local port;
//   - an endpoint-independent NAT (open, full cone, restricted, port
//     restricted) asked about last.Local reuses the mapping: last.External,
//     whatever the delta;
//   - NA and equal delta: the local port itself;
//   - preserving: last.External moved by as much as the local port moved;
//   - independent (value d): the allocator steps by d per new mapping
//     whatever the local port, and other flows through the NAT may take
//     steps first, so last.External + d, + 2d, … up to n;
//   - dependent (value d): last.External + d per local port step from
//     last.Local; on a symmetric NAT asked about last.Local itself (a new
//     destination from the same port) it is a step-d allocator like
//     independent;
//   - random (or unknown): only the reuse rule above; anything else is
//     ErrUnpredictable.
//
// Ports wrap around within the range. A negative delta value steps down.
func (p Predictor) Predict(last Mapping, local, n int) ([]int, error) {
	r, err := p.check(last, local, n)
	if err != nil {
		return nil, err
	}
	switch {
	case p.Type == OpenInternet:
		return []int{local}, nil
	case p.endpointIndependent() && local == last.Local:
		return []int{last.External}, nil
	}
	d := p.Delta.Value
	switch p.Delta.Type {
	case DeltaNA, DeltaEqual:
		return []int{local}, nil
	case DeltaPreserving:
		return []int{r.wrap(last.External + local - last.Local)}, nil
	case DeltaIndependent:
		return steps(r, last.External, d, n), nil
	case DeltaDependent:
		if local == last.Local {
			return steps(r, last.External, d, n), nil
		}
		return []int{r.wrap(last.External + (local-last.Local)*d)}, nil
	}
	return nil, fmt.Errorf("%w: %s NAT with %s (local port %d, last mapping %d→%d)",
		ErrUnpredictable, p.Type, p.Delta.Type, local, last.Local, last.External)
}

// steps is from+d, from+2d, … wrapped into r, stopping early when the
// sequence comes back to a port already listed.
func steps(r PortRange, from, d, n int) []int {
	if d == 0 {
		return []int{r.wrap(from)} // a "sequence" that never moves: the mapping is reused
	}
	out := make([]int, 0, n)
	seen := make(map[int]bool, n)
	for k := 1; k <= n; k++ {
		p := r.wrap(from + k*d)
		if seen[p] {
			break
		}
		seen[p] = true
		out = append(out, p)
	}
	return out
}

// LocalFor returns the local port to bind so that the NAT's next external
// port is want, for NATs whose external port follows the local port (open
// or NA, equal, preserving delta). This is how a side that must reach a
// port the other side already dials (P2PD's reply ports) picks its port.
// Other NATs give ErrUnpredictable.
func (p Predictor) LocalFor(last Mapping, want int) (int, error) {
	if _, err := p.check(last, want, 1); err != nil {
		return 0, err
	}
	switch {
	case p.Type == OpenInternet, p.Delta.Type == DeltaNA, p.Delta.Type == DeltaEqual:
		return want, nil
	case p.Delta.Type == DeltaPreserving:
		local := last.Local + want - last.External
		if !DefaultPortRange.Contains(local) {
			return 0, fmt.Errorf("%w: external port %d needs local port %d (last mapping %d→%d)",
				ErrUnpredictable, want, local, last.Local, last.External)
		}
		return local, nil
	}
	return 0, fmt.Errorf("%w: a %s NAT's external port does not follow the local port", ErrUnpredictable, p.Delta.Type)
}

// Predictable reports whether Predict can name the NAT's external port
// toward a new destination for the local port of its last mapping (the
// punch port, whose mapping the punch learns first).
func (p Predictor) Predictable() bool {
	_, err := p.Predict(Mapping{Local: 40000, External: 40000}, 40000, 1)
	return err == nil
}
