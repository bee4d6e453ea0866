// Package identity holds an agent's X25519 key pair and its node id.
//
// The node id is the lowercase, unpadded base32 (RFC 4648 alphabet) of the
// 32-byte public key: 52 characters. Owning a node id means owning its
// private key; signalling envelopes and pipe handshakes prove it.
package identity

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/curve25519"
)

// KeySize is the size in bytes of X25519 public and private keys.
const KeySize = 32

// NodeIDLen is the length of a node id in characters.
const NodeIDLen = 52

// nodeIDEncoding is base32 with a lowercase alphabet and no padding.
var nodeIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrBadNodeID is wrapped by every ParseNodeID error.
var ErrBadNodeID = errors.New("identity: bad node id")

// Identity is an X25519 key pair.
type Identity struct {
	Public  [KeySize]byte
	Private [KeySize]byte
}

// Generate makes a new key pair from r (crypto/rand.Reader when nil).
func Generate(r io.Reader) (*Identity, error) {
	if r == nil {
		r = rand.Reader
	}
	var priv [KeySize]byte
	if _, err := io.ReadFull(r, priv[:]); err != nil {
		return nil, fmt.Errorf("identity: generate: %w", err)
	}
	return FromPrivate(priv)
}

// FromPrivate derives the key pair of a private key.
func FromPrivate(priv [KeySize]byte) (*Identity, error) {
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("identity: derive public key: %w", err)
	}
	id := &Identity{Private: priv}
	copy(id.Public[:], pub)
	return id, nil
}

// NodeID returns the node id of the key pair.
func (id *Identity) NodeID() string { return NodeID(id.Public) }

// NodeID returns the node id of a public key.
func NodeID(pub [KeySize]byte) string { return nodeIDEncoding.EncodeToString(pub[:]) }

// ParseNodeID checks that s is a node id (52 lowercase base32 characters in
// canonical form) and returns the public key it names.
func ParseNodeID(s string) ([KeySize]byte, error) {
	var pub [KeySize]byte
	if len(s) != NodeIDLen {
		return pub, fmt.Errorf("%w: length %d, want %d", ErrBadNodeID, len(s), NodeIDLen)
	}
	b, err := nodeIDEncoding.DecodeString(s)
	if err != nil {
		return pub, fmt.Errorf("%w: %v (want lowercase a-z and 2-7)", ErrBadNodeID, err)
	}
	if len(b) != KeySize {
		return pub, fmt.Errorf("%w: decodes to %d bytes, want %d", ErrBadNodeID, len(b), KeySize)
	}
	copy(pub[:], b)
	// The last character carries 4 unused bits; they must be zero so that
	// each key has exactly one id.
	if NodeID(pub) != s {
		return [KeySize]byte{}, fmt.Errorf("%w: not canonical (unused trailing bits set)", ErrBadNodeID)
	}
	return pub, nil
}
