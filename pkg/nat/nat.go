// Package nat is p2pd's NAT model and detector: P2PD's NAT types 1-7 and
// delta types 1-6 (with P2PD's delta algorithm), the RFC 4787 mapping and
// filtering classes, and Profile, which measures all of them at once with
// STUN probes (pkg/stun) against servers that support RFC 5780 / RFC 3489
// change requests.
package nat

import "fmt"

// Type is P2PD's NAT type.
type Type int

// P2PD NAT types (the numbers are on the wire in peer addresses).
const (
	TypeUnknown          Type = 0
	OpenInternet         Type = 1
	SymmetricUDPFirewall Type = 2 // defined by P2PD, never detected
	FullCone             Type = 3
	RestrictNAT          Type = 4
	RestrictPortNAT      Type = 5
	SymmetricNAT         Type = 6
	BlockedNAT           Type = 7
)

func (t Type) String() string {
	switch t {
	case OpenInternet:
		return "open internet (no NAT)"
	case SymmetricUDPFirewall:
		return "possible firewall (no NAT)"
	case FullCone:
		return "full cone"
	case RestrictNAT:
		return "restrict reuse"
	case RestrictPortNAT:
		return "restrict port"
	case SymmetricNAT:
		return "symmetric"
	case BlockedNAT:
		return "unknown (all responses blocked)"
	}
	return fmt.Sprintf("nat type %d", int(t))
}

// DeltaType is P2PD's classification of how a NAT picks external ports.
type DeltaType int

// P2PD delta types. DeltaUnknown means nothing could be measured.
const (
	DeltaUnknown     DeltaType = 0
	DeltaNA          DeltaType = 1 // not applicable (LAN, self)
	DeltaEqual       DeltaType = 2 // mapped port equals local port
	DeltaPreserving  DeltaType = 3 // local port distances are kept
	DeltaIndependent DeltaType = 4 // each new mapping = previous + value
	DeltaDependent   DeltaType = 5 // mapping grows by value when local grows by 1
	DeltaRandom      DeltaType = 6 // no pattern
)

func (d DeltaType) String() string {
	switch d {
	case DeltaNA:
		return "not applicable"
	case DeltaEqual:
		return "equal delta"
	case DeltaPreserving:
		return "preserving delta"
	case DeltaIndependent:
		return "independent delta"
	case DeltaDependent:
		return "dependent delta"
	case DeltaRandom:
		return "random delta"
	}
	return "unknown delta"
}

// Delta is a delta type with its value (the port step, where it has one).
type Delta struct {
	Type  DeltaType `json:"type"`
	Value int       `json:"value"`
}

// Class is an RFC 4787 mapping or filtering behaviour.
type Class string

// RFC 4787 classes.
const (
	EndpointIndependent     Class = "endpoint-independent"
	AddressDependent        Class = "address-dependent"
	AddressAndPortDependent Class = "address-and-port-dependent"
	Unknown                 Class = "unknown"
)

// p2pdType derives P2PD's NAT type from the RFC 5780 results, following the
// order of P2PD's four tests: no translation is open internet; a reply to a
// change-IP-and-port request is full cone; then, for endpoint-independent
// mappings, a reply to a change-port request is restrict (address-dependent
// filtering), none is restrict-port; any other mapping is symmetric. P2PD
// reports restrict for any mapping whose filter passes test 4; p2pd reports
// symmetric when the mapping is not endpoint-independent, because prediction
// would fail.
//
// Without translation (open), P2PD says open internet whatever filters
// the host; p2pd says so only when nothing filters (or the filtering is
// unknown), and names a filtering firewall by the cone type with the same
// filtering: restrict for address-dependent, restrict-port for
// address-and-port-dependent. A peer then punches (no port prediction
// needed: the port is kept) instead of dialling into the filter.
func p2pdType(open bool, mapping, filtering Class) Type {
	switch {
	case open && filtering == AddressDependent:
		return RestrictNAT
	case open && filtering == AddressAndPortDependent:
		return RestrictPortNAT
	case open:
		return OpenInternet
	case filtering == EndpointIndependent:
		return FullCone
	case mapping != EndpointIndependent:
		return SymmetricNAT
	case filtering == AddressDependent:
		return RestrictNAT
	}
	return RestrictPortNAT
}
