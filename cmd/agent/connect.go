package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

type connectOpts struct {
	accept  bool
	wait    bool
	name    string
	timeout time.Duration
}

func connectCommand(fs *flag.FlagSet) runFunc {
	o := &connectOpts{}
	fs.BoolVar(&o.accept, "accept", false, "take the next inbound connection instead of opening one (no ADDR); ends when the peer closes")
	fs.BoolVar(&o.wait, "wait", false, "after stdin ends, keep printing what arrives until the peer closes (default: close once stdin is sent)")
	fs.StringVar(&o.name, "name", "", "name for the connection (default connect-<pid>)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long --accept waits for an inbound connection")
	return func(ctx context.Context, c *apiClient, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
		return connect(ctx, c, *o, args, stdin, stdout, stderr)
	}
}

// connect is netcat over a p2p pipe, through the agent's pipe relay.
//
// Without --accept it opens a connection to ADDR and relays stdin to it
// and what it receives to stdout; when stdin ends it waits until the agent
// has sent everything, then closes the connection (--wait: until the peer
// closes). With --accept it waits for the next inbound connection and
// relays it until the peer closes; the end of stdin only stops sending.
func connect(ctx context.Context, c *apiClient, o connectOpts, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if o.accept {
		if len(args) != 0 {
			return errors.New("usage: agent connect --accept (no address)")
		}
		return acceptPipe(ctx, c, o, stdin, stdout, stderr)
	}
	if len(args) != 1 {
		return fmt.Errorf("usage: agent %s", connectUsage)
	}
	name := o.name
	if name == "" {
		name = fmt.Sprintf("connect-%d", os.Getpid())
	}
	octx, cancel := context.WithTimeout(ctx, 90*time.Second)
	_, info, err := c.call(octx, "/p2p/open/"+esc(name)+"/"+esc(args[0]))
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "agent: connected to %v (%v), connection %q\n", info["peer"], info["strategy"], name)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, _ = c.call(cctx, "/p2p/close/"+esc(name))
	}()
	conn, err := c.dialPipe(ctx, "/p2p/pipe/"+esc(name))
	if err != nil {
		return err
	}
	defer conn.Close()
	received := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdout, conn)
		received <- err
	}()
	sent, err := io.Copy(conn, stdin)
	if err != nil {
		return fmt.Errorf("connect: sending: %w", err)
	}
	if o.wait {
		select {
		case err := <-received:
			return ignoreClosed(err)
		case <-ctx.Done():
			return nil
		}
	}
	return c.waitSent(ctx, name, sent, received)
}

// waitSent waits until the connection has sent at least n payload bytes
// (what stdin gave the relay), so closing it loses nothing.
func (c *apiClient) waitSent(ctx context.Context, name string, n int64, received <-chan error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, info, err := c.call(cctx, "/p2p/con/"+esc(name))
		cancel()
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		stats, _ := info["stats"].(map[string]any)
		sent, _ := stats["sent"].(map[string]any)
		if b, _ := sent["bytes"].(float64); int64(b) >= n {
			return nil
		}
		select {
		case err := <-received: // the relay or the peer ended first
			return fmt.Errorf("connect: the connection ended before stdin was sent: %v", ignoreClosed(err))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func acceptPipe(ctx context.Context, c *apiClient, o connectOpts, stdin io.Reader, stdout, stderr io.Writer) error {
	path := fmt.Sprintf("/p2p/accept/timeout/%g", o.timeout.Seconds())
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := c.writeRequest(conn, path); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("connect: accept: %w", err)
	}
	if resp.Header.Get("X-P2pd-Name") == "" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("connect: accept: %s", strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(stderr, "agent: accepted %s from %s\n", resp.Header.Get("X-P2pd-Name"), resp.Header.Get("X-P2pd-Peer"))
	go func() { _, _ = io.Copy(conn, stdin) }() // stdin's end only stops sending
	_, err = io.Copy(stdout, resp.Body)
	return ignoreClosed(err)
}

// dialPipe opens a raw connection to the API and sends a pipe request; the
// connection is then the relay (no HTTP response comes back).
func (c *apiClient) dialPipe(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.writeRequest(conn, path); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (c *apiClient) dial(ctx context.Context) (net.Conn, error) {
	u, err := url.Parse(c.base)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("is the agent running? %w", err)
	}
	return conn, nil
}

func (c *apiClient) writeRequest(conn net.Conn, path string) error {
	u, _ := url.Parse(c.base)
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	if c.token != "" {
		req += "Authorization: Bearer " + c.token + "\r\n"
	}
	_, err := io.WriteString(conn, req+"\r\n")
	return err
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
