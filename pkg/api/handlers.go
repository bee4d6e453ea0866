package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"net/netip"

	"github.com/labstack/echo/v4"
	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/node/resume"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/pipe"
)

// maxBinary bounds a POSTed message: what a pipe carries.
const maxBinary = agent.MaxMessage

func (s *Server) version(c echo.Context) error {
	return reply(c, map[string]any{"title": "p2pd", "author": "p2pd developers", "version": s.cfg.Version, "error": errOK})
}

func (s *Server) ifs(c echo.Context) error {
	ifs := s.cfg.Backend.Interfaces()
	raw, err := json.Marshal(ifs)
	if err != nil {
		return fail(c, errNotFound, "interfaces could not be serialised: "+err.Error())
	}
	return reply(c, map[string]any{"ifs": json.RawMessage(raw), "error": errOK})
}

func (s *Server) addr(c echo.Context) error {
	a, err := s.cfg.Backend.Address()
	if err != nil {
		return fail(c, errTimeout, "no address yet: "+err.Error())
	}
	return reply(c, map[string]any{"addr": a.String(), "node_id": s.cfg.Backend.ID(), "error": errOK})
}

// segments returns the decoded path segments after the first skip ones.
// Decoding per segment keeps %2F inside a segment (e.g. in a regex).
func segments(c echo.Context, skip int) ([]string, error) {
	return splitPath(c.Request().URL.EscapedPath(), skip)
}

