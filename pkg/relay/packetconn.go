package relay

import (
	"errors"
	"io"
	"net"
)

// packetConn is pion's relayed conn as quic-go gets it. pion returns
// io.ErrShortBuffer for a datagram larger than the read buffer, and quic-go
// closes the whole transport on any read error: such a datagram (no QUIC
// packet of ours is that large) is dropped and counted instead.
type packetConn struct {
	net.PacketConn
	m *metrics
}

func (p *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := p.PacketConn.ReadFrom(b)
		if errors.Is(err, io.ErrShortBuffer) {
			p.m.dropped.WithLabelValues("oversize").Inc()
			continue
		}
		if err == nil {
			p.m.bytes.WithLabelValues("in").Add(float64(n))
		}
		return n, addr, err
	}
}

func (p *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := p.PacketConn.WriteTo(b, addr)
	if err == nil {
		p.m.bytes.WithLabelValues("out").Add(float64(n))
	}
	return n, err
}

// SetReadBuffer and SetWriteBuffer are what quic-go looks for to size
// socket buffers; the relayed conn has none (the socket to the server is
// sized when it is opened), so they succeed without effect and quic-go does
// not log a warning.
func (p *packetConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer: see SetReadBuffer.
func (p *packetConn) SetWriteBuffer(int) error { return nil }
