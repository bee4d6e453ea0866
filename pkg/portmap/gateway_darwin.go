package portmap

import "golang.org/x/sys/unix"

// scopedRoute marks macOS's per-interface copies of the default route
// (RTF_IFSCOPE); the unscoped one is the route the system uses.
const scopedRoute = unix.RTF_IFSCOPE
