//go:build unix

package mqttbroker

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxIovec bounds the buffers of one writev (IOV_MAX is 1024 on Linux and
// the BSDs).
const maxIovec = 1024

// rawWriter writes to a socket without blocking: one writev, whatever the
// socket's send buffer takes.
type rawWriter struct{ rc syscall.RawConn }

// newRawWriter returns nil for a connection that is not a plain socket
// (TLS, websocket): those always write from the writer goroutine.
func newRawWriter(c net.Conn) rawWriter {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return rawWriter{}
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return rawWriter{}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return rawWriter{}
	}
	return rawWriter{rc: rc}
}

func (w rawWriter) ok() bool { return w.rc != nil }

// writeNow writes what the socket takes of bufs now and returns the bytes
// written; 0 and no error when the socket's buffer is full.
func (w rawWriter) writeNow(bufs [][]byte) (int, error) {
	if len(bufs) > maxIovec {
		bufs = bufs[:maxIovec]
	}
	var n int
	var werr error
	err := w.rc.Write(func(fd uintptr) bool {
		for {
			n, werr = unix.Writev(int(fd), bufs)
			if werr != unix.EINTR {
				return true // one attempt: never wait for the socket
			}
		}
	})
	if n < 0 {
		n = 0
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("mqttbroker: write: %w", err)
	case errors.Is(werr, unix.EAGAIN):
		return n, nil
	case werr != nil:
		return n, fmt.Errorf("mqttbroker: write: %w", werr)
	}
	return n, nil
}
