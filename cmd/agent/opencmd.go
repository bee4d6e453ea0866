package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"time"
)

const openUsage = "open [--strategies S,..] [--timeout D] NAME ADDR|self   connect to a peer and name the connection"

// openCommand is `agent open`: /p2p/open with the per-connect options.
func openCommand(fs *flag.FlagSet) runFunc {
	strategies := fs.String("strategies", "", "strategies to race, in priority order (e.g. relay,direct); default: every configured one")
	timeout := fs.Duration("timeout", 0, "deadline of each strategy (e.g. 3s); default: each strategy's own")
	noStagger := fs.Bool("no-stagger", false, "start every strategy at once instead of staggered")
	return func(ctx context.Context, c *apiClient, args []string, _ io.Reader, stdout, _ io.Writer) error {
		if len(args) != 2 {
			return fmt.Errorf("usage: agent %s", openUsage)
		}
		q := url.Values{}
		if *strategies != "" {
			q.Set("strategies", *strategies)
		}
		if *timeout != 0 {
			q.Set("timeout", timeout.String())
		}
		if *noStagger {
			q.Set("stagger", "0")
		}
		path := "/p2p/open/" + esc(args[0]) + "/" + esc(args[1])
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		body, _, err := c.call(ctx, path)
		if err != nil {
			return err
		}
		return printBody(stdout, body)
	}
}

func printBody(w io.Writer, body []byte) error {
	if _, err := w.Write(body); err != nil {
		return err
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		_, err := fmt.Fprintln(w)
		return err
	}
	return nil
}
