package auth

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
)

var keyPattern = regexp.MustCompile(`^bgw_[0-9a-f]{16}_[a-z2-7]{52}$`)

// fixedKey is a well-formed key built from fixed bytes, for seeds and
// tables that must not depend on crypto/rand.
func fixedKey(id string, fill byte) string {
	return formatKey(id, bytes.Repeat([]byte{fill}, keySecretBytes))
}

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		key, id, err := NewKey()
		if err != nil {
			t.Fatalf("NewKey() error = %v", err)
		}
		if !keyPattern.MatchString(key) {
			t.Fatalf("NewKey() = %q, want match for %s", key, keyPattern)
		}
		if got, want := key[len(keyPrefix):len(keyPrefix)+keyIDLen], id; got != want {
			t.Fatalf("NewKey() id in key = %q, want returned id %q", got, want)
		}
		gotID, secret, err := parseKey(key)
		if err != nil || gotID != id || len(secret) != keySecretBytes {
			t.Fatalf("parseKey(NewKey()) = %q, %d bytes, %v; want %q, %d bytes, nil", gotID, len(secret), err, id, keySecretBytes)
		}
		if seen[key] || seen[id] {
			t.Fatalf("NewKey() repeated a key or id after %d keys", len(seen)/2)
		}
		seen[key], seen[id] = true, true
	}
}

// malformedKeys are presented keys that parseKey must refuse. The
// well-formed baseline is fixedKey("0123456789abcdef", 0x5a).
var malformedKeys = []struct {
	name string
	key  string
}{
	{"empty", ""},
	{"prefix only", "bgw_"},
	{"wrong prefix", "sk-_" + fixedKey("0123456789abcdef", 0x5a)[4:]},
	{"upper prefix", "BGW_" + fixedKey("0123456789abcdef", 0x5a)[4:]},
	{"missing separator", strings.Replace(fixedKey("0123456789abcdef", 0x5a), "f_", "f-", 1)},
	{"upper hex id", fixedKey("0123456789ABCDEF", 0x5a)},
	{"non-hex id", fixedKey("0123456789abcdeg", 0x5a)},
	{"bad base32 char", fixedKey("0123456789abcdef", 0x5a)[:keyLen-2] + "1a"},
	{"upper base32", strings.ToUpper(fixedKey("0123456789abcdef", 0x5a)[:keyLen-1]) + "a"},
	{"newline in secret", fixedKey("0123456789abcdef", 0x5a)[:keyLen-1] + "\n"},
	// The last base32 character carries 1 data bit and 4 unused bits;
	// with an all-zero secret "a" is canonical and "b" decodes to the same
	// bytes.
	{"non-canonical last char", fixedKey("0123456789abcdef", 0)[:keyLen-1] + "b"},
	{"padded", fixedKey("0123456789abcdef", 0x5a) + "===="},
	{"one short", fixedKey("0123456789abcdef", 0x5a)[:keyLen-1]},
	{"one long", fixedKey("0123456789abcdef", 0x5a) + "a"},
	{"too long 10KB", "bgw_0123456789abcdef_" + strings.Repeat("a", 10<<10)},
	{"bearer inside", "Bearer " + fixedKey("0123456789abcdef", 0x5a)},
}

func TestParseKeyRejects(t *testing.T) {
	for _, tt := range malformedKeys {
		t.Run(tt.name, func(t *testing.T) {
			id, secret, err := parseKey(tt.key)
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("parseKey(%.40q) = %q, %x, %v; want error wrapping %v", tt.key, id, secret, err, ErrInvalidCredentials)
			}
			assertNoLeak(t, err, tt.key)
		})
	}
}

func TestParseKeyAccepts(t *testing.T) {
	for _, fill := range []byte{0, 0x5a, 0xff} {
		key := fixedKey("0123456789abcdef", fill)
		id, secret, err := parseKey(key)
		if err != nil {
			t.Fatalf("parseKey(%q) error = %v", key, err)
		}
		if id != "0123456789abcdef" || !bytes.Equal(secret, bytes.Repeat([]byte{fill}, keySecretBytes)) {
			t.Errorf("parseKey(%q) = %q, %x; want %q, 32 x %#x", key, id, secret, "0123456789abcdef", fill)
		}
	}
}

func TestParseHash(t *testing.T) {
	good := "sha256:" + strings.Repeat("0a", 32)
	tests := []struct {
		in    string
		valid bool
	}{
		{good, true},
		{"", false},
		{strings.Repeat("0a", 32), false},
		{"SHA256:" + strings.Repeat("0a", 32), false},
		{"sha256:" + strings.Repeat("0A", 32), false},
		{"sha256:" + strings.Repeat("0a", 31), false},
		{"sha256:" + strings.Repeat("0a", 33), false},
		{"sha256:" + strings.Repeat("zz", 32), false},
	}
	for _, tt := range tests {
		_, err := parseHash(tt.in)
		if got := err == nil; got != tt.valid {
			t.Errorf("parseHash(%q) error = %v, want valid=%v", tt.in, err, tt.valid)
		}
	}
}

// assertNoLeak fails if err's text contains any of the given key material.
// Fragments shorter than 8 bytes are skipped: they could match ordinary
// words in a message without being a leak.
func assertNoLeak(t *testing.T, err error, material ...string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, m := range material {
		parts := []string{m}
		// Also the secret part alone, after the last '_'.
		if i := strings.LastIndexByte(m, '_'); i >= 0 {
			parts = append(parts, m[i+1:])
		}
		for _, p := range parts {
			if len(p) >= 8 && strings.Contains(msg, p) {
				t.Errorf("error %q contains key material %.40q", msg, p)
			}
		}
	}
}

// parseKeyMessages are every message parseKey can return. Asserting
// membership proves the message does not depend on the input.
var parseKeyMessages = map[string]bool{
	"api key: wrong length: invalid credentials":                             true,
	"api key: wrong prefix: invalid credentials":                             true,
	"api key: missing separator: invalid credentials":                        true,
	"api key: id is not 16 lowercase hex characters: invalid credentials":    true,
	"api key: secret is not canonical lowercase base32: invalid credentials": true,
}

func FuzzParseKey(f *testing.F) {
	for _, tt := range malformedKeys {
		f.Add(tt.key)
	}
	f.Add(fixedKey("0123456789abcdef", 0))
	f.Add(fixedKey("ffffffffffffffff", 0xff))
	f.Add(fixedKey("0123456789abcdef", 0x5a))
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, err := parseKey(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("parseKey(%q) error = %v, want wrapping %v", s, err, ErrInvalidCredentials)
			}
			if !parseKeyMessages[err.Error()] {
				t.Fatalf("parseKey(%q) error = %q, want one of the fixed messages", s, err)
			}
			return
		}
		if got := formatKey(id, secret); got != s {
			t.Fatalf("formatKey(parseKey(%q)) = %q, want the input", s, got)
		}
		if !keyPattern.MatchString(s) {
			t.Fatalf("parseKey(%q) accepted a key not matching %s", s, keyPattern)
		}
	})
}
