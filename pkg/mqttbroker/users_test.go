package mqttbroker

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestParseUsers(t *testing.T) {
	h, err := HashPassword("pw", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hash := string(h)
	for _, tc := range []struct {
		name, in, err string
		admins        []string
		n             int
	}{
		{"empty", "", "", nil, 0},
		{"comments", "# x\n\n", "", nil, 0},
		{"one user", "a:" + hash, "", nil, 1},
		{"admin", "a:" + hash + ":admin\nb:" + hash, "", []string{"a"}, 2},
		{"crlf", "a:" + hash + "\r\n", "", nil, 1},
		{"plain password", "a:secret", "not a bcrypt hash", nil, 0},
		{"no hash", "a", "want name:hash", nil, 0},
		{"unknown role", "a:" + hash + ":root", "only \"admin\"", nil, 0},
		{"duplicate", "a:" + hash + "\na:" + hash, "listed twice", nil, 0},
		{"space in name", "a b:" + hash, "bad user name", nil, 0},
		{"too many fields", "a:" + hash + ":admin:x", "want name:hash", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			us, err := ParseUsers(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "$2a$") {
					t.Fatalf("error echoes a hash: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(us) != tc.n {
				t.Fatalf("%d users, want %d", len(us), tc.n)
			}
			for _, a := range tc.admins {
				if !us[a].Admin {
					t.Errorf("%s is not admin", a)
				}
			}
		})
	}
}

func TestPasswd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	steps := []struct {
		name, user, pass string
		admin, del       bool
		wantErr          bool
	}{
		{"create", "alice", "one", false, false, false},
		{"add admin", "root", "two", true, false, false},
		{"replace", "alice", "three", false, false, false},
		{"delete", "root", "", false, true, false},
		{"delete missing", "root", "", false, true, true},
		{"bad name", "a:b", "x", false, false, true},
		{"empty password", "carol", "", false, false, true},
	}
	for _, s := range steps {
		if err := Passwd(path, s.user, s.pass, s.admin, s.del, bcrypt.MinCost); (err != nil) != s.wantErr {
			t.Fatalf("%s: err %v, wantErr %v", s.name, err, s.wantErr)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v, want 0600", st.Mode().Perm())
	}
	us, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 {
		t.Fatalf("users %v, want only alice", us)
	}
	a := newAuthenticator(us)
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{{"alice", "three", true}, {"alice", "three", true}, {"alice", "one", false}, {"root", "two", false}} {
		if _, ok := a.check(tc.user, []byte(tc.pass)); ok != tc.ok {
			t.Errorf("check(%s, %s) = %v, want %v", tc.user, tc.pass, ok, tc.ok)
		}
	}
}

func TestReadPassword(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{{"pw\n", "pw", false}, {"pw\r\nmore", "pw", false}, {"pw", "pw", false}, {"", "", true}, {"\n", "", true}} {
		got, err := ReadPassword(strings.NewReader(tc.in))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ReadPassword(%q) = %q, %v", tc.in, got, err)
		}
	}
}

// FuzzParseUsers: whatever parses writes back and parses to the same users.
func FuzzParseUsers(f *testing.F) {
	f.Add("a:$2a$04$abcdefghijklmnopqrstuu5Qy2lwDYbbYIfp/3wH4ffM2y8hvJ1EW:admin\n")
	f.Add("# c\nb:x")
	f.Fuzz(func(t *testing.T, in string) {
		us, err := ParseUsers(strings.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := us.Write(&buf); err != nil {
			t.Fatal(err)
		}
		again, err := ParseUsers(&buf)
		if err != nil {
			t.Fatalf("re-parse of written users: %v", err)
		}
		if len(again) != len(us) {
			t.Fatalf("round trip changed the users: %d -> %d", len(us), len(again))
		}
		for n, u := range us {
			v := again[n]
			if v.Admin != u.Admin || !bytes.Equal(v.Hash, u.Hash) {
				t.Fatalf("user %q changed in the round trip", n)
			}
		}
	})
}
