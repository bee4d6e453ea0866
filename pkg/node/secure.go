package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/cpu"
	"io"
	"net"
	"sync"
	"time"

	"github.com/flynn/noise"
	"github.com/p2pd-go/p2pd/pkg/identity"
)

// Every pipe between agents starts with a Noise IK handshake using the node
// keys: the initiator knows the responder's node id (it is in the peer
// address or the signalling message), and proves its own. A pipe reaches the
// application only after both sides proved they hold the keys of the node ids
// they claim.

// Two cipher suites, both X25519 and BLAKE2s with a different AEAD. The
// initiator picks AES-256-GCM when its CPU has AES instructions (about twice
// the speed of ChaCha20-Poly1305 there, see docs/benchmarks.md) and
// ChaCha20-Poly1305 otherwise. The responder accepts either: the suite is
// part of Noise's protocol name, so the first message opens under the
// initiator's suite only, and Accept tries both. Nobody can steer the choice:
// the protocol name is bound into the handshake hash both sides check.
var (
	suiteAESGCM = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashBLAKE2s)
	suiteChaCha = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)
)

// hasAESHardware reports AES and carry-less multiply instructions, which
// AES-GCM needs to be fast and constant-time.
var hasAESHardware = cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ ||
	cpu.ARM64.HasAES && cpu.ARM64.HasPMULL

// initiatorSuite is the suite this machine proposes.
func initiatorSuite() noise.CipherSuite {
	if hasAESHardware {
		return suiteAESGCM
	}
	return suiteChaCha
}

// prologue binds the handshake to this protocol and version.
var prologue = []byte("p2pd pipe v1")

const (
	maxFrame     = 65535         // largest Noise message
	maxPlaintext = maxFrame - 16 // minus the AEAD tag
	maxHello     = 1024          // largest handshake payload we accept
)

// ErrHandshake wraps every handshake failure.
var ErrHandshake = errors.New("node: handshake failed")

// Hello is what the initiator tells the responder inside the first,
// encrypted handshake message.
type Hello struct {
	PipeID string `json:"pipe_id"`
	Kind   string `json:"kind"` // how the pipe was made: direct, reverse, punch, relay
	// Resume says both ends run the pipe in pkg/node/resume, so it can move
	// to another path later (pipe migration, docs/agent.md). Only sent to
	// a peer that said it understands it (agents before the hello ignored
	// unknown fields refuse them).
	Resume bool `json:"resume,omitempty"`
	// Handshake is how long the inbound handshake took (set by the node
	// for OnPipe; never sent).
	Handshake time.Duration `json:"-"`
}

// SecureConn is an authenticated, encrypted pipe. Each Write is sent as one
// or more frames; ReadMessage returns one frame's plaintext.
type SecureConn struct {
	net.Conn
	remote [identity.KeySize]byte
	hello  Hello // sent (initiator) or received (responder)
	rmu    sync.Mutex
	rcs    *noise.CipherState
	rbuf   []byte        // undelivered plaintext of the current frame
	br     *bufio.Reader // frames are read through it once the handshake is done
	rframe []byte        // Read's frame buffer, decrypted in place
	wmu    sync.Mutex
	wcs    *noise.CipherState
	wbuf   []byte // Write's frame buffer: length header + ciphertext
	cipher string // the AEAD both sides agreed on
}

// Cipher names the pipe's AEAD: "AESGCM" or "ChaChaPoly".
func (c *SecureConn) Cipher() string { return c.cipher }

func cipherName(s noise.CipherSuite) string {
	if bytes.Contains(s.Name(), []byte("AESGCM")) {
		return "AESGCM"
	}
	return "ChaChaPoly"
}

// RemoteKey is the peer's proven public key.
func (c *SecureConn) RemoteKey() [identity.KeySize]byte { return c.remote }

// Hello is the handshake's Hello: the one sent on an outbound pipe, the
// one received on an inbound pipe.
func (c *SecureConn) Hello() Hello { return c.hello }

// RemoteNodeID is the peer's proven node id.
func (c *SecureConn) RemoteNodeID() string { return identity.NodeID(c.remote) }

func writeFrame(w io.Writer, msg []byte) error {
	if len(msg) > maxFrame {
		return fmt.Errorf("node: frame of %d bytes exceeds %d", len(msg), maxFrame)
	}
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	_, err := w.Write(buf)
	return err
}

func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func keypair(id *identity.Identity) noise.DHKey {
	return noise.DHKey{Private: append([]byte(nil), id.Private[:]...), Public: append([]byte(nil), id.Public[:]...)}
}

