package api

import (
	"context"
	"errors"

	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// nilBackend is an agent that has nothing yet: for tests of the HTTP guard
// that need no network.
type nilBackend struct{}

func (nilBackend) ID() string { return "" }
func (nilBackend) Address() (peeraddr.Address, error) {
	return peeraddr.Address{}, errors.New("not started")
}
func (nilBackend) Interfaces() []netif.Interface { return nil }
func (nilBackend) ConnectWith(context.Context, string, node.Options) (*agent.Pipe, node.Report, error) {
	return nil, node.Report{}, errors.New("not started")
}
