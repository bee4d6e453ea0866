package mqttbroker

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// Namespace is the first topic level of the signalling namespace: agents
// publish to and subscribe to exactly "p2pd/<node id>".
const Namespace = "p2pd"

// NodeIDLen is the length of a node id: unpadded lowercase base32 of a
// 32-byte X25519 public key.
const NodeIDLen = 52

// ValidNodeID reports whether id has the shape of a node id: 52 characters of
// the RFC 4648 base32 alphabet in lower case (a-z, 2-7), and a last character
// whose unused low bits are zero, as an encoder of 32 bytes produces.
func ValidNodeID(id string) bool {
	if len(id) != NodeIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	// 32 bytes = 256 bits; 52 chars carry 260 bits, so the last char's low
	// 4 bits are padding and must be zero: it is one of a, q (values 0, 16).
	last := id[NodeIDLen-1]
	return last == 'a' || last == 'q'
}

// Access is what a client asks to do with a topic.
type Access int

// Read covers subscribing and receiving; Write covers publishing.
const (
	Read Access = 1 << iota
	Write
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return "readwrite"
}

// Who identifies the client an ACL decision is about.
type Who struct {
	Username string // "" for anonymous clients
	ClientID string
	Admin    bool
}

// ACL decides topic access. The signalling rules are fixed; Rules adds
// decisions for topics outside the signalling namespace and $SYS.
type ACL struct {
	// BindUsername, when set, lets a client subscribe only to
	// p2pd/<its own username>; publishing to any node stays open.
	BindUsername bool
	Rules        []Rule
}

// Decision is an ACL answer with the reason, for logs and metrics.
type Decision struct {
	Allow  bool
	Reason string
}

// fastSignal answers without allocating for the common case, an exact
// p2pd/<node id> topic whose answer does not depend on the client. ok is
// false when Check must decide.
func (a *ACL) fastSignal(topic string, acc Access) (allow, ok bool) {
	if len(topic) != len(Namespace)+1+NodeIDLen || topic[:len(Namespace)+1] != Namespace+"/" {
		return false, false
	}
	if acc == Read && a.BindUsername {
		return false, false
	}
	return ValidNodeID(topic[len(Namespace)+1:]), true
}

// Check decides whether who may read (subscribe to filter / receive topic)
// or write (publish to topic).
func (a *ACL) Check(who Who, topic string, acc Access) Decision {
	levels := strings.Split(topic, "/")
	if acc == Read && len(levels) > 2 && strings.EqualFold(levels[0], "$share") {
		levels = levels[2:] // a shared subscription is judged by its filter
	}
	first := levels[0]
	switch {
	case first == "$SYS":
		if acc == Read && who.Admin {
			return Decision{true, "$SYS read by admin"}
		}
		return Decision{false, "$SYS is for admin users only (read only)"}
	case strings.HasPrefix(first, "$"):
		return Decision{false, "reserved $ topic"}
	case first == "#" || first == "+":
		return Decision{false, "a wildcard in the first level would match the signalling namespace"}
	case first == Namespace:
		return a.checkSignal(who, levels, acc)
	}
	for _, r := range a.Rules {
		if d, ok := r.decide(who, levels, acc); ok {
			return d
		}
	}
	return Decision{false, "no rule allows this topic"}
}

func (a *ACL) checkSignal(who Who, levels []string, acc Access) Decision {
	if len(levels) != 2 || !ValidNodeID(levels[1]) {
		return Decision{false, "signalling topics are exactly p2pd/<52-char node id>, no wildcards"}
	}
	if acc == Read && a.BindUsername && levels[1] != who.Username {
		return Decision{false, "subscriptions are bound to the username (p2pd/<username> only)"}
	}
	return Decision{true, "signalling topic"}
}

// Rule is one line of a rules file:
//
//	allow|deny  <who>  read|write|readwrite  <topic filter>
//
// who is "*" (everyone), "@admin", "@anonymous", or a username. In the filter
// a whole level "%u" stands for the username and "%c" for the client id.
type Rule struct {
	Allow  bool
	Who    string
	Access Access
	Filter []string
	Line   int
}

func (r Rule) matchesWho(who Who) bool {
	switch r.Who {
	case "*":
		return true
	case "@admin":
		return who.Admin
	case "@anonymous":
		return who.Username == ""
	}
	return r.Who == who.Username && who.Username != ""
}

