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
	if len(o.Targets) == 0 || len(o.Targets) > MaxTargets {
		return fmt.Errorf("%w: %d targets, want 1-%d", ErrBadOffer, len(o.Targets), MaxTargets)
	}
	for _, t := range o.Targets {
		if !t.IsValid() || t.Port() == 0 || !t.Addr().IsGlobalUnicast() {
			return fmt.Errorf("%w: target %s is not a unicast address and port", ErrBadOffer, t)
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

// ParseOffer decodes and validates a PUNCH payload; unknown fields are an
// error.
func ParseOffer(b []byte) (Offer, error) {
	var o Offer
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return Offer{}, fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	if dec.More() {
		return Offer{}, fmt.Errorf("%w: data after the offer", ErrBadOffer)
	}
	if err := o.Validate(); err != nil {
		return Offer{}, err
	}
	for i, t := range o.Targets {
		o.Targets[i] = netip.AddrPortFrom(t.Addr().Unmap(), t.Port())
	}
	return o, nil
}
