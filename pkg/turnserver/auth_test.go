package turnserver

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v2"
	"github.com/pion/turn/v3"
)

func TestParseUsers(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{name: "plain", in: "alice:secret\n# comment\n\n bob:pa:ss \n", want: map[string]string{"alice": "secret", "bob": "pa:ss"}},
		{name: "no colon", in: "alice\n", wantErr: "line 1"},
		{name: "empty user", in: ":pw\n", wantErr: "empty username"},
		{name: "empty password", in: "carol:\n", wantErr: "empty password"},
		{name: "duplicate", in: "a:1\na:2\n", wantErr: "duplicate"},
		{name: "rest-like", in: "1700000000:x\n", wantErr: "REST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseUsers(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func FuzzParseUsers(f *testing.F) {
	f.Add("alice:secret\n# c\nbob:x:y\n")
	f.Add(":\n\n#")
	f.Fuzz(func(t *testing.T, in string) {
		users, err := ParseUsers(strings.NewReader(in))
		if err != nil {
			return
		}
		for u, p := range users {
			if u == "" || p == "" || strings.Contains(u, ":") {
				t.Fatalf("bad entry %q:%q accepted", u, p)
			}
		}
	})
}

// signed builds an authenticated request as a client holding password would.
func signed(t testing.TB, user, realm, password string) *stun.Message {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername(user), stun.NewRealm(realm), stun.NewNonce("n"),
		stun.MessageIntegrity(turn.GenerateAuthKey(user, realm, password)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAuthVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := NewAuth("r", map[string]string{"alice": "pw"}, []string{"old-secret", "new-secret"}, func() time.Time { return now })
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	valid := RESTUsername(now.Add(time.Hour), "bob")
	expired := RESTUsername(now.Add(-time.Second), "bob")
	tests := []struct {
		name, user, password string
		wantUser, wantReason string
	}{
		{"static", "alice", "pw", "alice", ""},
		{"static wrong password", "alice", "nope", "", AuthBadIntegrity},
		{"unknown", "mallory", "pw", "", AuthUnknownUser},
		{"rest first secret", valid, RESTPassword("old-secret", valid), "rest:bob", ""},
		{"rest second secret", valid, RESTPassword("new-secret", valid), "rest:bob", ""},
		{"rest wrong secret", valid, RESTPassword("other", valid), "", AuthBadIntegrity},
		{"rest expired", expired, RESTPassword("new-secret", expired), "", AuthExpired},
		{"rest expiry now", RESTUsername(now, "bob"), RESTPassword("new-secret", RESTUsername(now, "bob")), "", AuthExpired},
		{"rest without user part", "1800003600", RESTPassword("old-secret", "1800003600"), "rest:1800003600", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := signed(t, tc.user, "r", tc.password)
			user, key, reason := a.Verify(m, src)
			if user != tc.wantUser || reason != tc.wantReason {
				t.Fatalf("Verify = (%q, %q), want (%q, %q)", user, reason, tc.wantUser, tc.wantReason)
			}
			if reason != "" {
				if _, ok := a.Handler(tc.user, "r", src); ok && tc.wantReason != AuthBadIntegrity {
					t.Fatalf("Handler accepted a refused user")
				}
				return
			}
			// pion's AuthHandler must give the key that verified (second secret too).
			hk, ok := a.Handler(tc.user, "r", src)
			if !ok || string(hk) != string(key) || stun.MessageIntegrity(hk).Check(m) != nil {
				t.Fatalf("Handler key does not verify the request")
			}
		})
	}
}