func (r Rule) decide(who Who, levels []string, acc Access) (Decision, bool) {
	if r.Access&acc == 0 || !r.matchesWho(who) {
		return Decision{}, false
	}
	pat, ok := r.expand(who)
	if !ok {
		return Decision{}, false
	}
	// An allow rule must cover everything the filter could match; a deny
	// rule applies as soon as the two overlap.
	var hit bool
	if r.Allow {
		hit = covers(pat, levels)
	} else {
		hit = overlaps(pat, levels)
	}
	if !hit {
		return Decision{}, false
	}
	verb := "denied"
	if r.Allow {
		verb = "allowed"
	}
	return Decision{r.Allow, fmt.Sprintf("%s by rule on line %d", verb, r.Line)}, true
}

func (r Rule) expand(who Who) ([]string, bool) {
	out := make([]string, len(r.Filter))
	for i, l := range r.Filter {
		switch l {
		case "%u":
			if who.Username == "" || strings.ContainsAny(who.Username, "/+#") {
				return nil, false
			}
			l = who.Username
		case "%c":
			if who.ClientID == "" || strings.ContainsAny(who.ClientID, "/+#") {
				return nil, false
			}
			l = who.ClientID
		}
		out[i] = l
	}
	return out, true
}

// covers reports whether every topic matched by filter f is matched by
// pattern p.
func covers(p, f []string) bool {
	for i := range p {
		if p[i] == "#" {
			return true
		}
		if i >= len(f) || f[i] == "#" {
			return false
		}
		if p[i] == "+" {
			continue
		}
		if f[i] == "+" || f[i] != p[i] {
			return false
		}
	}
	return len(p) == len(f)
}

// overlaps reports whether some topic is matched by both p and f.
func overlaps(p, f []string) bool {
	for i := 0; i < len(p) && i < len(f); i++ {
		if p[i] == "#" || f[i] == "#" {
			return true
		}
		if p[i] != "+" && f[i] != "+" && p[i] != f[i] {
			return false
		}
	}
	if len(p) == len(f) {
		return true
	}
	// "a/#" also matches "a": a trailing # may match zero levels.
	if len(p) == len(f)+1 && p[len(p)-1] == "#" {
		return true
	}
	return len(f) == len(p)+1 && f[len(f)-1] == "#"
}

// LoadRules reads a rules file.
func LoadRules(path string) ([]Rule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mqttbroker: rules: %w", err)
	}
	rules, err := ParseRules(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("mqttbroker: rules %s: %w", path, err)
	}
	return rules, nil
}

// ParseRules parses rules, one per line; blank lines and lines starting with
// # are ignored. Errors name the line.
func ParseRules(r io.Reader) ([]Rule, error) {
	var rules []Rule
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rule, err := parseRule(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		rule.Line = n
		rules = append(rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return rules, nil
}

func parseRule(line string) (Rule, error) {
	f := strings.Fields(line)
	if len(f) != 4 {
		return Rule{}, fmt.Errorf("want 4 fields \"allow|deny who read|write|readwrite filter\", got %d", len(f))
	}
	var r Rule
	switch f[0] {
	case "allow":
		r.Allow = true
	case "deny":
	default:
		return Rule{}, fmt.Errorf("first field %q: want allow or deny", f[0])
	}
	if f[1] == "" || strings.ContainsAny(f[1], ":/") {
		return Rule{}, fmt.Errorf("who %q: want *, @admin, @anonymous or a username", f[1])
	}
	if strings.HasPrefix(f[1], "@") && f[1] != "@admin" && f[1] != "@anonymous" {
		return Rule{}, fmt.Errorf("who %q: the only groups are @admin and @anonymous", f[1])
	}
	r.Who = f[1]
	switch f[2] {
	case "read":
		r.Access = Read
	case "write":
		r.Access = Write
	case "readwrite":
		r.Access = Read | Write
	default:
		return Rule{}, fmt.Errorf("access %q: want read, write or readwrite", f[2])
	}
	levels := strings.Split(f[3], "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return Rule{}, fmt.Errorf("filter %q: # must be the whole last level", f[3])
		}
		if strings.Contains(l, "+") && l != "+" {
			return Rule{}, fmt.Errorf("filter %q: + must be a whole level", f[3])
		}
		if strings.Contains(l, "%") && l != "%u" && l != "%c" {
			return Rule{}, fmt.Errorf("filter %q: only whole levels %%u and %%c may use %%", f[3])
		}
	}
	if levels[0] == Namespace || strings.HasPrefix(levels[0], "$") {
		return Rule{}, fmt.Errorf("filter %q: p2pd/ and $ topics have fixed rules", f[3])
	}
	r.Filter = levels
	return r, nil
}
