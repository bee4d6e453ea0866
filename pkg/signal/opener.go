package signal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// Defaults of OpenerConfig.
const (
	DefaultMaxTTL     = 5 * time.Minute
	DefaultMaxSkew    = 30 * time.Second
	DefaultReplaySize = 10000
)

// OpenerConfig tunes an Opener. Zero fields take the defaults.
type OpenerConfig struct {
	// Now is the clock (time.Now when nil); inject an NTP-corrected one.
	Now func() time.Time
	// MaxTTL caps the TTL a message may claim; longer TTLs are cut to it.
	MaxTTL time.Duration
	// MaxSkew is how far in the future a timestamp may be.
	MaxSkew time.Duration
	// ReplaySize bounds the replay cache (entries).
	ReplaySize int
	// Metrics, when set, counts every drop by reason.
	Metrics *Metrics
}

// Opener opens envelopes addressed to one identity. It is safe for
// concurrent use.
type Opener struct {
	id   *identity.Identity
	cfg  OpenerConfig
	mu   sync.Mutex
	seen *replayCache
}

// NewOpener returns an Opener for envelopes sealed to id.
func NewOpener(id *identity.Identity, cfg OpenerConfig) *Opener {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.ReplaySize <= 0 {
		cfg.ReplaySize = DefaultReplaySize
	}
	return &Opener{id: id, cfg: cfg, seen: newReplayCache(cfg.ReplaySize)}
}

// Open decrypts and checks an envelope. The error wraps one of ErrShort,
// ErrVersion, ErrForged, ErrMalformed, ErrSender, ErrExpired, ErrFuture or
// ErrReplay, and is counted in the Metrics.
func (o *Opener) Open(env []byte) (*Message, error) {
	m, err := o.open(env)
	if o.cfg.Metrics != nil {
		if err != nil {
			o.cfg.Metrics.Dropped.WithLabelValues(Reason(err)).Inc()
		} else {
			o.cfg.Metrics.Received.WithLabelValues(string(m.Type)).Inc()
		}
	}
	return m, err
}

func (o *Opener) open(env []byte) (*Message, error) {
	if len(env) < MinEnvelope {
		return nil, fmt.Errorf("%w: %d bytes, at least %d", ErrShort, len(env), MinEnvelope)
	}
	if env[0] != Version {
		return nil, fmt.Errorf("%w: %d", ErrVersion, env[0])
	}
	if len(env) > MaxEnvelope {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(env), MaxEnvelope)
	}
	m := &Message{}
	copy(m.From[:], env[1:])
	var nonce [nonceSize]byte
	copy(nonce[:], env[1+identity.KeySize:])
	plain, ok := box.Open(nil, env[headerSize:], &nonce, &m.From, &o.id.Private)
	if !ok {
		return nil, ErrForged
	}
	// Fields this version does not know are ignored (the body is
	// authenticated; a newer agent may add some).
	dec := json.NewDecoder(bytes.NewReader(plain))
	if err := dec.Decode(&m.Body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON body", ErrMalformed)
	}
	if err := checkBody(&m.Body); err != nil {
		return nil, err
	}
	if m.SrcAddr != "" {
		a, err := peeraddr.Parse(m.SrcAddr)
		if err != nil {
			return nil, fmt.Errorf("%w: src_addr: %v", ErrMalformed, err)
		}
		if a.NodeID != m.FromID() {
			return nil, fmt.Errorf("%w: %s, sender is %s", ErrSender, a.NodeID, m.FromID())
		}
	}
	now := o.cfg.Now()
	ts := time.UnixMilli(m.TS)
	ttl := min(time.Duration(min(m.TTL, 1<<30))*time.Second, o.cfg.MaxTTL)
	expires := ts.Add(ttl)
	if now.After(expires) {
		return nil, fmt.Errorf("%w: at %s", ErrExpired, expires.UTC().Format(time.RFC3339))
	}
	if ts.After(now.Add(o.cfg.MaxSkew)) {
		return nil, fmt.Errorf("%w: %s ahead of our clock", ErrFuture, ts.Sub(now).Round(time.Millisecond))
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.seen.check(now, m, nonce, ts, expires.Add(o.cfg.MaxSkew)); err != nil {
		return nil, err
	}
	return m, nil
}
