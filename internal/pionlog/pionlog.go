// Package pionlog sends pion's log lines (pion/turn, pion/stun) to slog.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory is a pion logging.LoggerFactory writing to log. pion logs a line per
// malformed or unexpected datagram, which anyone on the internet can cause, so
// everything it says is logged at debug level; callers log what matters
// themselves.
type Factory struct{ Log *slog.Logger }

func (p Factory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: p.Log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) out(msg string) { l.log.Log(context.Background(), slog.LevelDebug, msg) }

func (l pionLogger) enabled() bool { return l.log.Enabled(context.Background(), slog.LevelDebug) }

func (l pionLogger) Trace(msg string)                          {}
func (l pionLogger) Tracef(format string, args ...interface{}) {}
func (l pionLogger) Debug(msg string)                          { l.out(msg) }
func (l pionLogger) Debugf(format string, args ...interface{}) {
	if l.enabled() {
		l.out(fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Info(msg string) { l.out(msg) }
func (l pionLogger) Infof(format string, args ...interface{}) {
	if l.enabled() {
		l.out(fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Warn(msg string) { l.out(msg) }
func (l pionLogger) Warnf(format string, args ...interface{}) {
	if l.enabled() {
		l.out(fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Error(msg string) { l.out(msg) }
func (l pionLogger) Errorf(format string, args ...interface{}) {
	if l.enabled() {
		l.out(fmt.Sprintf(format, args...))
	}
}
