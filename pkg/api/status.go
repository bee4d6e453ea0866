package api

import (
	"html/template"
	"net/http"
	"sort"

	"github.com/labstack/echo/v4"
)

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>p2pd agent</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}code{word-break:break-all}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}</style></head>
<body><h1>p2pd agent {{.Version}}</h1>
<p>Node id <code>{{.ID}}</code></p>
<p>Peer address <code>{{.Addr}}</code></p>
<h2>Interfaces</h2><table><tr><th>name</th><th>external</th><th>NAT</th><th>delta</th><th>mapping / filtering</th></tr>
{{range .Ifs}}<tr><td>{{.Name}}</td><td>{{range $af, $rs := .Routes}}{{range $rs}}{{.ExtIP}} {{end}}{{end}}</td>
<td>{{.NAT.Type}} {{.NAT.Info}}</td><td>{{.NAT.Delta.Type}} {{.NAT.DeltaInfo}} {{.NAT.Delta.Value}}</td><td>{{.NAT.Mapping}} / {{.NAT.Filtering}}</td></tr>{{end}}</table>
<h2>Connections</h2><table><tr><th>name</th><th>peer</th><th>how</th><th>remote</th></tr>
{{range .Cons}}<tr><td>{{.Name}}</td><td><code>{{.Peer}}</code></td><td>{{.How}}</td><td>{{.Remote}}</td></tr>{{else}}<tr><td colspan=4>none</td></tr>{{end}}</table>
<p><a href="/metrics">metrics</a> · <a href="/p2p/addr">/p2p/addr</a> · <a href="/p2p/ifs">/p2p/ifs</a> · <a href="/p2p/cons">/p2p/cons</a></p>
</body></html>`))

type statusCon struct{ Name, Peer, How, Remote string }

func (s *Server) status(c echo.Context) error {
	addr := "(not known yet)"
	if a, err := s.cfg.Backend.Address(); err == nil {
		addr = a.String()
	}
	var cons []statusCon
	for _, cn := range s.cons.all() {
		how := cn.report.Winner
		if cn.inbound {
			how = "inbound " + how
		}
		cons = append(cons, statusCon{cn.name, cn.pipe.Peer, how, cn.pipe.RemoteAddr().String()})
	}
	sort.Slice(cons, func(i, j int) bool { return cons[i].Name < cons[j].Name })
	c.Response().Header().Set("Content-Type", "text/html; charset=utf-8")
	c.Response().WriteHeader(http.StatusOK)
	return statusPage.Execute(c.Response(), map[string]any{
		"Version": s.cfg.Version, "ID": s.cfg.Backend.ID(), "Addr": addr,
		"Ifs": s.cfg.Backend.Interfaces(), "Cons": cons,
	})
}
