package mqttbroker

import (
	"strings"
	"testing"
)

func TestValidNodeID(t *testing.T) {
	good := newNodeID(t)
	for _, tc := range []struct {
		name string
		id   string
		want bool
	}{
		{"encoded key", good, true},
		{"all a", strings.Repeat("a", 52), true},
		{"short", good[:51], false},
		{"long", good + "a", false},
		{"upper case", strings.ToUpper(good), false},
		{"digit 1", "1" + good[1:], false},
		{"digit 8", good[:10] + "8" + good[11:], false},
		{"padding", good[:51] + "=", false},
		{"last char carries padding bits", good[:51] + "b", false},
		{"wildcard", good[:51] + "#", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidNodeID(tc.id); got != tc.want {
				t.Fatalf("ValidNodeID(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func TestACLCheck(t *testing.T) {
	id, other := newNodeID(t), newNodeID(t)
	rules, err := ParseRules(strings.NewReader(`
# comment
deny  *          readwrite  chat/secret
allow *          readwrite  chat/#
allow @admin     read       metrics/+
allow @anonymous read       public/news
allow bob        write      devices/%u/cmd
allow *          read       clients/%c/#
`))
	if err != nil {
		t.Fatal(err)
	}
	acl := &ACL{Rules: rules}
	strict := &ACL{BindUsername: true}
	alice := Who{Username: "alice", ClientID: "c1"}
	bob := Who{Username: "bob", ClientID: "c2"}
	root := Who{Username: "root", Admin: true}
	anon := Who{ClientID: "c3"}
	self := Who{Username: id}

	for _, tc := range []struct {
		name  string
		acl   *ACL
		who   Who
		topic string
		acc   Access
		want  bool
	}{
		{"publish to a node", acl, alice, "p2pd/" + id, Write, true},
		{"subscribe to a node", acl, alice, "p2pd/" + id, Read, true},
		{"subscribe p2pd/#", acl, alice, "p2pd/#", Read, false},
		{"subscribe p2pd/+", acl, root, "p2pd/+", Read, false},
		{"publish p2pd/x", acl, alice, "p2pd/x", Write, false},
		{"publish under a node", acl, alice, "p2pd/" + id + "/x", Write, false},
		{"bare p2pd", acl, alice, "p2pd", Read, false},
		{"subscribe #", acl, root, "#", Read, false},
		{"subscribe +/x", acl, alice, "+/" + id, Read, false},
		{"shared exact", acl, alice, "$share/g/p2pd/" + id, Read, true},
		{"shared wildcard", acl, alice, "$share/g/p2pd/#", Read, false},
		{"shared everything", acl, alice, "$share/g/#", Read, false},
		{"sys user", acl, alice, "$SYS/broker/version", Read, false},
		{"sys admin read", acl, root, "$SYS/#", Read, true},
		{"sys admin write", acl, root, "$SYS/x", Write, false},
		{"other $ topic", acl, root, "$other/x", Read, false},
		{"strict own topic", strict, self, "p2pd/" + id, Read, true},
		{"strict other topic", strict, self, "p2pd/" + other, Read, false},
		{"strict publish to other", strict, self, "p2pd/" + other, Write, true},
		{"rule allow chat", acl, alice, "chat/room", Write, true},
		{"rule allow chat wildcard", acl, alice, "chat/room/+", Read, true},
		{"rule deny secret first", acl, alice, "chat/secret", Read, false},
		{"rule deny overlaps wildcard sub", acl, alice, "chat/+", Read, false},
		{"rule deny overlaps zero-level #", acl, alice, "chat/secret/#", Read, false},
		{"rule admin metrics", acl, root, "metrics/cpu", Read, true},
		{"rule admin metrics not user", acl, alice, "metrics/cpu", Read, false},
		{"rule admin metrics too deep", acl, root, "metrics/cpu/x", Read, false},
		{"rule anonymous", acl, anon, "public/news", Read, true},
		{"rule anonymous not user", acl, alice, "public/news", Read, false},
		{"rule %u", acl, bob, "devices/bob/cmd", Write, true},
		{"rule %u other", acl, bob, "devices/alice/cmd", Write, false},
		{"rule %u read", acl, bob, "devices/bob/cmd", Read, false},
		{"rule %c", acl, alice, "clients/c1/x", Read, true},
		{"rule %c other", acl, alice, "clients/c2/x", Read, false},
		{"no rule", acl, alice, "other", Write, false},
		{"no rules at all", strict, alice, "chat/room", Write, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.acl.Check(tc.who, tc.topic, tc.acc)
			if d.Allow != tc.want {
				t.Fatalf("Check(%+v, %q, %v) = %+v, want allow=%v", tc.who, tc.topic, tc.acc, d, tc.want)
			}
			if d.Reason == "" {
				t.Error("decision without a reason")
			}
		})
	}
}

func TestParseRulesErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"too few fields", "allow * read", "line 1: want 4 fields"},
		{"bad verb", "permit * read a", "allow or deny"},
		{"bad group", "allow @ops read a", "@admin and @anonymous"},
		{"bad access", "allow * all a", "read, write or readwrite"},
		{"hash not last", "allow * read a/#/b", "# must be"},
		{"partial plus", "allow * read a/b+", "+ must be"},
		{"partial percent", "allow * read a/x%u", "%u and %c"},
		{"signalling", "allow * read p2pd/#", "fixed rules"},
		{"sys", "allow * read $SYS/#", "fixed rules"},
		{"line number", "# c\n\nallow * read a\nnope", "line 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseRules(%q) error %v, want it to mention %q", tc.in, err, tc.want)
			}
		})
	}
}

