package natlab

import "fmt"

// Behaviour is how a lab router treats traffic between its private hosts and
// the WAN.
type Behaviour int

// The lab's router behaviours.
const (
	// Open: no NAT and no firewall; hosts behind the router get WAN addresses.
	Open Behaviour = iota + 1
	// FullCone: endpoint-independent mapping and filtering.
	FullCone
	// RestrictedCone: endpoint-independent mapping, address-dependent filtering.
	RestrictedCone
	// PortRestrictedCone: endpoint-independent mapping, address-and-port-dependent
	// filtering (what Linux SNAT does by itself).
	PortRestrictedCone
	// Symmetric: address-and-port-dependent mapping with random external ports.
	Symmetric
	// SymmetricSequential: address-and-port-dependent mapping where each new
	// mapping takes the next external port (+1).
	SymmetricSequential
	// UDPBlocked: the router drops all UDP; TCP is NATed like PortRestrictedCone.
	UDPBlocked
)

// Behaviours lists every behaviour, in order.
func Behaviours() []Behaviour {
	return []Behaviour{Open, FullCone, RestrictedCone, PortRestrictedCone, Symmetric, SymmetricSequential, UDPBlocked}
}

func (b Behaviour) String() string {
	switch b {
	case Open:
		return "open"
	case FullCone:
		return "full-cone"
	case RestrictedCone:
		return "restricted-cone"
	case PortRestrictedCone:
		return "port-restricted-cone"
	case Symmetric:
		return "symmetric"
	case SymmetricSequential:
		return "symmetric-sequential"
	case UDPBlocked:
		return "udp-blocked"
	}
	return fmt.Sprintf("behaviour(%d)", int(b))
}

// Class is an RFC 4787 mapping or filtering class.
type Class string

// RFC 4787 classes. Unknown is used where no UDP gets through to measure.
const (
	EndpointIndependent     Class = "endpoint-independent"
	AddressDependent        Class = "address-dependent"
	AddressAndPortDependent Class = "address-and-port-dependent"
	Unknown                 Class = "unknown"
)

// P2PD NAT type numbers (p2pd-behaviour.md 2.1).
const (
	NATOpen           = 1
	NATFullCone       = 3
	NATRestricted     = 4
	NATRestrictedPort = 5
	NATSymmetric      = 6
	NATBlocked        = 7
)

// P2PD delta type numbers (p2pd-behaviour.md 2.1). DeltaUnknown (0) means no
// delta can be measured (UDP blocked).
const (
	DeltaUnknown     = 0
	DeltaNA          = 1
	DeltaEqual       = 2
	DeltaPreserving  = 3
	DeltaIndependent = 4
	DeltaDependent   = 5
	DeltaRandom      = 6
)

// Truth is what a correct detector must report for a behaviour, for UDP over
// IPv4 from a host behind the router.
type Truth struct {
	NATType    int   // P2PD NAT type, 1-7
	Mapping    Class // RFC 4787 mapping behaviour
	Filtering  Class // RFC 4787 filtering behaviour
	DeltaType  int   // P2PD delta type, 1-6, or DeltaUnknown
	DeltaValue int   // delta value where the type has one
}

// Truth returns the behaviour's ground truth. Linux SNAT keeps the source
// port when it is free, so every endpoint-independent behaviour has an equal
// delta; the sequential symmetric NAT steps by exactly 1 per new mapping.
func (b Behaviour) Truth() Truth {
	switch b {
	case Open:
		return Truth{NATOpen, EndpointIndependent, EndpointIndependent, DeltaEqual, 0}
	case FullCone:
		return Truth{NATFullCone, EndpointIndependent, EndpointIndependent, DeltaEqual, 0}
	case RestrictedCone:
		return Truth{NATRestricted, EndpointIndependent, AddressDependent, DeltaEqual, 0}
	case PortRestrictedCone:
		return Truth{NATRestrictedPort, EndpointIndependent, AddressAndPortDependent, DeltaEqual, 0}
	case Symmetric:
		return Truth{NATSymmetric, AddressAndPortDependent, AddressAndPortDependent, DeltaRandom, 0}
	case SymmetricSequential:
		return Truth{NATSymmetric, AddressAndPortDependent, AddressAndPortDependent, DeltaIndependent, 1}
	case UDPBlocked:
		return Truth{NATBlocked, Unknown, Unknown, DeltaUnknown, 0}
	}
	return Truth{}
}
