package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/p2pd-go/p2pd/pkg/netcheck"
	"github.com/p2pd-go/p2pd/pkg/netif"
)

type natOpts struct {
	stun, interfaces string
	json, noPortMap  bool
	timeout          time.Duration
}

func natCommand(fs *flag.FlagSet) runFunc {
	o := &natOpts{}
	fs.StringVar(&o.stun, "stun", envOr("AGENT_STUN", "127.0.0.1:3478,127.0.0.2:3478"), "STUN servers, as for the agent (env AGENT_STUN); the first must answer change requests (stund)")
	fs.StringVar(&o.interfaces, "interfaces", envOr("AGENT_INTERFACES", ""), "interfaces to check (comma-separated; empty: every usable one)")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.BoolVar(&o.noPortMap, "no-portmap", false, "do not ask the gateway about NAT-PMP/UPnP")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "per STUN request")
	return func(ctx context.Context, _ *apiClient, args []string, _ io.Reader, stdout, stderr io.Writer) error {
		return runNAT(ctx, *o, args, stdout, stderr)
	}
}

// runNAT measures the network like the agent does at start-up and
// prints a report; progress goes to stderr.
func runNAT(ctx context.Context, o natOpts, args []string, stdout, stderr io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("agent nat takes no arguments (got %q)", args[0])
	}
	servers, err := stunServers(ctx, splitList(o.stun))
	if err != nil {
		return err
	}
	cfg := netcheck.Config{STUN: servers, Timeout: o.timeout, NoPortMap: o.noPortMap,
		Progress: func(s string) { fmt.Fprintln(stderr, "agent nat:", s) }}
	if o.interfaces != "" {
		cfg.Interfaces = netif.Options{Only: splitList(o.interfaces)}
	}
	rep, err := netcheck.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if o.json {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(b))
		return err
	}
	rep.WriteText(stdout)
	return nil
}
