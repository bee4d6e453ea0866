package mqttbroker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// authenticator checks passwords against the users file. bcrypt is slow on
// purpose, so a password that verified once is remembered as an HMAC (keyed
// by a per-process random key) and reconnects skip bcrypt; at most one bcrypt
// runs per CPU at a time, so a flood of bad logins cannot take every core.
type authenticator struct {
	users Users
	key   [32]byte
	sem   chan struct{}

	mu   sync.Mutex
	good map[string][32]byte // user -> HMAC(hash || password) of the last good login
}

func newAuthenticator(users Users) *authenticator {
	a := &authenticator{
		users: users,
		sem:   make(chan struct{}, runtime.NumCPU()),
		good:  map[string][32]byte{},
	}
	_, _ = rand.Read(a.key[:])
	return a
}

func (a *authenticator) mac(u User, password []byte) [32]byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write(u.Hash)
	m.Write([]byte{0})
	m.Write(password)
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// check reports whether name/password is a valid login, and the user.
func (a *authenticator) check(name string, password []byte) (User, bool) {
	u, ok := a.users[name]
	if !ok {
		return User{}, false
	}
	sum := a.mac(u, password)
	a.mu.Lock()
	prev, seen := a.good[name]
	a.mu.Unlock()
	if seen && hmac.Equal(prev[:], sum[:]) {
		return u, true
	}
	a.sem <- struct{}{}
	err := bcrypt.CompareHashAndPassword(u.Hash, password)
	<-a.sem
	if err != nil {
		return User{}, false
	}
	a.mu.Lock()
	a.good[name] = sum
	a.mu.Unlock()
	return u, true
}
