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
	"regexp"
	"slices"
	"strings"
	"time"
)

// Key store format versions. Version 1 has no expiry, revocation or
// platform grants; version 2 adds them. A store is written as version 1
// while no record uses a version 2 field, so that an older gateway keeps
// reading it, and as version 2 otherwise, so that an older gateway refuses
// it instead of honouring a key that has been revoked.
const (
	keyStoreVersion1 = 1
	keyStoreVersion  = 2
)

// ErrKeyNotFound means a key store operation named a key id the store does
// not hold.
var ErrKeyNotFound = errors.New("key not found")

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
	"expires_at": true, "revoked_at": true, "platform": true,
	"tenants": true, "tenant_pattern": true, "allow_user": true,
}

// KeyStore is a validated, immutable set of API key records, loaded from a
// key store file. Safe for concurrent use.
type KeyStore struct {
	records []KeyRecord
	byID    map[string]storedKey
}

// storedKey is a record with its hash decoded and its tenant pattern
// compiled once, at load time, not on every request.
type storedKey struct {
	rec KeyRecord
	sum [sha256.Size]byte
	// tenantRE is the record's anchored Platform.TenantPattern; nil
	// without one.
	tenantRE *regexp.Regexp
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
	if f.Version != keyStoreVersion1 && f.Version != keyStoreVersion {
		return nil, fmt.Errorf("version: must be %d or %d, got %d", keyStoreVersion1, keyStoreVersion, f.Version)
	}
	return newKeyStore(f.Version, f.Keys)
}

