package identity

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNodeIDRoundTrip(t *testing.T) {
	for i := 0; i < 50; i++ {
		id, err := Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		s := id.NodeID()
		if len(s) != NodeIDLen || strings.ToLower(s) != s {
			t.Fatalf("node id %q: want %d lowercase chars", s, NodeIDLen)
		}
		pub, err := ParseNodeID(s)
		if err != nil {
			t.Fatalf("ParseNodeID(%q): %v", s, err)
		}
		if pub != id.Public {
			t.Fatalf("ParseNodeID(%q) = %x, want %x", s, pub, id.Public)
		}
	}
}

func TestParseNodeIDErrors(t *testing.T) {
	good := NodeID([KeySize]byte{1, 2, 3})
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "length 0"},
		{"short", good[:51], "length 51"},
		{"long", good + "a", "length 53"},
		{"uppercase", strings.ToUpper(good), "lowercase"},
		{"digit 1", "1" + good[1:], "lowercase"},
		{"padding", good[:50] + "==", "lowercase"},
		{"trailing bits", good[:51] + "b", "not canonical"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNodeID(tc.in)
			if !errors.Is(err, ErrBadNodeID) {
				t.Fatalf("ParseNodeID(%q) = %v, want ErrBadNodeID", tc.in, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(tempDir(t), "state", "agent")
	id, created, err := LoadOrCreate(dir)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate: created=%v err=%v", created, err)
	}
	assertPrivate(t, dir)
	assertPrivate(t, filepath.Join(dir, KeyFileName))
	again, created, err := LoadOrCreate(dir)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate: created=%v err=%v", created, err)
	}
	if *again != *id {
		t.Fatal("second start loaded a different key")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want only the key file", len(entries))
	}
}

func TestLoadRefuses(t *testing.T) {
	id, err := Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	good := MarshalKeyFile(id)
	tests := []struct {
		name    string
		content []byte
		expose  func(t *testing.T, path string) // nil: the file stays private
		want    string
	}{
		{"empty", nil, nil, "empty"},
		{"garbage", []byte("hello\n"), nil, "does not start with"},
		{"bad base64", []byte(keyPrefix + "!!!!\n"), nil, "base64"},
		{"short key", []byte(keyPrefix + "AAAA\n"), nil, "3 bytes"},
		{"two lines", append(bytes.Clone(good), good...), nil, "single line"},
	}
	for _, e := range exposures() { // per OS: modes on Unix, access lists on Windows
		tests = append(tests, struct {
			name    string
			content []byte
			expose  func(t *testing.T, path string)
			want    string
		}{e.name, good, e.expose, e.want})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			path := filepath.Join(dir, KeyFileName)
			writePrivate(t, path, tc.content)
			if tc.expose != nil {
				tc.expose(t, path)
			}
			_, _, err := LoadOrCreate(dir)
			if !errors.Is(err, ErrKeyFile) {
				t.Fatalf("LoadOrCreate = %v, want ErrKeyFile", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, tc.content) {
				t.Fatal("a refused key file was modified")
			}
		})
	}
}

// writePrivate writes a key file the way LoadOrCreate would: readable by
// its owner only.
func writePrivate(t *testing.T, path string, content []byte) {
	t.Helper()
	f, err := createPrivate(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// exposure makes a private key file readable by others.
type exposure struct {
	name   string
	expose func(t *testing.T, path string)
	want   string // in the error Load returns
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(tempDir(t))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of empty dir = %v, want ErrNotExist", err)
	}
}

func FuzzParseNodeID(f *testing.F) {
	f.Add(NodeID([KeySize]byte{9}))
	f.Add("")
	f.Add(strings.Repeat("a", NodeIDLen))
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParseNodeID(s)
		if err != nil {
			return
		}
		if NodeID(pub) != s {
			t.Fatalf("accepted %q but it encodes back as %q", s, NodeID(pub))
		}
	})
}

func FuzzParseKeyFile(f *testing.F) {
	id, _ := FromPrivate([KeySize]byte{7})
	f.Add(MarshalKeyFile(id))
	f.Add([]byte(keyPrefix))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParseKeyFile(b)
		if err != nil {
			return
		}
		back, err := ParseKeyFile(MarshalKeyFile(id))
		if err != nil || *back != *id {
			t.Fatalf("key file does not round trip: %v", err)
		}
	})
}
