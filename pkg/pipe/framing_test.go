package pipe

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// decodeAll reads every message from b.
func decodeAll(f Framing, b []byte, max int) ([][]byte, error) {
	d := newDecoder(f, bytes.NewReader(b), max)
	var out [][]byte
	for {
		m, release, err := d.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, bytes.Clone(m))
		if release != nil {
			release()
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		framing Framing
		in      []byte
		want    error
	}{
		{"frame header cut", Frames, []byte{0, 0}, io.ErrUnexpectedEOF},
		{"frame body cut", Frames, []byte{0, 0, 0, 5, 'a'}, io.ErrUnexpectedEOF},
		{"frame too large", Frames, []byte{0, 0, 1, 0}, ErrTooLarge},
		{"line too long", Lines, bytes.Repeat([]byte("a"), 300), ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeAll(tc.framing, tc.in, 255); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("last line without newline", func(t *testing.T) {
		msgs, err := decodeAll(Lines, []byte("a\nb"), 255)
		if err != nil || len(msgs) != 2 || string(msgs[1]) != "b" {
			t.Fatalf("got %q, %v", msgs, err)
		}
	})
}

// FuzzDecode feeds arbitrary streams to every framing: decoding never
// panics or exceeds the limit, and what decodes re-encodes to the same
// messages.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0})
	f.Add([]byte("one\ntwo\n\nthree"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	const max = 1024
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, fr := range []Framing{Frames, Lines, Chunks} {
			msgs, _ := decodeAll(fr, in, max)
			var wire []byte
			for _, m := range msgs {
				if len(m) > max {
					t.Fatalf("%s: message of %d bytes passed the %d limit", fr, len(m), max)
				}
				enc, err := fr.encode(m, max)
				if err != nil {
					t.Fatalf("%s: decoded message does not encode: %v", fr, err)
				}
				wire = append(wire, enc...)
			}
			again, err := decodeAll(fr, wire, max)
			if err != nil {
				t.Fatalf("%s: re-encoded stream does not decode: %v", fr, err)
			}
			if fr != Chunks && len(again) != len(msgs) {
				t.Fatalf("%s: %d messages became %d", fr, len(msgs), len(again))
			}
			if !bytes.Equal(bytes.Join(again, nil), bytes.Join(msgs, nil)) {
				t.Fatalf("%s: payload changed in the round trip", fr)
			}
		}
	})
}
