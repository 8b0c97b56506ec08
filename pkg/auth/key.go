package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

// Gateway API key layout: "bgw_" + id + "_" + secret.
//
// The id is 8 random bytes as 16 lowercase hex characters. It is not
// secret: it names the key in logs, in Identity.KeyID and in the key store,
// and it is how a presented key finds its record.
//
// The secret is 32 random bytes (256 bits, well above the 128 bits a bearer
// credential needs to be unguessable) as 52 characters of lowercase base32
// without padding. Neither hex nor this base32 alphabet contains '_', so the
// separators are unambiguous.
const (
	keyPrefix      = "bgw_"
	keyIDBytes     = 8
	keyIDLen       = 2 * keyIDBytes
	keySecretBytes = 32
)

// secretEncoding is RFC 4648 base32 in lowercase without padding.
var secretEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var (
	keySecretLen = secretEncoding.EncodedLen(keySecretBytes)    // 52
	keyLen       = len(keyPrefix) + keyIDLen + 1 + keySecretLen // 73
)

// hashPrefix tags the algorithm of a stored key hash, so a later version
// can introduce another without guessing from the length.
const hashPrefix = "sha256:"

// NewKey generates a new gateway API key from crypto/rand. plaintext is
// shown to the key's owner once and never stored; id is its non-secret
// identifier.
func NewKey() (plaintext, id string, err error) {
	var idb [keyIDBytes]byte
	var secret [keySecretBytes]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", fmt.Errorf("generate api key id: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", fmt.Errorf("generate api key secret: %w", err)
	}
	id = hex.EncodeToString(idb[:])
	return formatKey(id, secret[:]), id, nil
}

func formatKey(id string, secret []byte) string {
	return keyPrefix + id + "_" + secretEncoding.EncodeToString(secret)
}

// parseKey splits a presented key into its id and decoded secret. It
// accepts only the canonical form NewKey produces, so a key that parses
// re-serialises to exactly the same string. Errors wrap
// ErrInvalidCredentials and never quote the input.
func parseKey(s string) (id string, secret []byte, err error) {
	// Length first: it bounds all further work on untrusted input.
	if len(s) != keyLen {
		return "", nil, fmt.Errorf("api key: wrong length: %w", ErrInvalidCredentials)
	}
	if !strings.HasPrefix(s, keyPrefix) {
		return "", nil, fmt.Errorf("api key: wrong prefix: %w", ErrInvalidCredentials)
	}
	rest := s[len(keyPrefix):]
	id, enc := rest[:keyIDLen], rest[keyIDLen+1:]
	if rest[keyIDLen] != '_' {
		return "", nil, fmt.Errorf("api key: missing separator: %w", ErrInvalidCredentials)
	}
	if !isKeyID(id) {
		return "", nil, fmt.Errorf("api key: id is not %d lowercase hex characters: %w", keyIDLen, ErrInvalidCredentials)
	}
	secret, err = secretEncoding.DecodeString(enc)
	// The decoder skips '\r' and '\n' and ignores the unused low bits of
	// the last character; re-encoding rejects both.
	if err != nil || len(secret) != keySecretBytes || secretEncoding.EncodeToString(secret) != enc {
		return "", nil, fmt.Errorf("api key: secret is not canonical lowercase base32: %w", ErrInvalidCredentials)
	}
	return id, secret, nil
}

// isKeyID reports whether s has the form of a key id: 16 lowercase hex
// characters.
func isKeyID(s string) bool {
	if len(s) != keyIDLen {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// hashKey is the stored form of a key: SHA-256 over the whole plaintext
// (id included, so a secret is only valid under its own id).
//
// A fast, unsalted hash is the right tool here. Slow hashes (bcrypt,
// scrypt, Argon2) exist to make guessing low-entropy passwords expensive;
// these secrets are 256 uniformly random bits, so the store leaking gives
// an attacker nothing to guess, and a slow hash would only put a
// deliberate CPU cost on every request. Salt is likewise unnecessary:
// random keys never repeat, so precomputation cannot pay off.
func hashKey(plaintext string) [sha256.Size]byte {
	return sha256.Sum256([]byte(plaintext))
}

// formatHash renders a digest in the key store's "sha256:<hex>" form.
func formatHash(sum [sha256.Size]byte) string {
	return hashPrefix + hex.EncodeToString(sum[:])
}

// parseHash accepts exactly "sha256:" followed by 64 lowercase hex
// characters.
func parseHash(s string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	h, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		return sum, fmt.Errorf("must start with %q", hashPrefix)
	}
	if len(h) != 2*sha256.Size || strings.ToLower(h) != h {
		return sum, fmt.Errorf("must be %q followed by %d lowercase hex characters", hashPrefix, 2*sha256.Size)
	}
	if _, err := hex.Decode(sum[:], []byte(h)); err != nil {
		return sum, fmt.Errorf("must be %q followed by %d lowercase hex characters", hashPrefix, 2*sha256.Size)
	}
	return sum, nil
}
