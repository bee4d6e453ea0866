//go:build !linux

package mqttbroker

import (
	"log/slog"
	"sync/atomic"
)

// parker is Linux-only: elsewhere read loops never park.
type parker struct{ count, sweeps atomic.Int64 }

func newParker(*slog.Logger) (*parker, error) { return nil, nil }

func (*parker) park(*flowConn, func()) bool { return false }

func (*parker) wakeConn(*flowConn) {}

func (*parker) watch(*flowConn) {}

func (*parker) unwatch(*flowConn) {}

func (*parker) Close() {}
