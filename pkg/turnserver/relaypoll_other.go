//go:build !linux

package turnserver

import "log/slog"

// relayPoller exists on Linux only (epoll): elsewhere every relay socket is
// read by pion's goroutine for it.
type relayPoller struct{}

func newRelayPoller(*batchGroup, *slog.Logger) (*relayPoller, error) { return nil, nil }

func (*relayPoller) add(*relayConn) bool { return false }
func (*relayPoller) remove(*relayConn)   {}
func (*relayPoller) close()              {}