func splitPath(escaped string, skip int) ([]string, error) {
	parts := strings.Split(strings.Trim(escaped, "/"), "/")
	if len(parts) < skip {
		return nil, nil
	}
	out := make([]string, 0, len(parts)-skip)
	for _, p := range parts[skip:] {
		d, err := url.PathUnescape(p)
		if err != nil {
			return nil, fmt.Errorf("bad path segment %q: %w", p, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// name is the decoded connection name (the segment after the method).
func name(c echo.Context) (string, error) {
	parts, err := segments(c, 2)
	if err != nil {
		return "", err
	}
	if len(parts) == 0 {
		return "", nil
	}
	return parts[0], checkName(parts[0])
}

// checkName refuses names that cannot be shown or stored as text.
func checkName(n string) error {
	if !utf8.ValidString(n) {
		return fmt.Errorf("connection name %q is not valid UTF-8", n)
	}
	return nil
}

// options parses /key/value pairs after the name: timeout, msg_p, addr_p.
type options struct {
	sub     pipe.Sub
	timeout time.Duration
}

func parseOptions(c echo.Context) (options, error) {
	parts, err := segments(c, 3)
	if err != nil {
		return options{}, err
	}
	return parsePairs(parts)
}

func parsePairs(parts []string) (options, error) {
	var o options
	if len(parts)%2 != 0 {
		return o, fmt.Errorf("options come in /key/value pairs; %q has no value", parts[len(parts)-1])
	}
	for i := 0; i < len(parts); i += 2 {
		k, v := parts[i], parts[i+1]
		switch k {
		case "msg_p":
			o.sub.Msg = v
		case "addr_p":
			o.sub.Addr = v
		case "timeout":
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n < 0 || n > 3600 {
				return o, fmt.Errorf("timeout %q: want seconds between 0 and 3600", v)
			}
			o.timeout = time.Duration(n * float64(time.Second))
		default:
			return o, fmt.Errorf("unknown option %q (msg_p, addr_p, timeout)", k)
		}
	}
	return o, nil
}

func (s *Server) open(c echo.Context) error {
	parts, err := segments(c, 2)
	if err != nil || len(parts) < 2 {
		return fail(c, errBadInput, "use /p2p/open/<name>/<peer address or self>")
	}
	n, target := parts[0], strings.Join(parts[1:], "/")
	if n == "" || len(n) > 64 {
		return fail(c, errBadInput, "connection names are 1-64 bytes")
	}
	if err := checkName(n); err != nil {
		return fail(c, errBadInput, err.Error())
	}
	if target == "self" {
		a, err := s.cfg.Backend.Address()
		if err != nil {
			return fail(c, errConnect, "no own address yet: "+err.Error())
		}
		target = a.String()
	}
	opts, err := connectOptions(c.QueryParams())
	if err != nil {
		return fail(c, errBadInput, err.Error())
	}
	if !s.cons.reserve(n) {
		return fail(c, errExists, fmt.Sprintf("a connection named %q exists", n))
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.ConnectTimeout)
	defer cancel()
	if _, perr := peeraddr.Parse(target); perr != nil {
		s.cons.release(n)
		msg := fmt.Sprintf("%v; want a p2pd address as /p2p/addr prints it: <signal offsets>-<IPv4 blocks or 0>-<IPv6 blocks or 0>-<52-character node id> "+
			"(P2PD's own addresses, such as the manual's samples, have no public-key node id and cannot be used)", perr)
		s.failures.add(n, target, msg, node.Report{})
		return reply(c, map[string]any{"error": errConnect, "msg": msg, "name": n})
	}
	p, rep, err := s.cfg.Backend.ConnectWith(ctx, target, opts)
	if err != nil {
		s.cons.release(n)
		s.failures.add(n, target, err.Error(), rep)
		return reply(c, map[string]any{"error": errConnect, "msg": err.Error(), "name": n, "report": rep})
	}
	cn := &con{name: n, pipe: p, report: rep, opened: time.Now()}
	s.cons.add(cn)
	return reply(c, s.conInfo(cn))
}

// conInfo is P2PD's con_info (name, laddr, raddr, route, if, strategy)
// plus the peer's node id, direction, connect report, open time and drops.
func (s *Server) conInfo(cn *con) map[string]any {
	ra := cn.pipe.RemoteAddr()
	la := cn.pipe.Local
	info := map[string]any{
		"error": errOK, "name": cn.name, "peer": cn.pipe.Peer, "inbound": cn.inbound,
		"strategy": cn.report.Winner, "report": cn.pipe.FullReport(), "path": cn.pipe.Path(),
		"raddr": []any{ra.Addr().String(), ra.Port()}, "laddr": []any{la.Addr().String(), la.Port()},
		"opened": cn.opened.UTC().Format(time.RFC3339), "dropped": cn.pipe.Dropped(),
		"route": nil, "if": nil, "stats": cn.pipe.Stats(),
	}
	if ifc, r, ok := routeOf(s.cfg.Backend.Interfaces(), la.Addr()); ok {
		info["route"] = r
		info["if"] = map[string]any{"name": ifc.Name, "offset": ifc.Index}
	}
	return info
}

// routeOf finds the interface and route that hold a local address.
func routeOf(ifs []netif.Interface, local netip.Addr) (netif.Interface, netif.Route, bool) {
	local = local.Unmap()
	for _, contains := range []bool{false, true} {
		for _, ifc := range ifs {
			for _, rs := range ifc.Routes {
				for _, r := range rs {
					for _, p := range r.NIC {
						if p.Addr() == local || (contains && p.Contains(local)) {
							return ifc, r, true
						}
					}
				}
			}
		}
	}
	return netif.Interface{}, netif.Route{}, false
}

func (s *Server) lookup(c echo.Context) (*con, error) {
	n, err := name(c)
	if err != nil {
		return nil, fail(c, errBadInput, err.Error())
	}
	cn := s.cons.get(n)
	if cn == nil {
		if why, ok := s.cons.closedWhy(n); ok {
			return nil, fail(c, errNotFound, fmt.Sprintf("connection %q is closed (%s)", n, why))
		}
		return nil, fail(c, errNotFound, fmt.Sprintf("no connection named %q", n))
	}
	return cn, nil
}

func (s *Server) con(c echo.Context) error {
	cn, err := s.lookup(c)
	if cn == nil {
		return err
	}
	return reply(c, s.conInfo(cn))
}

func (s *Server) list(c echo.Context) error {
	cons := s.cons.all()
	sort.Slice(cons, func(i, j int) bool { return cons[i].name < cons[j].name })
	out := make([]map[string]any, 0, len(cons))
	for _, cn := range cons {
		info := s.conInfo(cn)
		delete(info, "error")
		out = append(out, info)
	}
	return reply(c, map[string]any{"cons": out, "error": errOK})
}

func (s *Server) sub(c echo.Context) error {
	return s.subscription(c, "sub", func(p *agent.Pipe, sub pipe.Sub) error { return p.Subscribe(sub) }, errBadInput)
}

func (s *Server) unsub(c echo.Context) error {
	return s.subscription(c, "unsub", func(p *agent.Pipe, sub pipe.Sub) error { return p.Unsubscribe(sub) }, errEmpty)
}

// subscription applies op to the subscription named by the path's options
// and answers {name, <key>: [msg_p, addr_p]}.
func (s *Server) subscription(c echo.Context, key string, op func(*agent.Pipe, pipe.Sub) error, code int) error {
	cn, err := s.lookup(c)
	if cn == nil {
		return err
	}
	o, err := parseOptions(c)
	if err != nil {
		return fail(c, errBadInput, err.Error())
	}
	if err := op(cn.pipe, o.sub); err != nil {
		return fail(c, code, err.Error())
	}
	return reply(c, map[string]any{"name": cn.name, key: []string{o.sub.Msg, o.sub.Addr}, "error": errOK})
}

func (s *Server) sendData(c echo.Context, cn *con, data []byte) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 10*time.Second)
	defer cancel()
	if err := cn.pipe.Send(ctx, data); err != nil {
		return fail(c, errSendFailed, "send failed: "+err.Error())
	}
	return reply(c, map[string]any{"name": cn.name, "sent": len(data), "error": errOK})
}

func (s *Server) send(c echo.Context) error {
	cn, err := s.lookup(c)
	if cn == nil {
		return err
	}
	parts, err := segments(c, 3)
	if err != nil {
		return fail(c, errBadInput, err.Error())
	}
	return s.sendData(c, cn, []byte(strings.Join(parts, "/")))
}

// next pops the next message of the options' subscription.
func (s *Server) next(c echo.Context) (*con, pipe.Message, error) {
	cn, err := s.lookup(c)
	if cn == nil {
		return nil, pipe.Message{}, err
	}
	o, err := parseOptions(c)
	if err != nil {
		return nil, pipe.Message{}, fail(c, errBadInput, err.Error())
	}
	if o.timeout == 0 {
		o.timeout = 2 * time.Second
	}
	m, err := cn.pipe.Recv(c.Request().Context(), o.sub, o.timeout)
	switch {
	case errors.Is(err, pipe.ErrTimeout):
		return nil, m, fail(c, errTimeout, "nothing received before the timeout")
	case err != nil:
		return nil, m, fail(c, errEmpty, err.Error())
	}
	return cn, m, nil
}

func (s *Server) recv(c echo.Context) error {
	cn, m, err := s.next(c)
	if cn == nil {
		return err
	}
	return reply(c, map[string]any{"data": string(m.Data), "client_tup": []any{m.From.Addr().String(), m.From.Port()}, "error": errOK})
}

func (s *Server) binaryGet(c echo.Context) error {
	cn, m, err := s.next(c)
	if cn == nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/octet-stream", m.Data)
}

func (s *Server) binaryPost(c echo.Context) error {
	cn, err := s.lookup(c)
	if cn == nil {
		return err
	}
	r := c.Request()
	if r.ContentLength < 0 {
		return fail(c, errEmpty, "POST needs a Content-Length")
	}
	if r.ContentLength == 0 || r.ContentLength > maxBinary {
		return fail(c, errBadLength, fmt.Sprintf("Content-Length must be 1-%d", maxBinary))
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
	if err != nil || int64(len(data)) != r.ContentLength {
		return fail(c, errBadLength, "body shorter than its Content-Length")
	}
	return s.sendData(c, cn, data)
}

func (s *Server) closeCon(c echo.Context) error {
	cn, err := s.lookup(c)
	if cn == nil {
		return err
	}
	err = cn.pipe.Close()
	s.cons.remove(cn.name, cn)
	if errors.Is(err, resume.ErrUnread) {
		// Closed all the same, but what was sent may never arrive: say so
		// rather than answer a plain success.
		return reply(c, map[string]any{"closed": cn.name, "error": errSendFailed,
			"msg": "closed before the peer read everything sent (" + err.Error() + ")"})
	}
	if err != nil {
		s.cfg.Log.Info("api: close", "name", cn.name, "err", err)
	}
	return reply(c, map[string]any{"closed": cn.name, "error": errOK})
}
