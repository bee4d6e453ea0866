//go:build !windows

package identity

import (
	"fmt"
	"io/fs"
	"os"
)

// makePrivateDir creates dir (and parents) mode 0700; an existing dir is
// left as it is.
func makePrivateDir(dir string) error { return os.MkdirAll(dir, 0o700) }

// createPrivate creates a new temporary file in dir that only its owner may
// read or write (os.CreateTemp opens it 0600; the Chmod defeats no umask but
// documents the intent and catches file systems that ignore the mode).
func createPrivate(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, ".node.key.*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// checkPrivate refuses a key file with any group or other permission bit.
func checkPrivate(_ *os.File, st fs.FileInfo, path string) error {
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o; it holds a private key and must be 0600 (run: chmod 600 %s)", ErrKeyFile, path, perm, path)
	}
	return nil
}
