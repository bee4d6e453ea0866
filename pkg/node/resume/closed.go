package resume

import (
	"errors"
	"io"
)

// peerClosed reports whether err is the peer closing the connection: an
// end of input at a frame boundary, or a reset or broken pipe (it closed
// with our attach unread).
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || isReset(err)
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
