// Package sock abstracts socket creation so code that opens sockets (STUN and
// TURN clients, the node) can be given sockets in another network namespace
// (the NAT lab) without changing. Host is the machine's own network.
package sock

import (
	"context"
	"net"
)

// Net creates sockets. Implementations must be safe for concurrent use.
type Net interface {
	ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error)
	Listen(ctx context.Context, network, address string) (net.Listener, error)
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Host is the Net of the current network namespace (plain package net).
var Host Net = hostNet{}

type hostNet struct{}

func (hostNet) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, network, address)
}

func (hostNet) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, network, address)
}

func (hostNet) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// Doer is implemented by a Net that can run code which opens its own sockets
// (third-party libraries such as a NAT-PMP client) where the Net's sockets
// live, e.g. inside a lab namespace.
type Doer interface {
	Do(fn func() error) error
}

// Do runs fn through n's Doer if it has one, else directly. fn must not
// start goroutines that open sockets.
func Do(n Net, fn func() error) error {
	if d, ok := n.(Doer); ok {
		return d.Do(fn)
	}
	return fn()
}
