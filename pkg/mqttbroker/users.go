package mqttbroker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// User is one entry of a users file: "name:bcrypt-hash" or
// "name:bcrypt-hash:admin".
type User struct {
	Name  string
	Hash  []byte
	Admin bool
}

// Users maps names to entries.
type Users map[string]User

// ValidUsername reports whether name can be stored in a users file: 1-128
// bytes, no colon, no whitespace or control characters.
func ValidUsername(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for _, c := range name {
		if c == ':' || c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// HashPassword returns a bcrypt hash of password at cost (0 = bcrypt's default).
func HashPassword(password string, cost int) ([]byte, error) {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return nil, fmt.Errorf("mqttbroker: hash password: %w", err)
	}
	return h, nil
}

// LoadUsers reads a users file.
func LoadUsers(path string) (Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mqttbroker: users: %w", err)
	}
	u, err := ParseUsers(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("mqttbroker: users %s: %w", path, err)
	}
	return u, nil
}

// ParseUsers parses a users file; blank lines and lines starting with # are
// ignored. Errors name the line but never echo a hash.
func ParseUsers(r io.Reader) (Users, error) {
	users := Users{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("line %d: want name:hash or name:hash:admin", n)
		}
		u := User{Name: f[0], Hash: []byte(f[1])}
		if !ValidUsername(u.Name) {
			return nil, fmt.Errorf("line %d: bad user name (1-128 bytes, no colon or spaces)", n)
		}
		if _, err := bcrypt.Cost(u.Hash); err != nil {
			return nil, fmt.Errorf("line %d: user %q: not a bcrypt hash (make entries with `mqttd passwd`)", n, u.Name)
		}
		if len(f) == 3 {
			if f[2] != "admin" {
				return nil, fmt.Errorf("line %d: user %q: third field %q: only \"admin\" is known", n, u.Name, f[2])
			}
			u.Admin = true
		}
		if _, dup := users[u.Name]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice", n, u.Name)
		}
		users[u.Name] = u
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return users, nil
}

// Write writes users in the file format, sorted by name.
func (us Users) Write(w io.Writer) error {
	names := make([]string, 0, len(us))
	for n := range us {
		names = append(names, n)
	}
	sort.Strings(names)
	bw := bufio.NewWriter(w)
	for _, n := range names {
		u := us[n]
		fmt.Fprintf(bw, "%s:%s", u.Name, u.Hash)
		if u.Admin {
			bw.WriteString(":admin")
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// ReadPassword returns the first line of r without its line ending.
func ReadPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("mqttbroker: read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("mqttbroker: read password: empty (give it on the first line of stdin)")
	}
	return line, nil
}

// Passwd adds, replaces or (when del is set) removes user name in the users
// file at path, creating it (mode 0600) if needed. The file is replaced
// atomically.
func Passwd(path, name, password string, admin, del bool, cost int) error {
	if !ValidUsername(name) {
		return errors.New("mqttbroker: passwd: bad user name (1-128 bytes, no colon or spaces)")
	}
	users := Users{}
	if _, err := os.Stat(path); err == nil {
		if users, err = LoadUsers(path); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mqttbroker: passwd: %w", err)
	}
	if del {
		if _, ok := users[name]; !ok {
			return fmt.Errorf("mqttbroker: passwd: no user %q in %s", name, path)
		}
		delete(users, name)
	} else {
		if password == "" {
			return errors.New("mqttbroker: passwd: empty password")
		}
		h, err := HashPassword(password, cost)
		if err != nil {
			return err
		}
		users[name] = User{Name: name, Hash: h, Admin: admin}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".users-*")
	if err != nil {
		return fmt.Errorf("mqttbroker: passwd: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("mqttbroker: passwd: %w", err)
	}
	if err := users.Write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("mqttbroker: passwd: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("mqttbroker: passwd: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("mqttbroker: passwd: %w", err)
	}
	return nil
}
