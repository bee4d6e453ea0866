// Package signal carries signalling messages between agents over MQTT.
//
// Every message travels as a binary envelope:
//
//	version (1 byte, 1) | sender public key (32) | nonce (24) | NaCl box
//
// The box (golang.org/x/crypto/nacl/box, X25519 + XSalsa20-Poly1305) is
// sealed with the sender's private key for the recipient's public key, so a
// broker sees only ciphertext and the recipient knows the sender holds the
// key of its node id. Inside is a JSON Body. An Opener drops envelopes that
// are malformed, do not open, are expired or from the future, or repeat one
// already seen; each reason is a distinct error and a counter.
package signal

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/p2pd-go/p2pd/pkg/identity"
)

// Version is the envelope format version written and accepted.
const Version = 1

// Envelope layout and limits.
const (
	nonceSize    = 24
	headerSize   = 1 + identity.KeySize + nonceSize
	MinEnvelope  = headerSize + box.Overhead // smallest possible envelope
	MaxEnvelope  = 64 << 10                  // largest envelope accepted
	MaxPipeIDLen = 64                        // longest pipe id
)

// Type names a signalling message.
type Type string

// Message types.
const (
	TypeCon   Type = "CON"   // reverse connect request
	TypePunch Type = "PUNCH" // TCP punch mappings and meeting time
	TypeTURN  Type = "TURN"  // TURN relay tuples
	TypeEcho  Type = "ECHO"  // signalling echo
	TypeAddr  Type = "ADDR"  // address refresh
)

// Valid reports whether t is one of the known types.
func (t Type) Valid() bool {
	switch t {
	case TypeCon, TypePunch, TypeTURN, TypeEcho, TypeAddr:
		return true
	}
	return false
}

// Drop reasons: Open returns an error wrapping exactly one of these.
var (
	ErrShort     = errors.New("signal: envelope too short")
	ErrVersion   = errors.New("signal: unknown envelope version")
	ErrForged    = errors.New("signal: envelope does not open (forged or not for us)")
	ErrMalformed = errors.New("signal: malformed message")
	ErrSender    = errors.New("signal: src_addr names another node")
	ErrExpired   = errors.New("signal: message expired")
	ErrFuture    = errors.New("signal: message timestamp in the future")
	ErrReplay    = errors.New("signal: message already seen")
)

// dropReason pairs a drop error with its metric label.
type dropReason struct {
	err   error
	label string
}

// dropReasons lists every drop error with its metric label.
func dropReasons() []dropReason {
	return []dropReason{
		{ErrShort, "short"}, {ErrVersion, "version"}, {ErrForged, "forged"},
		{ErrMalformed, "malformed"}, {ErrSender, "sender"}, {ErrExpired, "expired"},
		{ErrFuture, "future"}, {ErrReplay, "replay"},
	}
}

// Reason returns the metric label of a drop error ("other" if none).
func Reason(err error) string {
	for _, r := range dropReasons() {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "other"
}

// Body is the JSON inside the box.
type Body struct {
	Type    Type            `json:"type"`
	PipeID  string          `json:"pipe_id"`
	TS      int64           `json:"ts"`                 // sender's clock, Unix milliseconds
	TTL     int64           `json:"ttl"`                // seconds the message stays valid after TS
	SrcAddr string          `json:"src_addr,omitempty"` // sender's peer address, if given
	Payload json.RawMessage `json:"payload,omitempty"`  // type-specific
}

// Message is an opened envelope.
type Message struct {
	Body
	From [identity.KeySize]byte // sender's public key, proven by the box
}

// FromID returns the sender's node id.
func (m *Message) FromID() string { return identity.NodeID(m.From) }

// NewPipeID returns a fresh random pipe id (32 hex digits).
func NewPipeID() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Seal encrypts body from id to the holder of the public key to. A zero
// body.TS is set to the current time. rand may be nil (crypto/rand).
func Seal(id *identity.Identity, to [identity.KeySize]byte, body Body, rnd io.Reader) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if body.TS == 0 {
		body.TS = time.Now().UnixMilli()
	}
	if err := checkBody(&body); err != nil {
		return nil, fmt.Errorf("signal: seal: %w", err)
	}
	plain, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("signal: seal: %w", err)
	}
	out := make([]byte, headerSize, headerSize+len(plain)+box.Overhead)
	out[0] = Version
	copy(out[1:], id.Public[:])
	var nonce [nonceSize]byte
	if _, err := io.ReadFull(rnd, nonce[:]); err != nil {
		return nil, fmt.Errorf("signal: seal: nonce: %w", err)
	}
	copy(out[1+identity.KeySize:], nonce[:])
	out = box.Seal(out, plain, &nonce, &to, &id.Private)
	if len(out) > MaxEnvelope {
		return nil, fmt.Errorf("signal: seal: envelope of %d bytes exceeds %d", len(out), MaxEnvelope)
	}
	return out, nil
}

// checkBody validates the fields every message must have.
func checkBody(b *Body) error {
	if !b.Type.Valid() {
		return fmt.Errorf("%w: unknown type %q", ErrMalformed, b.Type)
	}
	if b.PipeID == "" || len(b.PipeID) > MaxPipeIDLen {
		return fmt.Errorf("%w: pipe_id length %d, want 1-%d", ErrMalformed, len(b.PipeID), MaxPipeIDLen)
	}
	if b.TTL <= 0 {
		return fmt.Errorf("%w: ttl %d, want > 0", ErrMalformed, b.TTL)
	}
	if b.TS <= 0 {
		return fmt.Errorf("%w: ts %d, want > 0", ErrMalformed, b.TS)
	}
	return nil
}
