package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// keyStoreVersion is the only key store format this package reads and
// writes. A later format (revocation, expiry) bumps it, so an older
// gateway refuses a newer file instead of ignoring fields it does not know.
const keyStoreVersion = 1

// KeyRecord is one API key as the key store holds it: the hash of the key,
// never the key, plus the identity the key authenticates as.
type KeyRecord struct {
	// ID is the key's non-secret identifier: 16 lowercase hex characters.
	ID string `json:"id"`
	// Hash is "sha256:" + the lowercase hex SHA-256 of the full plaintext
	// key.
	Hash string `json:"hash"`
	// User is the caller's unique name; it becomes the STS
	// RoleSessionName. Required.
	User string `json:"user"`
	// Team, Tenant and CostCenter become STS session tags; empty means
	// the tag is not sent.
	Team       string `json:"team"`
	Tenant     string `json:"tenant"`
	CostCenter string `json:"cost_center"`
	// CreatedAt is when the key was issued (RFC 3339 in the file).
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt, if set, is when the key stops working.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// RevokedAt, if set, is when the key was revoked; it no longer works.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Platform, if set, makes this a platform key: a SaaS backend that may
	// assert the tenant (and user) it acts for through trusted headers.
	Platform *PlatformGrant `json:"platform,omitempty"`
}

// PlatformGrant says which tenants a platform key may act for. A tenant is
// allowed if it is in Tenants or matches TenantPattern.
type PlatformGrant struct {
	// Tenants lists the tenant IDs the key may assert.
	Tenants []string `json:"tenants,omitempty"`
	// TenantPattern is an RE2 pattern matched against the whole tenant ID.
	TenantPattern string `json:"tenant_pattern,omitempty"`
	// AllowUser lets the key also assert an end user within the tenant.
	AllowUser bool `json:"allow_user,omitempty"`
}

// keyFile is the on-disk layout of a key store.
type keyFile struct {
	Version int         `json:"version"`
	Keys    []KeyRecord `json:"keys"`
}

// jsonNames are every object member name the key store format has, in
// their exact case. encoding/json matches names case-insensitively and
// keeps the last of duplicate names; checkMemberNames closes both gaps.
var jsonNames = map[string]bool{
	"version": true, "keys": true,
	"id": true, "hash": true, "user": true, "team": true, "tenant": true,
	"cost_center": true, "created_at": true,
}

// KeyStore is a validated, immutable set of API key records, loaded from a
// key store file. Safe for concurrent use.
type KeyStore struct {
	records []KeyRecord
	byID    map[string]storedKey
}

// storedKey is a record with its hash decoded once, at load time.
type storedKey struct {
	rec KeyRecord
	sum [sha256.Size]byte
}

// LoadKeyStore reads and validates the key store file at path.
//
// A missing file is an error (wrapping fs.ErrNotExist), not an empty
// store: a mistyped path should stop the gateway at startup rather than
// leave it running and refusing every caller. An empty store is written
// explicitly as {"version":1,"keys":[]}.
//
// Decoding is strict: unknown or duplicate member names, names in the
// wrong case, trailing data and an unknown version are errors. Every
// invalid record is reported, joined with errors.Join.
func LoadKeyStore(path string) (*KeyStore, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load key store: %w", err)
	}
	ks, err := decodeKeyStore(data)
	if err != nil {
		return nil, fmt.Errorf("load key store %s: %w", path, err)
	}
	return ks, nil
}