// newKeyStore validates records as a store of the given format version and
// indexes them. Every invalid record is reported.
func newKeyStore(version int, records []KeyRecord) (*KeyStore, error) {
	ks := &KeyStore{records: records, byID: make(map[string]storedKey, len(records))}
	var errs []error
	for i, rec := range records {
		sum, err := validateRecord(rec)
		if err == nil && version < keyStoreVersion && rec.needsVersion2() {
			err = fmt.Errorf("expires_at, revoked_at and platform need version %d", keyStoreVersion)
		}
		if err == nil {
			if _, dup := ks.byID[rec.ID]; dup {
				err = fmt.Errorf("id: duplicate %q", rec.ID)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d]: %w", i, err))
			continue
		}
		k := storedKey{rec: rec, sum: sum}
		if rec.Platform != nil && rec.Platform.TenantPattern != "" {
			// Cannot fail: validateRecord compiled the same pattern.
			k.tenantRE, _ = compileTenantPattern(rec.Platform.TenantPattern)
		}
		ks.byID[rec.ID] = k
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ks, nil
}

// needsVersion2 reports whether rec uses a field version 1 lacks.
func (rec KeyRecord) needsVersion2() bool {
	return rec.ExpiresAt != nil || rec.RevokedAt != nil || rec.Platform != nil
}

// clone returns a deep copy of rec, so that callers cannot change a
// store's records through the pointers and slices they share.
func (rec KeyRecord) clone() KeyRecord {
	if rec.ExpiresAt != nil {
		t := *rec.ExpiresAt
		rec.ExpiresAt = &t
	}
	if rec.RevokedAt != nil {
		t := *rec.RevokedAt
		rec.RevokedAt = &t
	}
	if rec.Platform != nil {
		rec.Platform = rec.Platform.clone()
	}
	return rec
}

func (g *PlatformGrant) clone() *PlatformGrant {
	if g == nil {
		return nil
	}
	c := *g
	c.Tenants = slices.Clone(g.Tenants)
	return &c
}

// Identity is the identity the key authenticates as.
func (rec KeyRecord) Identity() Identity {
	return Identity{User: rec.User, Team: rec.Team, Tenant: rec.Tenant, CostCenter: rec.CostCenter,
		Method: MethodAPIKey, KeyID: rec.ID}
}

// Revoked reports whether the key has been revoked. Revocation is
// permanent, whatever the time in RevokedAt.
func (rec KeyRecord) Revoked() bool { return rec.RevokedAt != nil }

// Expired reports whether the key has expired at now: now is at or after
// ExpiresAt.
func (rec KeyRecord) Expired(now time.Time) bool {
	return rec.ExpiresAt != nil && !now.Before(*rec.ExpiresAt)
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
	switch {
	case rec.User == "":
		errs = append(errs, errors.New("user: must not be empty"))
	case strings.ContainsAny(rec.User, ":/"):
		// Keeps the user IDs of the three methods apart: OIDC users are
		// "alias:subject" and trusted-header users "platform/tenant[/user]",
		// so a key user with neither character can equal neither.
		errs = append(errs, errors.New("user: must not contain ':' or '/' (reserved for identity-provider and tenant users)"))
	}
	if rec.ExpiresAt != nil && rec.ExpiresAt.IsZero() {
		errs = append(errs, errors.New("expires_at: must be a time"))
	}
	if rec.RevokedAt != nil && rec.RevokedAt.IsZero() {
		errs = append(errs, errors.New("revoked_at: must be a time"))
	}
	if rec.Platform != nil {
		if err := rec.Platform.validate(); err != nil {
			errs = append(errs, fmt.Errorf("platform: %w", err))
		}
	}
	return sum, errors.Join(errs...)
}

// validate checks a platform grant: it must allow some tenant, every
// listed tenant must be a non-empty string without surrounding space or
// control characters, and the pattern must compile as RE2.
func (g *PlatformGrant) validate() error {
	var errs []error
	if len(g.Tenants) == 0 && g.TenantPattern == "" {
		errs = append(errs, errors.New("must list tenants or give a tenant_pattern"))
	}
	for i, t := range g.Tenants {
		if t == "" || strings.TrimSpace(t) != t || strings.ContainsFunc(t, isKeyStoreControl) {
			errs = append(errs, fmt.Errorf("tenants[%d]: must be a non-empty string without surrounding space or control characters, got %q", i, t))
		}
	}
	if g.TenantPattern != "" {
		if _, err := compileTenantPattern(g.TenantPattern); err != nil {
			errs = append(errs, fmt.Errorf("tenant_pattern: %w", err))
		}
	}
	return errors.Join(errs...)
}

// compileTenantPattern compiles a TenantPattern to match the whole of a
// tenant ID: \A and \z anchor the whole text regardless of flags inside
// the pattern, and the group keeps an alternation ("a|b") inside the
// anchors, so pattern "acme-corp" does not allow "acme-corp-evil".
func compileTenantPattern(pattern string) (*regexp.Regexp, error) {
	return regexp.Compile(`\A(?:` + pattern + `)\z`)
}

func isKeyStoreControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

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
	out := make([]KeyRecord, len(ks.records))
	for i, rec := range ks.records {
		out[i] = rec.clone()
	}
	return out
}

// Lookup returns (a copy of) the record with the given key id.
func (ks *KeyStore) Lookup(id string) (KeyRecord, bool) {
	k, ok := ks.byID[id]
	return k.rec.clone(), ok
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
	err := modifyStore(path, true, func(recs []KeyRecord) ([]KeyRecord, error) {
		if slices.ContainsFunc(recs, func(r KeyRecord) bool { return r.ID == rec.ID }) {
			return nil, fmt.Errorf("id %q already in %s", rec.ID, path)
		}
		return append(recs, rec.clone()), nil
	})
	if err != nil {
		return fmt.Errorf("add key: %w", err)
	}
	return nil
}

