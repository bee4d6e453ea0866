package punch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// MaxTargets bounds the endpoints one offer names (and so the SYNs a
// peer's offer makes us send).
const MaxTargets = 8

// MaxTargets6 bounds an offer's IPv6 targets: one per IPv6 block of a
// peer address.
const MaxTargets6 = 4

// maxUncertainty bounds the clock uncertainty an offer may claim.
const maxUncertainty = time.Minute

// ErrBadOffer wraps every reason an offer is refused.
var ErrBadOffer = errors.New("punch: bad offer")

// Offer is the payload of a PUNCH message, sent both ways: the offer
// proposes a meeting time, the answer (Answer set) confirms it or, when the
// offer came too late, names a later one. Times are on the sender's
// corrected clock, in Unix microseconds.
type Offer struct {
	Answer bool `json:"answer,omitempty"`
	// At is the meeting time of the first round.
	At int64 `json:"at_us"`
	// Sent is when the message was sent.
	Sent int64 `json:"sent_us"`
	// Uncertainty is the sender's clock uncertainty in microseconds.
	Uncertainty int64 `json:"unc_us"`
	// Targets are the sender's external endpoints of its punch port: its
	// mapping, or its NAT's predicted next ports (most likely first).
	Targets []netip.AddrPort `json:"targets"`
	// Targets6 are the sender's global IPv6 endpoints of its punch port,
	// for a punch over IPv6 raced with the IPv4 one: no translation, so
	// each is the sender's own address and node port. Empty when the
	// sender does not punch over IPv6.
	Targets6 []netip.AddrPort `json:"targets6,omitempty"`
	// UDP are the external endpoints of the sender's UDP punch socket
	// (udp.go), the same way; absent when the sender does not punch over
	// UDP (then neither side does). Offers without it parse as before.
	UDP []netip.AddrPort `json:"udp,omitempty"`
}

// MeetingTime is At as a time.
func (o Offer) MeetingTime() time.Time { return time.UnixMicro(o.At) }

// SentTime is Sent as a time.
func (o Offer) SentTime() time.Time { return time.UnixMicro(o.Sent) }

// ClockUncertainty is Uncertainty as a duration.
func (o Offer) ClockUncertainty() time.Duration {
	return time.Duration(o.Uncertainty) * time.Microsecond
}

// Validate checks the fields.
func (o Offer) Validate() error {
	if o.At <= 0 || o.Sent <= 0 {
		return fmt.Errorf("%w: times must be positive (at %d, sent %d)", ErrBadOffer, o.At, o.Sent)
	}
	if o.Uncertainty < 0 || time.Duration(o.Uncertainty)*time.Microsecond > maxUncertainty {
		return fmt.Errorf("%w: clock uncertainty %d µs out of range 0-%s", ErrBadOffer, o.Uncertainty, maxUncertainty)
	}
	if len(o.Targets)+len(o.Targets6) == 0 || len(o.Targets) > MaxTargets || len(o.Targets6) > MaxTargets6 {
		return fmt.Errorf("%w: %d targets and %d IPv6 targets, want 1-%d and 0-%d, at least one in all", ErrBadOffer, len(o.Targets), len(o.Targets6), MaxTargets, MaxTargets6)
	}
	if len(o.UDP) > MaxTargets {
		return fmt.Errorf("%w: %d UDP targets, want at most %d", ErrBadOffer, len(o.UDP), MaxTargets)
	}
	for _, t := range append(o.Targets[:len(o.Targets):len(o.Targets)], o.UDP...) {
		if !t.IsValid() || t.Port() == 0 || !t.Addr().IsGlobalUnicast() {
			return fmt.Errorf("%w: target %s is not a unicast address and port", ErrBadOffer, t)
		}
	}
	for _, t := range o.Targets6 {
		if !t.IsValid() || t.Port() == 0 || !t.Addr().Is6() || t.Addr().Is4In6() || !t.Addr().IsGlobalUnicast() || t.Addr().IsPrivate() || t.Addr().Zone() != "" {
			return fmt.Errorf("%w: IPv6 target %s is not a global IPv6 address and port", ErrBadOffer, t)
		}
	}
	return nil
}

// Marshal encodes a valid offer.
func (o Offer) Marshal() ([]byte, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(o)
}

// ParseOffer decodes and validates a PUNCH payload. Fields it does not know
// are ignored, so an offer from a newer agent (with targets of a kind this
// one cannot punch) still yields the punch both can do.
func ParseOffer(b []byte) (Offer, error) {
	var o Offer
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&o); err != nil {
		return Offer{}, fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	if dec.More() {
		return Offer{}, fmt.Errorf("%w: data after the offer", ErrBadOffer)
	}
	if err := o.Validate(); err != nil {
		return Offer{}, err
	}
	for _, ts := range [][]netip.AddrPort{o.Targets, o.UDP} {
		for i, t := range ts {
			ts[i] = netip.AddrPortFrom(t.Addr().Unmap(), t.Port())
		}
	}
	return o, nil
}