// deadline applies ctx's deadline (or a default) to c for the handshake.
func deadline(ctx context.Context, c net.Conn, def time.Duration) func() {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(def)
	}
	_ = c.SetDeadline(d)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)); close(fired) })
	return func() {
		if !stop() {
			<-fired // clear the deadline only after the callback set it
		}
		_ = c.SetDeadline(time.Time{})
	}
}

// Initiate runs the initiator side over c: it proves id and requires the peer
// to hold peer's key. On error the caller still owns (and closes) c.
func Initiate(ctx context.Context, c net.Conn, id *identity.Identity, peer [identity.KeySize]byte, hello Hello) (*SecureConn, error) {
	return initiate(ctx, c, id, peer, hello, initiatorSuite())
}

func initiate(ctx context.Context, c net.Conn, id *identity.Identity, peer [identity.KeySize]byte, hello Hello, suite noise.CipherSuite) (*SecureConn, error) {
	payload, err := json.Marshal(hello)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	return initiateWith(ctx, c, id, peer, hello, payload, suite)
}

// initiateWith sends payload as the encoding of hello (tests send hellos
// of other versions).
func initiateWith(ctx context.Context, c net.Conn, id *identity.Identity, peer [identity.KeySize]byte, hello Hello, payload []byte, suite noise.CipherSuite) (*SecureConn, error) {
	defer deadline(ctx, c, 10*time.Second)()
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: suite, Pattern: noise.HandshakeIK, Initiator: true, Prologue: prologue,
		StaticKeypair: keypair(id), PeerStatic: peer[:],
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	msg, _, _, err := hs.WriteMessage(nil, payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if err := writeFrame(c, msg); err != nil {
		return nil, fmt.Errorf("%w: send: %v", ErrHandshake, err)
	}
	reply, err := readFrame(c, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s refused the handshake: it does not hold the key of node %s, or is not a p2pd node (%v)", ErrHandshake, c.RemoteAddr(), identity.NodeID(peer), err)
	}
	_, cs1, cs2, err := hs.ReadMessage(nil, reply)
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not hold the key of node %s", ErrHandshake, c.RemoteAddr(), identity.NodeID(peer))
	}
	// Key confirmation: IK's first message can be replayed by someone who
	// recorded it, so the responder waits for proof that we hold the
	// ephemeral key too before it trusts the pipe.
	confirm, err := cs1.Encrypt(nil, nil, confirmation)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if err := writeFrame(c, confirm); err != nil {
		return nil, fmt.Errorf("%w: send: %v", ErrHandshake, err)
	}
	return &SecureConn{Conn: c, remote: peer, hello: hello, wcs: cs1, rcs: cs2, cipher: cipherName(suite)}, nil
}

// confirmation is the initiator's first transport message.
var confirmation = []byte("p2pd confirm")

// Accept runs the responder side over c and returns the pipe with the
// initiator's proven key and its Hello. On error the caller closes c.
func Accept(ctx context.Context, c net.Conn, id *identity.Identity) (*SecureConn, Hello, error) {
	defer deadline(ctx, c, 10*time.Second)()
	var hello Hello
	first, err := readFrame(c, nil)
	if err != nil {
		return nil, hello, fmt.Errorf("%w: read: %v", ErrHandshake, err)
	}
	var (
		hs      *noise.HandshakeState
		payload []byte
		suite   noise.CipherSuite
	)
	for _, suite = range []noise.CipherSuite{suiteAESGCM, suiteChaCha} {
		hs, err = noise.NewHandshakeState(noise.Config{
			CipherSuite: suite, Pattern: noise.HandshakeIK, Initiator: false, Prologue: prologue,
			StaticKeypair: keypair(id),
		})
		if err != nil {
			return nil, hello, fmt.Errorf("%w: %v", ErrHandshake, err)
		}
		if payload, _, _, err = hs.ReadMessage(nil, first); err == nil {
			break
		}
	}
	if err != nil {
		return nil, hello, fmt.Errorf("%w: first message from %s does not open (wrong node key or not p2pd)", ErrHandshake, c.RemoteAddr())
	}
	if len(payload) > maxHello {
		return nil, hello, fmt.Errorf("%w: hello of %d bytes", ErrHandshake, len(payload))
	}
	// Hello fields this version does not know are ignored: a newer agent
	// may add some, and the payload is already authenticated.
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&hello); err != nil {
		return nil, hello, fmt.Errorf("%w: bad hello: %v", ErrHandshake, err)
	}
	var remote [identity.KeySize]byte
	copy(remote[:], hs.PeerStatic())
	msg, cs1, cs2, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return nil, hello, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if err := writeFrame(c, msg); err != nil {
		return nil, hello, fmt.Errorf("%w: send: %v", ErrHandshake, err)
	}
	ct, err := readFrame(c, nil)
	if err != nil {
		return nil, hello, fmt.Errorf("%w: no key confirmation from %s: %v", ErrHandshake, c.RemoteAddr(), err)
	}
	if pt, err := cs1.Decrypt(nil, nil, ct); err != nil || !bytes.Equal(pt, confirmation) {
		return nil, hello, fmt.Errorf("%w: bad key confirmation from %s (a replayed handshake?)", ErrHandshake, c.RemoteAddr())
	}
	return &SecureConn{Conn: c, remote: remote, hello: hello, rcs: cs1, wcs: cs2, cipher: cipherName(suite)}, hello, nil
}