// modifyStore is the read-modify-write every store change goes through.
// Under the store's lock (see AddKey) it reads and validates the file, lets
// f change the records, validates the result and replaces the file
// atomically. If the file does not exist it is an error wrapping
// fs.ErrNotExist, unless create is set, when f starts from no records. If
// f fails, or the existing file or the result does not validate, the file
// is left untouched.
func modifyStore(path string, create bool, f func([]KeyRecord) ([]KeyRecord, error)) error {
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer unlock()

	var recs []KeyRecord
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
	case err != nil:
		return err
	default:
		ks, err := decodeKeyStore(data)
		if err != nil {
			return fmt.Errorf("existing store %s: %w", path, err)
		}
		recs = ks.records
	}
	recs, err = f(recs)
	if err != nil {
		return err
	}
	version := keyStoreVersion1
	if slices.ContainsFunc(recs, KeyRecord.needsVersion2) {
		version = keyStoreVersion
	}
	if _, err := newKeyStore(version, recs); err != nil {
		return err
	}
	if recs == nil {
		recs = []KeyRecord{}
	}
	out, err := json.MarshalIndent(keyFile{Version: version, Keys: recs}, "", "  ")
	if err != nil {
		return err
	}
	out = append(out, '\n')
	return writeFileAtomic(path, out, 0o600)
}

