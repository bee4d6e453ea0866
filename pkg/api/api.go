// Package api is the agent's local REST API, compatible with the P2PD
// manual's /p2p/... surface: version, ifs, addr, open, con, sub, send, recv,
// binary, pipe and close, with P2PD's origin rule and error codes (HTTP 200
// with an "error" number). It also lists inbound connections
// (/p2p/cons), and serves /metrics, /healthz and a status page at /.
//
// It is for the local user only: it binds loopback, accepts only loopback
// Host headers (against DNS rebinding) and only loopback origins
// (http://localhost, 127.0.0.1 or [::1], any port) or none. The origin
// "null", which P2PD accepts for local HTML files, is also what any
// sandboxed iframe on any web site sends, so it is refused unless
// Config.AllowNullOrigin is set (see origin.go). Browsers send no Origin on
// plain GETs such as <img src>, so a request a browser marks as coming from
// another site (Sec-Fetch-Site) is refused unless it is a CORS request with
// an allowed Origin: a web page cannot drive the agent by embedding URLs.
// An optional bearer token (Config.Token) keeps other local users and
// programs out too.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// P2PD error numbers, returned in the "error" field with HTTP 200.
const (
	errOK         = 0
	errNoMethod   = 1
	errExists     = 2
	errConnect    = 3
	errNotFound   = 4
	errTimeout    = 5 // also "invalid origin", as in P2PD
	errEmpty      = 6 // nothing queued, not subscribed, or no Content-Length
	errBadLength  = 7
	errSendFailed = 8
	errBadInput   = 9
)

// Backend is what the API drives (*agent.Agent).
type Backend interface {
	ID() string
	Address() (peeraddr.Address, error)
	Interfaces() []netif.Interface
	ConnectWith(ctx context.Context, addr string, o node.Options) (*agent.Pipe, node.Report, error)
}

// Config configures the API server.
type Config struct {
	Backend Backend
	// Listen addresses; default 127.0.0.1:12333 and [::1]:12333.
	Listen []string
	// Gatherer serves /metrics (nil: none).
	Gatherer prometheus.Gatherer
	// ConnectTimeout bounds /p2p/open (default 60 s).
	ConnectTimeout time.Duration
	Version        string
	// AllowNullOrigin accepts the origin "null" (P2PD's rule, for HTML files
	// opened from disk). Off by default: sandboxed iframes on any web site
	// send "null" too, so with it on any page can drive the API.
	AllowNullOrigin bool
	// Token, when set, must come with every request (except /healthz and
	// CORS preflights) as "Authorization: Bearer <token>" or, for pages
	// and EventSource that cannot set headers, a "token" query parameter.
	Token string
	Log   *slog.Logger
}

// Server is the running API.
type Server struct {
	cfg      Config
	e        *echo.Echo
	cons     *registry
	events   *hub
	failures *failures
	accepts  *acceptors
	lns      []net.Listener
	srv      *http.Server
	ctx      context.Context // ends at Close: raw pipes and event streams
	cancel   context.CancelFunc
}

// New builds the API; Inbound should receive the agent's inbound pipes.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("api: config needs a Backend")
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"127.0.0.1:12333", "[::1]:12333"}
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 60 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, e: echo.New(), events: newHub()}
	s.cons = newRegistry(s.events.changed)
	s.failures = &failures{notify: s.events.changed}
	s.accepts = &acceptors{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.e.HideBanner, s.e.HidePort = true, true
	s.e.HTTPErrorHandler = func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		msg := "No API method found."
		var he *echo.HTTPError
		if errors.As(err, &he) && he.Code != http.StatusNotFound && he.Code != http.StatusMethodNotAllowed {
			msg = fmt.Sprint(he.Message)
		}
		_ = fail(c, errNoMethod, msg)
	}
	s.e.Pre(s.guard)
	s.routes()
	return s, nil
}

// Inbound registers an inbound pipe under an automatic name (in1, in2, ...)
// so the application can use it through the API.
func (s *Server) Inbound(p *agent.Pipe) {
	cn := s.cons.addInbound(p)
	s.cfg.Log.Info("inbound pipe", "name", cn.name, "peer", p.Peer, "kind", p.Kind)
	s.accepts.offer(cn, s.cons.claim)
}

