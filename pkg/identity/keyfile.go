package identity

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyFileName is the name of the key file inside the state directory.
const KeyFileName = "node.key"

// keyPrefix starts the single line of a key file; the rest of the line is the
// standard base64 of the 32-byte private key.
const keyPrefix = "x25519-private:"

// ErrKeyFile is wrapped by errors about a key file that exists but cannot be
// used (malformed, or readable by group/others).
var ErrKeyFile = errors.New("identity: unusable key file")

// Load reads the key pair from <dir>/node.key. It refuses a file that other
// users may read or write (on Unix any group or other permission bit, on
// Windows an access list granting anyone but the current user, SYSTEM and
// Administrators), and one that is not a well-formed key file.
func Load(dir string) (*Identity, error) {
	path := filepath.Join(dir, KeyFileName)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity: load: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity: load: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFile, path)
	}
	if err := checkPrivate(f, st, path); err != nil {
		return nil, err
	}
	buf, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("identity: load %s: %w", path, err)
	}
	id, err := ParseKeyFile(buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// LoadOrCreate loads <dir>/node.key, or, when it does not exist, creates dir
// and a new key file in it that only this user may open (mode 0700 and 0600
// on Unix; on Windows a protected access list naming only the user).
// created reports which.
func LoadOrCreate(dir string) (id *Identity, created bool, err error) {
	id, err = Load(dir)
	if err == nil {
		return id, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := makePrivateDir(dir); err != nil {
		return nil, false, fmt.Errorf("identity: create state dir: %w", err)
	}
	id, err = Generate(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	if err := writeKeyFile(dir, id); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			id, err = Load(dir)
			return id, false, err
		}
		return nil, false, err
	}
	return id, true, nil
}

// writeKeyFile writes the key to a temporary file and links it into place,
// so the key file is either absent or complete, and never overwritten.
func writeKeyFile(dir string, id *Identity) error {
	tmp, err := createPrivate(dir)
	if err != nil {
		return fmt.Errorf("identity: create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(MarshalKeyFile(id)); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("identity: write key file: %w", err)
	}
	if err := os.Link(tmp.Name(), filepath.Join(dir, KeyFileName)); err != nil {
		return fmt.Errorf("identity: install key file: %w", err)
	}
	return nil
}

// MarshalKeyFile returns the key file contents for id:
// "x25519-private:<base64 of the private key>\n".
func MarshalKeyFile(id *Identity) []byte {
	return []byte(keyPrefix + base64.StdEncoding.EncodeToString(id.Private[:]) + "\n")
}

// ParseKeyFile parses key file contents (see MarshalKeyFile).
func ParseKeyFile(b []byte) (*Identity, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrKeyFile)
	}
	line := bytes.TrimSuffix(b, []byte("\n"))
	if bytes.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("%w: want a single line", ErrKeyFile)
	}
	rest, ok := bytes.CutPrefix(line, []byte(keyPrefix))
	if !ok {
		return nil, fmt.Errorf("%w: does not start with %q", ErrKeyFile, keyPrefix)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(string(rest))
	if err != nil {
		return nil, fmt.Errorf("%w: base64: %v", ErrKeyFile, err)
	}
	if len(raw) != KeySize {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrKeyFile, len(raw), KeySize)
	}
	var priv [KeySize]byte
	copy(priv[:], raw)
	id, err := FromPrivate(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	return id, nil
}
