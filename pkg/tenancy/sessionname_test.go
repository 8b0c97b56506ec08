package tenancy

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"regexp"
	"strings"
	"testing"
)

var sessionNamePattern = regexp.MustCompile(`^[A-Za-z0-9_+=,.@-]{2,64}$`)

// h is the hash part of a hashed session name, computed independently of
// the package's encoder.
func h(user string) string {
	sum := sha256.Sum256([]byte(user))
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:]))[:16]
}

var (
	user64  = strings.Repeat("u", 64)
	user65  = strings.Repeat("v", 65)
	user200 = strings.Repeat("w", 200)
	user62  = strings.Repeat("x", 62)
)

var sessionNameTests = []struct {
	name, prefix, user, want string
}{
	{"email verbatim", "", "alice@acme.org", "alice@acme.org"},
	{"prefixed email verbatim", "gw-", "alice@acme.org", "gw-alice@acme.org"},
	{"article example", "gw-", "user-1", "gw-user-1"},
	{"all allowed punctuation", "", "a+b,c.d@e-f_g", "a+b,c.d@e-f_g"},
	{"two chars", "", "ab", "ab"},
	{"one char with prefix is long enough", "gw-", "a", "gw-a"},
	// Golden hashes, computed outside Go, pin the encoding.
	{"one char", "", "a", "a=zklycewkdo64v6wc"},
	{"space", "", "alice smith", "alice_smith=aof5cwq6z4hxxbo3"},
	{"equals sign", "", "x=y", "x_y=cs7vbwahndz3zuel"},
	{"unicode letter is one underscore", "", "jürgen", "j_rgen=" + h("jürgen")},
	{"cjk", "gw-", "李雷", "gw-__=" + h("李雷")},
	{"invalid utf-8", "", "\xff\xfe", "__=" + h("\xff\xfe")},
	{"only disallowed", "", "  ", "__=" + h("  ")},
	{"slash and colon", "", "acme/alice:1", "acme_alice_1=" + h("acme/alice:1")},
	{"64 chars verbatim", "", user64, user64},
	{"65 chars hashed", "", user65, user65[:47] + "=" + h(user65)},
	{"200 chars hashed", "", user200, user200[:47] + "=" + h(user200)},
	{"prefix plus user exactly 64", "gw", user62, "gw" + user62},
	{"prefix plus user overflows", "gw-", user62, "gw-" + user62[:44] + "=" + h(user62)},
	{"long prefix", strings.Repeat("p", 32), user65, strings.Repeat("p", 32) + user65[:15] + "=" + h(user65)},
	{"long unicode user", "", strings.Repeat("é", 100), strings.Repeat("_", 47) + "=" + h(strings.Repeat("é", 100))},
}

func TestSessionName(t *testing.T) {
	for _, tt := range sessionNameTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SessionName(tt.prefix, tt.user)
			if err != nil {
				t.Fatalf("SessionName(%q, %q) error = %v", tt.prefix, tt.user, err)
			}
			if got != tt.want {
				t.Errorf("SessionName(%q, %q) = %q, want %q", tt.prefix, tt.user, got, tt.want)
			}
			if !sessionNamePattern.MatchString(got) {
				t.Errorf("SessionName(%q, %q) = %q, want match for %s", tt.prefix, tt.user, got, sessionNamePattern)
			}
		})
	}
}

func TestSessionNameErrors(t *testing.T) {
	tests := []struct {
		name, prefix, user string
		inexpressible      bool
	}{
		{"empty user", "", "", true},
		{"empty user with prefix", "gw-", "", true},
		{"prefix with equals", "gw=", "alice", false},
		{"prefix with space", "gw ", "alice", false},
		{"prefix with unicode", "gü-", "alice", false},
		{"prefix too long", strings.Repeat("p", 33), "alice", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SessionName(tt.prefix, tt.user)
			if err == nil {
				t.Fatalf("SessionName(%q, %q) = %q, want an error", tt.prefix, tt.user, got)
			}
			if errors.Is(err, ErrInexpressible) != tt.inexpressible {
				t.Errorf("SessionName(%q, %q) error = %v, want errors.Is(ErrInexpressible) = %v", tt.prefix, tt.user, err, tt.inexpressible)
			}
		})
	}
}

// TestSessionNameInjective checks user pairs built to collide under a
// naive scheme.
func TestSessionNameInjective(t *testing.T) {
	users := []string{
		"a b", "a_b", "a=b", "a_b=" + h("a b"), "a_b=" + h("a=b"),
		"x=y", "x_y", "x_y=cs7vbwahndz3zuel", // the last is "x_y=" + h("x=y")
		"a", "a=zklycewkdo64v6wc", "a_", "aa", // "a=" + h("a")
		"alice", "Alice", "alice ", "alice_", "alice=",
		"jürgen", "järgen", "j_rgen", "j_rgen=" + h("jürgen"),
		user65, user65 + "v", user65[:47] + "=" + h(user65),
		user64, user64 + "=", user200, user200 + "x",
		"\xff", "\xfe", "\xff\xfe", "�", "__",
	}
	for _, prefix := range []string{"", "gw-", strings.Repeat("p", 32)} {
		byName := map[string]string{}
		for _, u := range users {
			name, err := SessionName(prefix, u)
			if err != nil {
				t.Fatalf("SessionName(%q, %q) error = %v", prefix, u, err)
			}
			if other, dup := byName[name]; dup {
				t.Errorf("SessionName(%q, %q) = SessionName(%q, %q) = %q, want distinct names", prefix, u, prefix, other, name)
			}
			byName[name] = u
		}
		if len(byName) != len(users) {
			t.Errorf("prefix %q: %d distinct names for %d users", prefix, len(byName), len(users))
		}
	}
}

func FuzzSessionName(f *testing.F) {
	for _, tt := range sessionNameTests {
		f.Add(tt.user, tt.user+"x")
		f.Add(tt.user, strings.ReplaceAll(tt.want, "=", "_"))
		f.Add(tt.user, tt.want)
	}
	f.Add("a b", "a_b")
	f.Add("x=y", "x_y=cs7vbwahndz3zuel")
	prefixes := []string{"", "gw-", strings.Repeat("p", 32)}
	f.Fuzz(func(t *testing.T, u1, u2 string) {
		for _, prefix := range prefixes {
			n1, err1 := SessionName(prefix, u1)
			n2, err2 := SessionName(prefix, u2)
			for _, c := range []struct {
				u, n string
				err  error
			}{{u1, n1, err1}, {u2, n2, err2}} {
				if c.u == "" {
					if !errors.Is(c.err, ErrInexpressible) {
						t.Fatalf("SessionName(%q, \"\") = %q, %v; want error wrapping ErrInexpressible", prefix, c.n, c.err)
					}
					continue
				}
				if c.err != nil {
					t.Fatalf("SessionName(%q, %q) error = %v", prefix, c.u, c.err)
				}
				if !sessionNamePattern.MatchString(c.n) {
					t.Fatalf("SessionName(%q, %q) = %q, want match for %s", prefix, c.u, c.n, sessionNamePattern)
				}
				if again, _ := SessionName(prefix, c.u); again != c.n {
					t.Fatalf("SessionName(%q, %q) = %q then %q, want deterministic", prefix, c.u, c.n, again)
				}
			}
			if u1 != u2 && u1 != "" && u2 != "" && n1 == n2 {
				t.Fatalf("SessionName(%q, %q) = SessionName(%q, %q) = %q, want distinct", prefix, u1, prefix, u2, n1)
			}
		}
	})
}