// Start listens on every configured address; it fails if any is not
// loopback or none can be opened.
func (s *Server) Start() error {
	if err := CheckListen(s.cfg.Listen); err != nil {
		return err
	}
	for _, a := range s.cfg.Listen {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			s.cfg.Log.Warn("api listener not opened", "addr", a, "err", err)
			continue
		}
		s.lns = append(s.lns, newSniffListener(ln, s))
	}
	if len(s.lns) == 0 {
		return fmt.Errorf("api: no listener could be opened on %s", strings.Join(s.cfg.Listen, ", "))
	}
	s.srv = &http.Server{Handler: s.e, ReadHeaderTimeout: sniffTimeout, MaxHeaderBytes: maxHead}
	// One request per connection, as in P2PD: the sniffer sees every
	// request head, so every error is P2PD's JSON.
	s.srv.SetKeepAlivesEnabled(false)
	for _, ln := range s.lns {
		go func() { _ = s.srv.Serve(ln) }()
	}
	return nil
}

// CheckListen refuses listen addresses that are not loopback ip:port.
func CheckListen(addrs []string) error {
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("api: listen address %q: %w", a, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("api: listen address %q is not loopback: the API is for this machine only", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("api: listen address %q: bad port", a)
		}
	}
	return nil
}

// Addrs are the bound addresses.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, 0, len(s.lns))
	for _, ln := range s.lns {
		out = append(out, ln.Addr())
	}
	return out
}

// Close stops the server and closes every named pipe.
func (s *Server) Close() error {
	var err error
	s.cancel()
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = s.srv.Shutdown(ctx)
	}
	s.cons.closeAll()
	return err
}

// Handler exposes the HTTP handler (tests).
func (s *Server) Handler() http.Handler { return s.e }

// reply writes P2PD's JSON: HTTP 200, indent 4, keys sorted.
func reply(c echo.Context, body map[string]any) error {
	b, err := marshal(body)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/json", b)
}

func marshal(body map[string]any) ([]byte, error) { return json.MarshalIndent(body, "", "    ") }

func fail(c echo.Context, code int, msg string) error {
	return reply(c, map[string]any{"error": code, "msg": msg})
}

// guard applies the loopback Host check, the origin rule and the token,
// answers CORS preflights, and sets the headers every response carries.
func (s *Server) guard(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !loopbackHost(r.Host) {
			return fail(c, errTimeout, "Invalid host.")
		}
		origin := r.Header.Get("Origin")
		if !s.originAllowed(origin) {
			return fail(c, errTimeout, "Invalid origin.")
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "none" && site != "same-origin" &&
			(origin == "" || r.Header.Get("Sec-Fetch-Mode") != "cors") {
			return fail(c, errTimeout, "Invalid origin: cross-site request without CORS.")
		}
		h := c.Response().Header()
		if origin != "" {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
		}
		h.Set("X-Client-Tup", r.RemoteAddr)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			preflight(h, r)
			return c.NoContent(http.StatusOK)
		}
		if r.URL.Path != "/healthz" && !s.tokenOK(r) {
			return fail(c, errTimeout, "Missing or wrong API token (Authorization: Bearer <token>).")
		}
		return next(c)
	}
}

func (s *Server) routes() {
	e := s.e
	for _, p := range []string{"/version", "/p2p/version"} {
		e.GET(p, s.version)
	}
	for _, p := range []string{"/ifs", "/p2p/ifs"} {
		e.GET(p, s.ifs)
	}
	e.GET("/p2p/addr", s.addr)
	e.GET("/p2p/open/:name/*", s.open)
	e.GET("/p2p/con/:name", s.con)
	e.GET("/p2p/cons", s.list)
	e.GET("/p2p/events", s.eventStream)
	e.GET("/p2p/sub/:name", s.sub)
	e.GET("/p2p/sub/:name/*", s.sub)
	e.DELETE("/p2p/sub/:name", s.unsub)
	e.DELETE("/p2p/sub/:name/*", s.unsub)
	e.GET("/p2p/send/:name/*", s.send)
	e.GET("/p2p/recv/:name", s.recv)
	e.GET("/p2p/recv/:name/*", s.recv)
	e.POST("/p2p/binary/:name", s.binaryPost)
	e.GET("/p2p/binary/:name", s.binaryGet)
	e.GET("/p2p/binary/:name/*", s.binaryGet)
	e.GET("/p2p/pipe/:name", s.pipe)
	e.GET("/p2p/accept", s.accept)
	e.GET("/p2p/accept/*", s.accept)
	e.GET("/p2p/close/:name", s.closeCon)
	e.GET("/p2p/plan/*", s.plan)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	if s.cfg.Gatherer != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{})))
	}
	e.GET("/", s.status)
	e.RouteNotFound("/*", func(c echo.Context) error { return fail(c, errNoMethod, "No API method found.") })
}
