package tenancy

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// RoleSessionName limits (STS API reference, AssumeRole): 2-64 characters
// of [\w+=,.@-]. STS's pattern is ASCII, so \w is [A-Za-z0-9_].
const (
	minSessionName = 2
	maxSessionName = 64
	// maxSessionNamePrefix leaves at least 64-32-1-16 = 15 characters of
	// the user visible in a hashed session name.
	maxSessionNamePrefix = 32
	// sessionNameHashLen is how many base32 characters of SHA-256(user) a
	// hashed session name carries: 80 bits.
	sessionNameHashLen = 16
)

// sessionNameHash is RFC 4648 base32 in lowercase without padding.
var sessionNameHash = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrInexpressible means an identity cannot be expressed as an STS session
// (an empty user, or an attribute that STS tag rules forbid). Such a caller
// is refused: the gateway never truncates or rewrites an attribute that
// ends up on the bill, because two callers could then be billed as one.
var ErrInexpressible = errors.New("identity cannot be expressed as an sts session")

// isSessionNameChar reports whether c is in [\w+=,.@-] (ASCII \w).
func isSessionNameChar(c rune) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.ContainsRune("_+=,.@-", c)
}

// validatePrefix checks a session name prefix: at most 32 characters of
// [\w+,.@-]. '=' is excluded because SessionName relies on it to separate
// verbatim names from hashed ones.
func validatePrefix(prefix string) error {
	if len(prefix) > maxSessionNamePrefix {
		return fmt.Errorf("must be at most %d characters, got %d", maxSessionNamePrefix, len(prefix))
	}
	for _, c := range prefix {
		if c == '=' || !isSessionNameChar(c) {
			return fmt.Errorf("%q: must contain only letters, digits and _+,.@- (no '=')", prefix)
		}
	}
	return nil
}

// SessionName returns the STS RoleSessionName for user: a valid name (2-64
// characters of [\w+=,.@-], STS API reference) that no other user maps to.
// The name is what CUR shows in line_item_iam_principal
// (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSIONNAME), so it stays
// readable where it can.
//
// If prefix+user is 2-64 allowed characters and user contains no '=', the
// name is prefix+user verbatim ("gw-" + "alice@acme.org" →
// "gw-alice@acme.org"). Otherwise it is
//
//	prefix + readable + "=" + hash
//
// where readable is user with every character outside [\w+,.@-] (including
// '=') replaced by '_', truncated so the name fits 64 characters, and hash
// is the first 16 characters of the lowercase base32 SHA-256 of user.
//
// Why two users never share a name: the prefix is fixed and contains no
// '='. A verbatim name therefore contains no '=' at all, while a hashed
// name contains exactly one (readable has none), so no verbatim name
// equals a hashed one. Two verbatim names are equal only if the users are.
// Two hashed names are equal only if the 80-bit SHA-256 prefixes of the
// users collide (and their readable parts agree) — cryptographically
// negligible for user names an operator assigns.
//
// Errors: an empty user wraps ErrInexpressible; an invalid prefix (see
// Config.SessionNamePrefix) is a configuration error.
func SessionName(prefix, user string) (string, error) {
	if err := validatePrefix(prefix); err != nil {
		return "", fmt.Errorf("session name prefix %w", err)
	}
	if user == "" {
		return "", fmt.Errorf("session name: empty user: %w", ErrInexpressible)
	}
	if name := prefix + user; len(name) >= minSessionName && len(name) <= maxSessionName &&
		!strings.Contains(user, "=") && strings.IndexFunc(user, func(c rune) bool { return !isSessionNameChar(c) }) < 0 {
		return name, nil
	}

	return hashedName(prefix, user, user), nil
}

// hashedName returns prefix + readable' + "=" + hash(user), where
// readable' is readable with every character outside [\w+,.@-] (including
// '=') replaced by '_', truncated so the name fits 64 characters, and hash
// is the first 16 characters of the lowercase base32 SHA-256 of user. The
// result contains exactly one '=' whatever readable is, and is unique per
// user (see SessionName); readable only makes it legible. prefix must be
// valid (validatePrefix).
func hashedName(prefix, readable, user string) string {
	sum := sha256.Sum256([]byte(user))
	hash := sessionNameHash.EncodeToString(sum[:])[:sessionNameHashLen]
	budget := maxSessionName - len(prefix) - 1 - sessionNameHashLen
	var b strings.Builder
	b.Grow(maxSessionName)
	b.WriteString(prefix)
	n := 0
	// Ranging over a string yields U+FFFD for each invalid UTF-8 byte;
	// that only affects the readable part, the hash covers the raw bytes.
	for _, c := range readable {
		if n == budget {
			break
		}
		if c == '=' || !isSessionNameChar(c) {
			c = '_'
		}
		b.WriteRune(c) // ASCII by now: one byte
		n++
	}
	b.WriteByte('=')
	b.WriteString(hash)
	return b.String()
}