// ReadMessage returns the plaintext of the next frame (one peer Write of up
// to 65519 bytes), or what is left of a frame partly consumed by Read.
func (c *SecureConn) ReadMessage() ([]byte, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.rbuf) > 0 {
		m := append([]byte(nil), c.rbuf...)
		c.rbuf = nil
		return m, nil
	}
	return c.readFrameLocked(nil)
}

// readFrameLocked reads and decrypts the next non-empty frame. With buf it
// decrypts into buf (the result aliases buf); with nil the result is a
// fresh slice.
func (c *SecureConn) readFrameLocked(buf []byte) ([]byte, error) {
	return c.openFrame(func(int) []byte { return buf })
}

// openFrame decrypts the next non-empty frame straight from the read
// buffer into dst(n), where n is the frame's plaintext size (a nil dst
// allocates): no copy of the ciphertext is made.
func (c *SecureConn) openFrame(dst func(n int) []byte) ([]byte, error) {
	if c.br == nil {
		c.br = bufio.NewReaderSize(c.Conn, 2*maxFrame)
	}
	for {
		hdr, err := c.br.Peek(2)
		if err != nil {
			if len(hdr) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		n := int(binary.BigEndian.Uint16(hdr))
		frame, err := c.br.Peek(2 + n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		var out []byte
		if n >= 16 {
			out = dst(n - 16)
		}
		if out != nil {
			out = out[:0]
		}
		pt, err := c.rcs.Decrypt(out, nil, frame[2:])
		_, _ = c.br.Discard(2 + n)
		if err != nil {
			return nil, fmt.Errorf("node: pipe from %s: frame does not decrypt: %w", c.RemoteAddr(), err)
		}
		if len(pt) > 0 {
			return pt, nil
		}
	}
}

// Read implements net.Conn as a byte stream. A frame that fits in p is
// decrypted into p directly.
func (c *SecureConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.rbuf) == 0 {
		direct := false
		m, err := c.openFrame(func(n int) []byte {
			if direct = n <= len(p); direct {
				return p[:0:len(p)]
			}
			if c.rframe == nil {
				c.rframe = make([]byte, maxFrame)
			}
			return c.rframe[:0:maxFrame]
		})
		if err != nil {
			return 0, err
		}
		if direct {
			return len(m), nil
		}
		c.rbuf = m
	}
	n := copy(p, c.rbuf)
	c.rbuf = c.rbuf[n:]
	return n, nil
}

// Write encrypts p as one frame (several if it exceeds 65519 bytes), two
// frames per system call, from a buffer kept for the pipe.
func (c *SecureConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// The buffer grows to the largest batch written so far (at most two
	// frames), so a pipe of small messages keeps a small one.
	if need := min(len(p), writeBatch*maxPlaintext) + writeBatch*(2+16); cap(c.wbuf) < need {
		c.wbuf = make([]byte, 0, need)
	}
	for sent := 0; sent < len(p); {
		out := c.wbuf[:0]
		for f := 0; f < writeBatch && sent < len(p); f++ {
			chunk := p[sent:min(len(p), sent+maxPlaintext)]
			start := len(out)
			out = append(out, 0, 0)
			var err error
			if out, err = c.wcs.Encrypt(out, nil, chunk); err != nil {
				return sent, fmt.Errorf("node: encrypt: %w", err)
			}
			binary.BigEndian.PutUint16(out[start:], uint16(len(out)-start-2))
			sent += len(chunk)
		}
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// writeBatch is how many frames Write encrypts into its buffer per system
// call: a 64 KiB message with its header is two.
const writeBatch = 2