// FuzzACLCheck checks the signalling guarantees for any topic and rules:
// no wildcard filter reaching p2pd/ is ever allowed, and $SYS is never
// writable or readable by non-admins.
func FuzzACLCheck(f *testing.F) {
	f.Add("allow * readwrite #", "p2pd/#", false, true)
	f.Add("allow * read +/+", "+/abc", false, true)
	f.Add("allow @admin read a/%u", "$share/g/p2pd/+", true, false)
	f.Add("deny * read a\nallow * write b/#", "b/c", false, true)
	f.Fuzz(func(t *testing.T, rulesText, topic string, admin, read bool) {
		rules, err := ParseRules(strings.NewReader(rulesText))
		if err != nil {
			return
		}
		acc := Write
		if read {
			acc = Read
		}
		acl := &ACL{Rules: rules}
		d := acl.Check(Who{Username: "u", ClientID: "c", Admin: admin}, topic, acc)
		if !d.Allow {
			return
		}
		levels := strings.Split(topic, "/")
		if read && len(levels) > 2 && strings.EqualFold(levels[0], "$share") {
			levels = levels[2:]
		}
		wild := strings.ContainsAny(topic, "+#")
		switch {
		case levels[0] == "#" || levels[0] == "+":
			t.Fatalf("allowed %q: a first-level wildcard reaches p2pd/", topic)
		case levels[0] == Namespace && (wild || len(levels) != 2 || !ValidNodeID(levels[1])):
			t.Fatalf("allowed %q in the signalling namespace", topic)
		case strings.HasPrefix(levels[0], "$") && (!admin || !read || levels[0] != "$SYS"):
			t.Fatalf("allowed %q on a $ topic (admin=%v read=%v)", topic, admin, read)
		}
	})
}

// FuzzParseRules checks the parser never panics and that accepted rules
// keep their shape.
func FuzzParseRules(f *testing.F) {
	f.Add("allow * readwrite chat/#\ndeny bob write x/+/%u")
	f.Add("allow @admin read a\n# c")
	f.Fuzz(func(t *testing.T, in string) {
		rules, err := ParseRules(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, r := range rules {
			if r.Access == 0 || r.Who == "" || len(r.Filter) == 0 || r.Line < 1 {
				t.Fatalf("bad rule %+v from %q", r, in)
			}
		}
	})
}

// FuzzFastSignal: the allocation-free path agrees with the full check.
func FuzzFastSignal(f *testing.F) {
	f.Add("p2pd/"+strings.Repeat("a", 52), true, false)
	f.Add("p2pd/"+strings.Repeat("b", 52), false, true)
	f.Fuzz(func(t *testing.T, topic string, read, bind bool) {
		acc := Write
		if read {
			acc = Read
		}
		acl := &ACL{BindUsername: bind}
		allow, ok := acl.fastSignal(topic, acc)
		if !ok {
			return
		}
		if full := acl.Check(Who{Username: "u"}, topic, acc); full.Allow != allow {
			t.Fatalf("fastSignal(%q, %v) = %v, Check says %+v", topic, acc, allow, full)
		}
	})
}

func BenchmarkACLCheck(b *testing.B) {
	rules, err := ParseRules(strings.NewReader("deny * readwrite chat/secret\nallow * readwrite chat/#\n"))
	if err != nil {
		b.Fatal(err)
	}
	acl := &ACL{Rules: rules}
	who := Who{Username: "alice", ClientID: "c1"}
	signal := "p2pd/" + newNodeID(b)
	for _, tc := range []struct{ name, topic string }{{"signal", signal}, {"rules", "chat/room/1"}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if allow, ok := acl.fastSignal(tc.topic, Write); ok && allow {
					continue
				}
				if !acl.Check(who, tc.topic, Write).Allow {
					b.Fatal("denied")
				}
			}
		})
	}
}
