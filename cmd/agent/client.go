package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// command is a CLI subcommand: a call on a running agent's REST API.
type command struct {
	usage string
	args  int // required positional arguments
	path  func(a []string) string
}

var commands = map[string]command{
	"version": {"version", 0, func([]string) string { return "/p2p/version" }},
	"addr":    {"addr                      print this agent's peer address", 0, func([]string) string { return "/p2p/addr" }},
	"ifs":     {"ifs                       interfaces, routes and NAT", 0, func([]string) string { return "/p2p/ifs" }},
	"cons":    {"cons                      open connections (inbound ones are named in1, in2, ...)", 0, func([]string) string { return "/p2p/cons" }},
	"open":    {"open NAME ADDR|self       connect to a peer and name the connection", 2, func(a []string) string { return "/p2p/open/" + esc(a[0]) + "/" + esc(a[1]) }},
	"con":     {"con NAME                  one connection's details", 1, func(a []string) string { return "/p2p/con/" + esc(a[0]) }},
	"send":    {"send NAME TEXT            send a message (try: send NAME 'ECHO hi')", 2, func(a []string) string { return "/p2p/send/" + esc(a[0]) + "/" + esc(strings.Join(a[1:], " ")) }},
	"recv": {"recv NAME [TIMEOUT_S]     receive the next message", 1, func(a []string) string {
		p := "/p2p/recv/" + esc(a[0])
		if len(a) > 1 {
			p += "/timeout/" + esc(a[1])
		}
		return p
	}},
	"close": {"close NAME                close a connection", 1, func(a []string) string { return "/p2p/close/" + esc(a[0]) }},
}

func esc(s string) string { return url.PathEscape(s) }

func isCommand(s string) bool {
	_, ok := commands[s]
	return ok || s == "help"
}

func commandNames() []string {
	var out []string
	for k := range commands {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// client runs one subcommand against the API and prints its JSON answer.
// It exits non-zero when the API reports an error.
func client(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if args[0] == "help" {
		fmt.Fprintln(stdout, "Client commands (talk to a running agent; --api-url or AGENT_API_URL picks it):")
		for _, n := range commandNames() {
			fmt.Fprintln(stdout, "  agent", commands[n].usage)
		}
		return nil
	}
	cmd := commands[args[0]]
	fs := flag.NewFlagSet("agent "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv("AGENT_API_URL")
	if def == "" {
		def = "http://127.0.0.1:12333"
	}
	apiURL := fs.String("api-url", def, "the agent's REST API (env AGENT_API_URL)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	pos := fs.Args()
	if len(pos) < cmd.args {
		return fmt.Errorf("usage: agent %s", cmd.usage)
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*apiURL, "/")+cmd.path(pos), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("is the agent running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	stdout.Write(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		fmt.Fprintln(stdout)
	}
	var r struct {
		Error int    `json:"error"`
		Msg   string `json:"msg"`
	}
	if json.Unmarshal(body, &r) == nil && r.Error != 0 {
		return errors.New("API error " + fmt.Sprint(r.Error) + ": " + r.Msg)
	}
	return nil
}
