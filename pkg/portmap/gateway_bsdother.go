//go:build dragonfly || freebsd || netbsd || openbsd

package portmap

// scopedRoute: these systems have no interface-scoped default routes.
const scopedRoute = 0
