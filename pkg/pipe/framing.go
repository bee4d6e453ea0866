package pipe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Framing says how a pipe cuts its byte stream into messages.
type Framing int

const (
	// Frames prefixes each message with its length as a 4-byte big-endian
	// integer. Boundaries survive and payloads may hold any bytes. The
	// default, and what agents use between each other.
	Frames Framing = iota
	// Lines ends each message with "\n" (not part of the message), like
	// P2PD v3's line protocol. A message may not contain "\n".
	Lines
	// Chunks treats whatever one read returns as a message, as P2PD does.
	// Boundaries are not preserved: the sender's writes may arrive merged
	// or split. For talking to programs that write raw bytes.
	Chunks
)

// String names the framing.
func (f Framing) String() string {
	switch f {
	case Frames:
		return "frames"
	case Lines:
		return "lines"
	case Chunks:
		return "chunks"
	}
	return fmt.Sprintf("framing(%d)", int(f))
}

// Framing errors.
var (
	ErrTooLarge = errors.New("pipe: message too large")
	ErrNewline  = errors.New("pipe: message contains a newline (framing is lines)")
)

const frameHeader = 4

// framePool recycles Frames encodings between sends (any pipe): a message
// is copied once behind its header, without a fresh allocation each time.
var framePool = sync.Pool{New: func() any { return new([]byte) }}

// encodePooled is encode, with a Frames buffer from framePool that release
// gives back once the wire bytes are written.
func (f Framing) encodePooled(data []byte, max int) (wire []byte, release func(), err error) {
	if f != Frames || len(data) > max {
		wire, err = f.encode(data, max)
		return wire, func() {}, err
	}
	bp := framePool.Get().(*[]byte)
	if cap(*bp) < frameHeader+len(data) {
		*bp = make([]byte, frameHeader+len(data))
	}
	out := (*bp)[:frameHeader+len(data)]
	binary.BigEndian.PutUint32(out, uint32(len(data)))
	copy(out[frameHeader:], data)
	return out, func() { framePool.Put(bp) }, nil
}

// encode returns data as it goes on the wire.
func (f Framing) encode(data []byte, max int) ([]byte, error) {
	if len(data) > max {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), max)
	}
	switch f {
	case Frames:
		out := make([]byte, frameHeader+len(data))
		binary.BigEndian.PutUint32(out, uint32(len(data)))
		copy(out[frameHeader:], data)
		return out, nil
	case Lines:
		if bytes.IndexByte(data, '\n') >= 0 {
			return nil, ErrNewline
		}
		return append(append(make([]byte, 0, len(data)+1), data...), '\n'), nil
	case Chunks:
		return data, nil
	}
	return nil, fmt.Errorf("pipe: unknown framing %d", int(f))
}

// decoder reads messages from a stream. next returns io.EOF at a clean end.
type decoder struct {
	f   Framing
	max int
	r   *bufio.Reader
	buf []byte
}

func newDecoder(f Framing, r io.Reader, max int) *decoder {
	return &decoder{f: f, max: max, r: bufio.NewReader(r)}
}

// msgPool recycles the buffers of received Frames messages that only Divert
// handlers saw (see Pipe.deliver).
var msgPool = sync.Pool{New: func() any { return new([]byte) }}

// pooledMin is the smallest message read into a pooled buffer; smaller ones
// cost little to allocate.
const pooledMin = 4 << 10

// next returns the next message. With a nil release the slice is the
// caller's to keep; otherwise it is a pooled buffer the caller hands back
// with release once nothing refers to it.
func (d *decoder) next() (msg []byte, release func(), err error) {
	if d.f == Frames {
		return d.nextFrame()
	}
	msg, err = d.nextOther()
	return msg, nil, err
}

func (d *decoder) nextFrame() ([]byte, func(), error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(d.r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, fmt.Errorf("pipe: stream ended inside a frame header: %w", err)
		}
		return nil, nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if uint64(n) > uint64(d.max) {
		return nil, nil, fmt.Errorf("%w: frame of %d bytes, at most %d", ErrTooLarge, n, d.max)
	}
	var msg []byte
	var release func()
	if n >= pooledMin {
		bp := msgPool.Get().(*[]byte)
		if uint32(cap(*bp)) < n {
			*bp = make([]byte, n)
		}
		msg = (*bp)[:n]
		release = func() { msgPool.Put(bp) }
	} else {
		msg = make([]byte, n)
	}
	if _, err := io.ReadFull(d.r, msg); err != nil {
		return nil, nil, fmt.Errorf("pipe: stream ended inside a frame: %w", noEOF(err))
	}
	return msg, release, nil
}

func (d *decoder) nextOther() ([]byte, error) {
	switch d.f {
	case Lines:
		var msg []byte
		for {
			part, err := d.r.ReadSlice('\n')
			if len(msg)+len(part) > d.max+1 {
				return nil, fmt.Errorf("%w: line longer than %d bytes", ErrTooLarge, d.max)
			}
			msg = append(msg, part...)
			switch {
			case err == nil:
				return msg[:len(msg)-1], nil
			case errors.Is(err, bufio.ErrBufferFull):
				continue
			case errors.Is(err, io.EOF) && len(msg) > 0:
				return msg, nil // last line without "\n": deliver it, lose nothing
			default:
				return nil, err
			}
		}
	case Chunks:
		if d.buf == nil {
			d.buf = make([]byte, min(d.max, 64<<10))
		}
		n, err := d.r.Read(d.buf)
		if n > 0 {
			return append([]byte(nil), d.buf[:n]...), nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return nil, err
	}
	return nil, fmt.Errorf("pipe: unknown framing %d", int(d.f))
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
