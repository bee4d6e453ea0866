package api

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// statusPage is the live status page: plain HTML and JavaScript that
// renders the /p2p/events stream (no build step).
//
//go:embed status.html
var statusPage []byte

func (s *Server) status(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	return c.Blob(http.StatusOK, "text/html; charset=utf-8", statusPage)
}
