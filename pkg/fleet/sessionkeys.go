package fleet

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// SessionKeys are the AES-256-GCM keys that seal shared sessions
// (fleet.session_key_file). The first key seals; every key opens, so a key
// is rotated in two rollouts: add the new key as a later line everywhere
// (every replica can open it), then move it first (replicas seal with it),
// and drop the old one once its sessions have expired (an hour).
//
// Nonces are random (96 bits), so one key must seal fewer than 2^32
// sessions (NIST SP 800-38D, section 8.3): over 30 years for 10,000
// users active around the clock (one seal per user per 45 minutes), but
// rotate yearly anyway.
type SessionKeys struct {
	seal *sessionKey            // the first line's key
	byID map[string]*sessionKey // every key, for opening
}

type sessionKey struct {
	id   string
	aead cipher.AEAD // AES-256-GCM with a random nonce prepended (NewGCMWithRandomNonce)
}

// Key file syntax: "id:base64(32 bytes)" per line; blank lines and lines
// starting with '#' are ignored. An ID is 1-32 characters of
// [A-Za-z0-9._-]: it is written in clear into every sealed value, so that a
// replica knows which key opens it.
const maxKeyIDLen = 32

// LoadSessionKeys reads a key file (see SessionKeys). Errors name the line
// and never quote key material.
func LoadSessionKeys(path string) (*SessionKeys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("session_key_file: %w", err)
	}
	k, err := ParseSessionKeys(b)
	if err != nil {
		return nil, fmt.Errorf("session_key_file %s: %w", path, err)
	}
	return k, nil
}

// ParseSessionKeys parses the contents of a key file (see SessionKeys),
// reporting every bad line at once. It never quotes key material.
func ParseSessionKeys(data []byte) (*SessionKeys, error) {
	k := &SessionKeys{byID: map[string]*sessionKey{}}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, b64, ok := strings.Cut(line, ":")
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: want id:base64-key", n))
			continue
		}
		if !validKeyID(id) {
			errs = append(errs, fmt.Errorf("line %d: key id must be 1-%d characters of [A-Za-z0-9._-]", n, maxKeyIDLen))
			continue
		}
		if _, dup := k.byID[id]; dup {
			errs = append(errs, fmt.Errorf("line %d: key id %q used twice", n, id))
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: key %q: not standard base64", n, id))
			continue
		}
		if len(raw) != 32 {
			errs = append(errs, fmt.Errorf("line %d: key %q: must be 32 bytes (AES-256), got %d", n, id, len(raw)))
			continue
		}
		block, _ := aes.NewCipher(raw) // 32 bytes: cannot fail
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		sk := &sessionKey{id: id, aead: aead}
		k.byID[id] = sk
		if k.seal == nil {
			k.seal = sk
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 && k.seal == nil {
		errs = append(errs, errors.New("no keys: want at least one id:base64-key line"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return k, nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Sealed value layout, version 1:
//
//	0x01 | len(key id) | key id | nonce (12) | AES-256-GCM ciphertext and tag (16)
//
// The additional data is sealAAD, then the header (version, length and key
// id), then the spec: a value opens only with the key it names and only for
// the spec it was sealed for, so a value copied to another spec's Redis key
// (or with its key id edited) fails to open.
const (
	sealVersion = 1
	sealAAD     = "bedrock-gateway fleet session v1\x00"
)

// Why a sealed value did not open; the reason label of
// bedrock_gateway_fleet_session_decrypt_failures_total.
var (
	errUnknownKey = errors.New("sealed with a key id not in session_key_file")
	errMalformed  = errors.New("not a sealed session")
	errOpen       = errors.New("authentication failed (wrong key, tampered, or sealed for another spec)")
)

// sealFor encrypts plaintext for spec with the first key.
func (k *SessionKeys) sealFor(spec string, plaintext []byte) []byte {
	hdr := make([]byte, 0, 2+len(k.seal.id)+k.seal.aead.Overhead()+len(plaintext))
	hdr = append(hdr, sealVersion, byte(len(k.seal.id)))
	hdr = append(hdr, k.seal.id...)
	return k.seal.aead.Seal(hdr, nil, plaintext, aad(hdr, spec))
}

// openFor decrypts a value sealed by sealFor for spec, or returns one of
// errUnknownKey, errMalformed or errOpen.
func (k *SessionKeys) openFor(spec string, value []byte) ([]byte, error) {
	if len(value) < 2 || value[0] != sealVersion || int(value[1]) == 0 || len(value) < 2+int(value[1]) {
		return nil, errMalformed
	}
	n := 2 + int(value[1])
	hdr, ct := value[:n], value[n:]
	sk, ok := k.byID[string(hdr[2:])]
	if !ok {
		return nil, errUnknownKey
	}
	pt, err := sk.aead.Open(nil, nil, ct, aad(hdr, spec))
	if err != nil {
		return nil, errOpen
	}
	return pt, nil
}

// aad is the additional data binding a value to its header and spec. The
// header is self-delimiting (its length byte), so header and spec cannot
// be re-split.
func aad(hdr []byte, spec string) []byte {
	b := make([]byte, 0, len(sealAAD)+len(hdr)+len(spec))
	b = append(b, sealAAD...)
	b = append(b, hdr...)
	return append(b, spec...)
}
