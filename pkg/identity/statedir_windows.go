package identity

import (
	"os"
	"path/filepath"
)

// DefaultDir is where the agent keeps its state (the node key) unless told
// otherwise: %LOCALAPPDATA%\p2pd (per user, not roamed to other machines),
// else %USERPROFILE%\AppData\Local\p2pd, else %ProgramData%\p2pd.
func DefaultDir() string {
	if d := os.Getenv("LOCALAPPDATA"); filepath.IsAbs(d) {
		return filepath.Join(d, "p2pd")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "AppData", "Local", "p2pd")
	}
	if d := os.Getenv("ProgramData"); filepath.IsAbs(d) {
		return filepath.Join(d, "p2pd")
	}
	return `C:\ProgramData\p2pd`
}