func decodeKeyStore(data []byte) (*KeyStore, error) {
	if err := checkMemberNames(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f keyFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode: trailing data after the top-level object")
	}
	if f.Version != keyStoreVersion {
		return nil, fmt.Errorf("version: must be %d, got %d", keyStoreVersion, f.Version)
	}
	ks := &KeyStore{records: f.Keys, byID: make(map[string]storedKey, len(f.Keys))}
	var errs []error
	for i, rec := range f.Keys {
		sum, err := validateRecord(rec)
		if err == nil {
			if _, dup := ks.byID[rec.ID]; dup {
				err = fmt.Errorf("id: duplicate %q", rec.ID)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d]: %w", i, err))
			continue
		}
		ks.byID[rec.ID] = storedKey{rec: rec, sum: sum}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ks, nil
}

// validateRecord checks one record and returns its decoded hash. All of
// the record's problems are reported together.
func validateRecord(rec KeyRecord) ([sha256.Size]byte, error) {
	var errs []error
	if !isKeyID(rec.ID) {
		errs = append(errs, fmt.Errorf("id: must be %d lowercase hex characters, got %q", keyIDLen, rec.ID))
	}
	sum, err := parseHash(rec.Hash)
	if err != nil {
		// The hash is not secret, but it is not useful in a message either.
		errs = append(errs, fmt.Errorf("hash: %w", err))
	}
	if rec.User == "" {
		errs = append(errs, errors.New("user: must not be empty"))
	}
	return sum, errors.Join(errs...)
}

// checkMemberNames walks the JSON token stream and rejects object member
// names that are not in jsonNames exactly, and names repeated within one
// object. DisallowUnknownFields then rejects known names at the wrong
// level.
func checkMemberNames(data []byte) error {
	type frame struct {
		seen     map[string]bool // nil for an array
		wantName bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		if n := len(stack); n > 0 && stack[n-1].wantName {
			if name, ok := tok.(string); ok {
				top := stack[n-1]
				if !jsonNames[name] {
					return fmt.Errorf("decode: unknown field %q", name)
				}
				if top.seen[name] {
					return fmt.Errorf("decode: duplicate field %q", name)
				}
				top.seen[name] = true
				top.wantName = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{seen: map[string]bool{}, wantName: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value just ended; inside an object a name comes next.
		if n := len(stack); n > 0 && stack[n-1].seen != nil {
			stack[n-1].wantName = true
		}
	}
}

// Records returns a copy of the store's records in file order.
func (ks *KeyStore) Records() []KeyRecord {
	return slices.Clone(ks.records)
}

// Lookup returns the record with the given key id.
func (ks *KeyStore) Lookup(id string) (KeyRecord, bool) {
	k, ok := ks.byID[id]
	return k.rec, ok
}

// AddKey appends rec to the key store file at path, creating the file if it
// does not exist.
//
// Concurrent AddKey calls, in one process or several (two `gateway keys
// create` at once), are serialised by an exclusive flock on a sidecar
// file, path + ".lock", which is created next to the store and never
// removed (removing it would let two writers lock different inodes). The
// new file is written to a temporary file in the same directory with mode
// 0600, synced and renamed over path, so a reader sees the old store or
// the new one, never a partial one.
//
// An existing file that does not validate is left untouched and reported,
// rather than overwritten.
func AddKey(path string, rec KeyRecord) error {
	if _, err := validateRecord(rec); err != nil {
		return fmt.Errorf("add key: %w", err)
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return fmt.Errorf("add key: lock %s: %w", path, err)
	}
	defer unlock()

	f := keyFile{Version: keyStoreVersion}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("add key: %w", err)
	default:
		ks, err := decodeKeyStore(data)
		if err != nil {
			return fmt.Errorf("add key: existing store %s: %w", path, err)
		}
		if _, dup := ks.byID[rec.ID]; dup {
			return fmt.Errorf("add key: id %q already in %s", rec.ID, path)
		}
		f.Keys = ks.records
	}
	f.Keys = append(f.Keys, rec)
	if f.Keys == nil {
		f.Keys = []KeyRecord{}
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("add key: %w", err)
	}
	out = append(out, '\n')
	if err := writeFileAtomic(path, out, 0o600); err != nil {
		return fmt.Errorf("add key: %w", err)
	}
	return nil
}

// CreateKey issues a new API key for user and records it in the key store
// file at path (see AddKey). The plaintext is returned exactly once; only
// its hash is stored. now is recorded as CreatedAt, in UTC to the second.
func CreateKey(path string, user, team, tenant, costCenter string, now time.Time) (plaintext string, rec KeyRecord, err error) {
	if user == "" {
		return "", KeyRecord{}, errors.New("create key: user must not be empty")
	}
	plaintext, id, err := NewKey()
	if err != nil {
		return "", KeyRecord{}, fmt.Errorf("create key: %w", err)
	}
	rec = KeyRecord{
		ID:         id,
		Hash:       formatHash(hashKey(plaintext)),
		User:       user,
		Team:       team,
		Tenant:     tenant,
		CostCenter: costCenter,
		CreatedAt:  now.UTC().Truncate(time.Second),
	}
	if err := AddKey(path, rec); err != nil {
		return "", KeyRecord{}, fmt.Errorf("create key: %w", err)
	}
	return plaintext, rec, nil
}

// writeFileAtomic replaces path with data via a synced temporary file in
// the same directory and a rename.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable.
	d, err := os.Open(dir)
	if err != nil {
		return nil // the new file is in place; only durability is unknown
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}
