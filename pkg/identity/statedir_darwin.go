package identity

import (
	"os"
	"path/filepath"
)

// DefaultDir is where the agent keeps its state (the node key) unless told
// otherwise: ~/Library/Application Support/p2pd, or
// /Library/Application Support/p2pd for a user without a home (a daemon).
func DefaultDir() string {
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "Library", "Application Support", "p2pd")
	}
	return "/Library/Application Support/p2pd"
}
