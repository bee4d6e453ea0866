//go:build !linux

package mqttbroker

import "net"

// rawWriter is the writer goroutine only on this platform.
type rawWriter struct{}

func newRawWriter(net.Conn) rawWriter { return rawWriter{} }

func (rawWriter) ok() bool { return false }

func (rawWriter) writeNow([][]byte) (int, error) { return 0, nil }

func (rawWriter) read([]byte) (int, error) { return 0, net.ErrClosed }

func (rawWriter) tryRead([]byte) (int, error) { return 0, errNoInput }
