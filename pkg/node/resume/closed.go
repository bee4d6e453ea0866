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
