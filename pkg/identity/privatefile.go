package identity

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WritePrivate creates dir (private, as for the key) and the new file
// dir/name holding data, which only this user may open: mode 0600 on Unix,
// an access list naming only the user on Windows. An existing file is never
// overwritten (the error then matches fs.ErrExist).
func WritePrivate(dir, name string, data []byte) error {
	if err := makePrivateDir(dir); err != nil {
		return fmt.Errorf("identity: create %s: %w", dir, err)
	}
	tmp, err := createPrivate(dir)
	if err != nil {
		return fmt.Errorf("identity: create %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("identity: write %s: %w", name, err)
	}
	if err := os.Link(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("identity: install %s: %w", name, err)
	}
	return nil
}

// ReadPrivate reads at most max bytes of path, refusing a file that other
// users may open (the key file's rule).
func ReadPrivate(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("identity: %s is not a regular file", path)
	}
	if err := checkPrivate(f, st, path); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return nil, fmt.Errorf("identity: read %s: %w", path, err)
	}
	return b, nil
}
