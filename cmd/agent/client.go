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
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/p2pd-go/p2pd/pkg/api"
	"github.com/p2pd-go/p2pd/pkg/identity"
)

// command is a CLI subcommand: a call on a running agent's REST API, or
// (setup set) a command of its own.
type command struct {
	usage string
	args  int // required positional arguments
	path  func(a []string) string
	// setup defines the command's own flags and returns what runs it.
	setup func(fs *flag.FlagSet) runFunc
	local bool // runs without an agent: no API flags
}

type runFunc func(ctx context.Context, c *apiClient, args []string, stdin io.Reader, stdout, stderr io.Writer) error

const connectUsage = "connect ADDR|self         netcat over a p2p pipe: stdin -> peer, peer -> stdout (--accept: take the next inbound pipe)"

var commands = map[string]command{
	"version": {usage: "version                   the running agent's version", path: func([]string) string { return "/p2p/version" }},
	"addr":    {usage: "addr                      print this agent's peer address", path: func([]string) string { return "/p2p/addr" }},
	"ifs":     {usage: "ifs                       interfaces, routes and NAT", path: func([]string) string { return "/p2p/ifs" }},
	"cons":    {usage: "cons                      open connections (inbound ones are named in1, in2, ...)", path: func([]string) string { return "/p2p/cons" }},
	"open":    {usage: openUsage, args: 2, setup: openCommand},
	"con":     {usage: "con NAME                  one connection's details", args: 1, path: func(a []string) string { return "/p2p/con/" + esc(a[0]) }},
	"send":    {usage: "send NAME TEXT            send a message (try: send NAME 'ECHO hi')", args: 2, path: func(a []string) string { return "/p2p/send/" + esc(a[0]) + "/" + esc(strings.Join(a[1:], " ")) }},
	"recv": {usage: "recv NAME [TIMEOUT_S]     receive the next message", args: 1, path: func(a []string) string {
		p := "/p2p/recv/" + esc(a[0])
		if len(a) > 1 {
			p += "/timeout/" + esc(a[1])
		}
		return p
	}},
	"close":   {usage: "close NAME                close a connection", args: 1, path: func(a []string) string { return "/p2p/close/" + esc(a[0]) }},
	"connect": {usage: connectUsage, setup: connectCommand},
	"nat": {usage: "nat                       measure this machine's NAT per interface (netcheck-style; --json); runs without an agent",
		setup: natCommand, local: true},
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

// apiClient talks to a running agent's REST API.
type apiClient struct {
	base  string // http://host:port
	token string
}

// defaultTokenFile is where `agent --api-token` writes the token.
func defaultTokenFile() string { return filepath.Join(identity.DefaultDir(), api.TokenFile) }

func (c *apiClient) request(ctx context.Context, method, path string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// call makes one API request and returns its JSON body; an API error
// (error != 0) is returned as an error carrying the message.
func (c *apiClient) call(ctx context.Context, path string) ([]byte, map[string]any, error) {
	req, err := c.request(ctx, http.MethodGet, path)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("is the agent running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, err
	}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		if code, _ := m["error"].(float64); code != 0 {
			return body, m, fmt.Errorf("API error %v: %v", code, m["msg"])
		}
	}
	return body, m, nil
}

// client runs one subcommand.
func client(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if args[0] == "help" {
		fmt.Fprintln(stdout, "Client commands (talk to a running agent; --api-url or AGENT_API_URL picks it,")
		fmt.Fprintln(stdout, "--api-token-file or AGENT_API_TOKEN_FILE its token when it runs with --api-token):")
		for _, n := range commandNames() {
			fmt.Fprintln(stdout, "  agent", commands[n].usage)
		}
		return nil
	}
	cmd := commands[args[0]]
	fs := flag.NewFlagSet("agent "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var apiURL, tokenFile string
	if !cmd.local {
		fs.StringVar(&apiURL, "api-url", envOr("AGENT_API_URL", "http://127.0.0.1:12333"), "the agent's REST API (env AGENT_API_URL)")
		fs.StringVar(&tokenFile, "api-token-file", envOr("AGENT_API_TOKEN_FILE", ""), "file with the API token (env AGENT_API_TOKEN_FILE; default "+defaultTokenFile()+" when it exists)")
	}
	var run runFunc
	if cmd.setup != nil {
		run = cmd.setup(fs)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	pos := fs.Args()
	if len(pos) < cmd.args {
		return fmt.Errorf("usage: agent %s", cmd.usage)
	}
	if cmd.local {
		return run(ctx, nil, pos, stdin, stdout, stderr)
	}
	c := &apiClient{base: strings.TrimRight(apiURL, "/")}
	if u, err := url.Parse(c.base); err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("--api-url %q: want http://host:port", apiURL)
	}
	switch {
	case tokenFile != "":
		tok, err := api.ReadToken(tokenFile)
		if err != nil {
			return err
		}
		c.token = tok
	default:
		if tok, err := api.ReadToken(defaultTokenFile()); err == nil {
			c.token = tok
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if run != nil {
		return run(ctx, c, pos, stdin, stdout, stderr)
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	body, _, err := c.call(ctx, cmd.path(pos))
	if err != nil {
		return err // printed once, by main
	}
	return printBody(stdout, body)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
