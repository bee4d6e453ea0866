// Package config gives every p2pd program the same configuration rules:
// command-line flags, each with an environment variable, plus an optional YAML
// file. Precedence: flag > environment > YAML file > default.
//
// The environment variable of flag "relay-min-port" in program prefix "TURND"
// is TURND_RELAY_MIN_PORT; the YAML key is the flag name itself.
package config

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/p2pd-go/p2pd/internal/version"
	"gopkg.in/yaml.v3"
)

// Loader wraps a flag.FlagSet with environment and YAML sources.
type Loader struct {
	fs      *flag.FlagSet
	prefix  string
	summary string
	config  string
	version bool
	program string
	getenv  func(string) string
}

// New makes a loader for program (used in usage text) whose environment
// variables start with prefix + "_". summary is printed at the top of --help.
func New(program, prefix, summary string) *Loader {
	l := &Loader{
		program: program,
		fs:      flag.NewFlagSet(program, flag.ContinueOnError),
		prefix:  strings.ToUpper(prefix),
		summary: summary,
		getenv:  os.Getenv,
	}
	l.fs.StringVar(&l.config, "config", "", "YAML file with settings; keys are flag names (flags and environment override it)")
	if l.fs.Lookup("version") == nil {
		l.fs.BoolVar(&l.version, "version", false, "print the version and exit")
	}
	l.fs.Usage = func() { l.PrintUsage(l.fs.Output()) }
	return l
}

// SetGetenv replaces os.Getenv (tests).
func (l *Loader) SetGetenv(f func(string) string) { l.getenv = f }

// Flags returns the flag set to define flags on.
func (l *Loader) Flags() *flag.FlagSet { return l.fs }

// EnvName is the environment variable that sets flag name.
func (l *Loader) EnvName(name string) string {
	return l.prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// ErrHelp is returned by Parse when -h or --help was given; usage was printed.
var ErrHelp = flag.ErrHelp

// ErrVersion is returned by Parse when --version was given; the version was
// printed to stdout. It matches ErrHelp, so mains exit 0 for both.
var ErrVersion = fmt.Errorf("%w: version printed", flag.ErrHelp)

// Parse reads args, then the environment, then the YAML file named by
// --config (or PREFIX_CONFIG), filling every flag not set by a higher source.
func (l *Loader) Parse(args []string) error {
	if err := l.fs.Parse(args); err != nil {
		return err
	}
	if l.version {
		fmt.Fprintln(os.Stdout, l.program, version.Version)
		return ErrVersion
	}
	if l.fs.NArg() > 0 {
		return fmt.Errorf("config: unexpected argument %q (all settings are --flags)", l.fs.Arg(0))
	}
	set := map[string]bool{}
	l.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var firstErr error
	l.fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || firstErr != nil || f.Name == "version" {
			return // --version is a command-line action, not a setting
		}
		if v, ok := l.lookupEnv(f.Name); ok {
			if err := l.fs.Set(f.Name, v); err != nil {
				firstErr = fmt.Errorf("config: %s=%q: %w", l.EnvName(f.Name), v, err)
			}
			set[f.Name] = true
		}
	})
	if firstErr != nil {
		return firstErr
	}
	if l.config == "" {
		return nil
	}
	return l.loadYAML(l.config, set)
}

func (l *Loader) lookupEnv(name string) (string, bool) {
	v := l.getenv(l.EnvName(name))
	return v, v != ""
}

func (l *Loader) loadYAML(path string, set map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "config" {
			return fmt.Errorf("config: %s: key %q is not allowed in a config file", path, k)
		}
		if l.fs.Lookup(k) == nil || k == "version" {
			return fmt.Errorf("config: %s: unknown key %q (see --help for the settings)", path, k)
		}
		if set[k] {
			continue
		}
		v, err := scalar(doc[k])
		if err != nil {
			return fmt.Errorf("config: %s: key %q: %w", path, k, err)
		}
		if err := l.fs.Set(k, v); err != nil {
			return fmt.Errorf("config: %s: key %q: %w", path, k, err)
		}
	}
	return nil
}

// scalar turns a YAML value into flag text; lists become comma-separated.
func scalar(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, err := scalar(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		return "", errors.New("a mapping is not a valid setting value")
	default:
		return fmt.Sprint(x), nil
	}
}

// PrintUsage writes the summary and every flag with its environment variable.
func (l *Loader) PrintUsage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nUsage: %s [flags]\n\nEvery flag can also be set by an environment variable (shown) or a\nYAML file given with --config (keys are flag names). Precedence:\nflag > environment > file > default.\n\nFlags:\n", l.summary, l.fs.Name())
	l.fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		if f.Name == "version" {
			fmt.Fprintf(w, "\n      %s\n", usage)
			return
		}
		fmt.Fprintf(w, "\n      %s\n      env %s", usage, l.EnvName(f.Name))
		if f.DefValue != "" && f.DefValue != "[]" {
			fmt.Fprintf(w, ", default %q", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// Main runs a program's run function with a context that SIGINT and SIGTERM
// cancel, and exits 1 printing "<program>: <error>" when it fails (not for
// --help).
func Main(program string, run func(ctx context.Context, args []string, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil && !errors.Is(err, ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", program, err)
		os.Exit(1)
	}
}
