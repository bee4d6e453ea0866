package turnserver

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // TURN REST credentials are defined with HMAC-SHA1
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v2"
	"github.com/pion/turn/v3"
)

// Auth failure reasons, the "reason" label of turnd_auth_failures_total.
const (
	AuthUnknownUser  = "unknown_user"
	AuthExpired      = "expired"
	AuthBadIntegrity = "bad_integrity"
	AuthMalformed    = "malformed"
)

var authReasons = []string{AuthUnknownUser, AuthExpired, AuthBadIntegrity, AuthMalformed}

// maxChosen bounds the per-source cache of verified REST keys.
const maxChosen = 1 << 16

// Auth checks TURN long-term credentials from a static users table and from
// TURN REST API shared secrets (username "expiry:user", password
// base64(HMAC-SHA1(secret, username))). Several secrets may be valid at once
// so they can be rotated without cutting clients off.
type Auth struct {
	realm   string
	users   map[string][]byte // username -> long-term key
	secrets [][]byte
	now     func() time.Time

	mu     sync.Mutex
	chosen map[string][]byte // network|src|username -> key that verified the last request
}

// NewAuth makes an Auth for realm with static users (name -> password) and
// REST secrets. now may be nil (time.Now).
func NewAuth(realm string, users map[string]string, secrets []string, now func() time.Time) *Auth {
	if now == nil {
		now = time.Now
	}
	a := &Auth{realm: realm, users: map[string][]byte{}, now: now, chosen: map[string][]byte{}}
	for u, p := range users {
		a.users[u] = turn.GenerateAuthKey(u, realm, p)
	}
	for _, s := range secrets {
		if s != "" {
			a.secrets = append(a.secrets, []byte(s))
		}
	}
	return a
}

// Realm is the realm keys are made for.
func (a *Auth) Realm() string { return a.realm }

// RESTPassword is the TURN REST API password for username under secret.
func RESTPassword(secret, username string) string {
	h := hmac.New(sha1.New, []byte(secret))
	h.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// RESTUsername makes a TURN REST username valid until expiry.
func RESTUsername(expiry time.Time, user string) string {
	return strconv.FormatInt(expiry.Unix(), 10) + ":" + user
}

// parseREST splits a REST username into expiry and user. The user part may be
// absent ("1700000000").
func parseREST(username string) (time.Time, string, bool) {
	ts, user, _ := strings.Cut(username, ":")
	if ts == "" || len(ts) > 19 {
		return time.Time{}, "", false
	}
	for _, c := range ts {
		if c < '0' || c > '9' {
			return time.Time{}, "", false
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	if user == "" {
		user = username
	}
	return time.Unix(sec, 0), user, true
}

// candidates returns the keys username may hold, the name quotas count it
// under, and a failure reason when there are none.
func (a *Auth) candidates(username string) ([][]byte, string, string) {
	if k, ok := a.users[username]; ok {
		return [][]byte{k}, username, ""
	}
	exp, user, ok := parseREST(username)
	if !ok || len(a.secrets) == 0 {
		return nil, "", AuthUnknownUser
	}
	if !a.now().Before(exp) {
		return nil, "", AuthExpired
	}
	keys := make([][]byte, 0, len(a.secrets))
	for _, s := range a.secrets {
		keys = append(keys, turn.GenerateAuthKey(username, a.realm, RESTPassword(string(s), username)))
	}
	return keys, "rest:" + user, ""
}

func chosenKey(src net.Addr, username string) string {
	return src.Network() + "|" + src.String() + "|" + username
}

// Verify checks the MESSAGE-INTEGRITY of m (which must carry one). It returns
// the quota user and the key on success, else a failure reason. The key is
// remembered for src so pion's AuthHandler (Handler) answers with the secret
// that actually matched.
func (a *Auth) Verify(m *stun.Message, src net.Addr) (user string, key []byte, reason string) {
	var un stun.Username
	if err := un.GetFrom(m); err != nil || len(un) == 0 {
		return "", nil, AuthMalformed
	}
	keys, user, reason := a.candidates(un.String())
	if reason != "" {
		return "", nil, reason
	}
	for _, k := range keys {
		if stun.MessageIntegrity(k).Check(m) == nil {
			if len(keys) > 1 {
				a.mu.Lock()
				if len(a.chosen) >= maxChosen {
					clear(a.chosen)
				}
				a.chosen[chosenKey(src, un.String())] = k
				a.mu.Unlock()
			}
			return user, k, ""
		}
	}
	return "", nil, AuthBadIntegrity
}

// Handler is the pion AuthHandler. Requests reach pion only after Verify ran
// on them, so for REST users it returns the key Verify found.
func (a *Auth) Handler(username, _ string, src net.Addr) ([]byte, bool) {
	keys, _, reason := a.candidates(username)
	if reason != "" {
		return nil, false
	}
	if len(keys) == 1 {
		return keys[0], true
	}
	a.mu.Lock()
	k, ok := a.chosen[chosenKey(src, username)]
	a.mu.Unlock()
	if ok {
		return k, true
	}
	return keys[0], true
}

// ParseUsers reads a users file: one "username:password" per line; blank
// lines and lines starting with # are ignored. Usernames may not contain ':'.
func ParseUsers(r io.Reader) (map[string]string, error) {
	users := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64*1024)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		u, p, ok := strings.Cut(t, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("turnserver: users file line %d: want username:password", line)
		case u == "":
			return nil, fmt.Errorf("turnserver: users file line %d: empty username", line)
		case p == "":
			return nil, fmt.Errorf("turnserver: users file line %d: empty password for %q", line, u)
		}
		if _, dup := users[u]; dup {
			return nil, fmt.Errorf("turnserver: users file line %d: duplicate user %q", line, u)
		}
		if _, _, rest := parseREST(u); rest {
			return nil, fmt.Errorf("turnserver: users file line %d: username %q looks like a REST credential (starts with digits)", line, u)
		}
		users[u] = p
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("turnserver: users file: %w", err)
	}
	return users, nil
}

// LoadUsers reads a users file by name (see ParseUsers).
func LoadUsers(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	defer f.Close()
	return ParseUsers(f)
}

// LoadSecrets reads REST secrets, one per line (# comments, blank lines skipped).
func LoadSecrets(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("turnserver: secrets file " + path + " holds no secret")
	}
	return out, nil
}
