package resume

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Wire format: every frame is a 1-byte type, a 4-byte big-endian body
// length and the body.
//
//	data    seq u64, payload          bytes seq.. of the stream
//	ack     consumed u64              the application has read up to here
//	attach  received u64              first frame on every path
//	ping    (empty)                   keeps an idle path proven alive; one before the attach is ignored
//	control payload                   opaque message for the layer's user
//	fin     end u64                   the sender closed; the stream ends at end
const (
	frameData    byte = 1
	frameAck     byte = 2
	frameAttach  byte = 3
	framePing    byte = 4
	frameControl byte = 5
	frameFin     byte = 6
)

const (
	headerLen = 5
	// MaxChunk is the largest data payload of one frame.
	MaxChunk = 32 << 10
	// MaxControl is the largest control payload.
	MaxControl = 1024
	maxBody    = 8 + MaxChunk
)

// ErrProtocol marks a peer that broke the framing or the offsets.
var ErrProtocol = errors.New("resume: protocol error")

// frame is one decoded frame.
type frame struct {
	typ     byte
	off     uint64 // seq (data), consumed (ack), received (attach), end (fin)
	payload []byte // data or control; aliases the read buffer
}

// appendFrame appends f's encoding to b.
func appendFrame(b []byte, f frame) []byte {
	body := len(f.payload)
	switch f.typ {
	case frameData, frameAck, frameAttach, frameFin:
		body += 8
	}
	b = append(b, f.typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(body))
	switch f.typ {
	case frameData, frameAck, frameAttach, frameFin:
		b = binary.BigEndian.AppendUint64(b, f.off)
	}
	return append(b, f.payload...)
}

// readFrame reads one frame from r into buf (grown as needed) and decodes
// it. The payload aliases buf.
func readFrame(r io.Reader, buf []byte) (frame, []byte, error) {
	if cap(buf) < headerLen {
		buf = make([]byte, headerLen, headerLen+maxBody)
	}
	hdr := buf[:headerLen]
	if _, err := io.ReadFull(r, hdr); err != nil {
		return frame{}, buf, err
	}
	typ := hdr[0]
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxBody {
		return frame{}, buf, fmt.Errorf("%w: frame of %d bytes (at most %d)", ErrProtocol, n, maxBody)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	body := buf[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, buf, err
	}
	f, err := decodeBody(typ, body)
	return f, buf, err
}

// decodeBody checks a frame body against its type.
func decodeBody(typ byte, body []byte) (frame, error) {
	f := frame{typ: typ}
	switch typ {
	case frameData, frameAck, frameAttach, frameFin:
		if len(body) < 8 {
			return f, fmt.Errorf("%w: frame type %d with a %d-byte body", ErrProtocol, typ, len(body))
		}
		f.off = binary.BigEndian.Uint64(body)
		f.payload = body[8:]
		if typ != frameData && len(f.payload) != 0 {
			return f, fmt.Errorf("%w: frame type %d with %d extra bytes", ErrProtocol, typ, len(f.payload))
		}
		if typ == frameData {
			if len(f.payload) == 0 || len(f.payload) > MaxChunk {
				return f, fmt.Errorf("%w: data frame of %d bytes", ErrProtocol, len(f.payload))
			}
			if f.off+uint64(len(f.payload)) < f.off {
				return f, fmt.Errorf("%w: data frame past the end of the offsets", ErrProtocol)
			}
		}
	case framePing:
		if len(body) != 0 {
			return f, fmt.Errorf("%w: ping with a body", ErrProtocol)
		}
	case frameControl:
		if len(body) > MaxControl {
			return f, fmt.Errorf("%w: control message of %d bytes", ErrProtocol, len(body))
		}
		f.payload = body
	default:
		return f, fmt.Errorf("%w: unknown frame type %d", ErrProtocol, typ)
	}
	return f, nil
}
