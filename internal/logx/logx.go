// Package logx builds the slog logger every p2pd program uses.
package logx

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format ("text" or "json").
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("logx: bad log level %q (debug, info, warn, error)", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("logx: bad log format %q (text, json)", format)
	}
}

// Flags are the --log-level and --log-format settings every program has.
type Flags struct{ Level, Format string }

// AddFlags defines --log-level and --log-format on fs.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.Level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.Format, "log-format", "text", "log format: text, json")
	return f
}

// New builds the logger the flags ask for, writing to w.
func (f *Flags) New(w io.Writer) (*slog.Logger, error) { return New(w, f.Level, f.Format) }
