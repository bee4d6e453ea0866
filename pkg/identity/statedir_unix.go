//go:build !windows && !darwin

package identity

import (
	"os"
	"path/filepath"
)

// DefaultDir is where the agent keeps its state (the node key) unless told
// otherwise: $XDG_STATE_HOME/p2pd, else ~/.local/state/p2pd (the XDG base
// directory default), else /var/lib/p2pd for a user without a home.
func DefaultDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "p2pd")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "p2pd")
	}
	return "/var/lib/p2pd"
}