// updateRecord applies f to the record with the given id, under the
// store's lock. It is an error wrapping ErrKeyNotFound if there is none.
func updateRecord(path, id string, f func(*KeyRecord) error) error {
	return modifyStore(path, false, func(recs []KeyRecord) ([]KeyRecord, error) {
		i := slices.IndexFunc(recs, func(r KeyRecord) bool { return r.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("key %q: %w", id, ErrKeyNotFound)
		}
		if err := f(&recs[i]); err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
		return recs, nil
	})
}

// RevokeKey revokes the key with the given id in the store at path,
// recording now (UTC, to the second) as RevokedAt. Revocation is permanent
// and idempotent: revoking a revoked key keeps its first RevokedAt. A
// gateway watching the store (KeyWatcher) refuses the key from its next
// poll, even if the caller's AWS session is still cached.
func RevokeKey(path, id string, now time.Time) error {
	err := updateRecord(path, id, func(rec *KeyRecord) error {
		if rec.RevokedAt == nil {
			t := now.UTC().Truncate(time.Second)
			rec.RevokedAt = &t
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	return nil
}

// SetKeyExpiry sets when the key with the given id stops working (from at
// on, in UTC to the second, rounded down so a key never outlives at); nil
// removes the expiry. A revoked key stays revoked whatever its expiry.
func SetKeyExpiry(path, id string, at *time.Time) error {
	err := updateRecord(path, id, func(rec *KeyRecord) error {
		rec.ExpiresAt = utcSecond(at)
		return nil
	})
	if err != nil {
		return fmt.Errorf("set key expiry: %w", err)
	}
	return nil
}

// UpdateKey changes the record with the given id through f, which gets a
// copy to edit, under the store's lock. It is meant for Team, Tenant,
// CostCenter, ExpiresAt and Platform. A change to what the key is (ID,
// Hash, User, CreatedAt) or lifting a revocation is refused: issue a new
// key instead. The result must validate.
//
// Because the session spec is derived from the record on every request, a
// key whose team changes gets a new STS session, with the new tag, on its
// next request after the gateway reloads the store.
func UpdateKey(path, id string, f func(*KeyRecord) error) error {
	err := updateRecord(path, id, func(rec *KeyRecord) error {
		c := rec.clone()
		if err := f(&c); err != nil {
			return err
		}
		switch {
		case c.ID != rec.ID || c.Hash != rec.Hash:
			return errors.New("id and hash cannot change; rotate the key instead")
		case c.User != rec.User:
			return errors.New("user cannot change; create a key for the new user instead")
		case !c.CreatedAt.Equal(rec.CreatedAt):
			return errors.New("created_at cannot change")
		case rec.RevokedAt != nil && (c.RevokedAt == nil || !c.RevokedAt.Equal(*rec.RevokedAt)):
			return errors.New("revocation cannot be lifted or changed")
		}
		c.ExpiresAt = utcSecond(c.ExpiresAt)
		c.RevokedAt = utcSecond(c.RevokedAt)
		*rec = c
		return nil
	})
	if err != nil {
		return fmt.Errorf("update key: %w", err)
	}
	return nil
}

// RotateKey replaces the key with the given id by a new one (new id, new
// secret) with the same user, team, tenant, cost center and platform grant,
// and returns the new key's plaintext (once) and record.
//
// With grace 0 the old key is revoked at once. With grace > 0 it keeps
// working until now+grace (its ExpiresAt is set to that, or kept if it
// already expires sooner), so that clients can switch over. If the old key
// had an expiry, the new key gets the same lifetime from now. A revoked or
// expired key cannot be rotated. Both changes are one atomic write.
func RotateKey(path, id string, now time.Time, grace time.Duration) (plaintext string, rec KeyRecord, err error) {
	if grace < 0 {
		return "", KeyRecord{}, fmt.Errorf("rotate key: grace must not be negative, got %v", grace)
	}
	plaintext, newID, err := NewKey()
	if err != nil {
		return "", KeyRecord{}, fmt.Errorf("rotate key: %w", err)
	}
	now = now.UTC().Truncate(time.Second)
	err = modifyStore(path, false, func(recs []KeyRecord) ([]KeyRecord, error) {
		i := slices.IndexFunc(recs, func(r KeyRecord) bool { return r.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("key %q: %w", id, ErrKeyNotFound)
		}
		old := &recs[i]
		switch {
		case old.Revoked():
			return nil, fmt.Errorf("key %s is revoked", id)
		case old.Expired(now):
			return nil, fmt.Errorf("key %s has expired", id)
		}
		rec = old.clone()
		rec.ID = newID
		rec.Hash = formatHash(hashKey(plaintext))
		rec.CreatedAt = now
		rec.RevokedAt = nil
		if old.ExpiresAt != nil {
			t := now.Add(old.ExpiresAt.Sub(old.CreatedAt))
			rec.ExpiresAt = &t
		}
		if grace == 0 {
			old.RevokedAt = &now
		} else if end := now.Add(grace); old.ExpiresAt == nil || end.Before(*old.ExpiresAt) {
			old.ExpiresAt = &end
		}
		return append(recs, rec), nil
	})
	if err != nil {
		return "", KeyRecord{}, fmt.Errorf("rotate key: %w", err)
	}
	return plaintext, rec.clone(), nil
}

// utcSecond returns *t in UTC rounded down to the second, or nil.
func utcSecond(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC().Truncate(time.Second)
	return &u
}

// CreateKey issues a new API key for user and records it in the key store
// file at path (see AddKey). The plaintext is returned exactly once; only
// its hash is stored. now is recorded as CreatedAt, in UTC to the second.
func CreateKey(path string, user, team, tenant, costCenter string, now time.Time) (plaintext string, rec KeyRecord, err error) {
	return IssueKey(path, KeyRecord{User: user, Team: team, Tenant: tenant, CostCenter: costCenter}, now)
}

// IssueKey issues a new API key described by tmpl (User is required; Team,
// Tenant, CostCenter, ExpiresAt and Platform are copied) and records it in
// the key store at path (see AddKey). The id, hash and CreatedAt (now, in
// UTC to the second) are filled in; tmpl's ID, Hash, CreatedAt and
// RevokedAt are ignored. The plaintext is returned exactly once.
func IssueKey(path string, tmpl KeyRecord, now time.Time) (plaintext string, rec KeyRecord, err error) {
	if tmpl.User == "" {
		return "", KeyRecord{}, errors.New("create key: user must not be empty")
	}
	plaintext, id, err := NewKey()
	if err != nil {
		return "", KeyRecord{}, fmt.Errorf("create key: %w", err)
	}
	rec = tmpl.clone()
	rec.ID = id
	rec.Hash = formatHash(hashKey(plaintext))
	rec.CreatedAt = now.UTC().Truncate(time.Second)
	rec.ExpiresAt = utcSecond(rec.ExpiresAt)
	rec.RevokedAt = nil
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
