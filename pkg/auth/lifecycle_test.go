package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// lifecycleStore makes a store holding alice's platform key (created at
// testNow) and bob's ordinary key, and returns its path and alice's key
// and record.
func lifecycleStore(t *testing.T) (path, alice string, rec KeyRecord) {
	path, alice, rec, _ = lifecycleStore2(t)
	return path, alice, rec
}

// lifecycleStore2 is lifecycleStore that also returns bob's key.
func lifecycleStore2(t *testing.T) (path, alice string, rec KeyRecord, bob string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "keys.json")
	alice, rec, err := IssueKey(path, KeyRecord{
		User: "alice@acme.org", Team: "ml", Tenant: "acme", CostCenter: "cc-42",
		Platform: &PlatformGrant{Tenants: []string{"t1"}, AllowUser: true},
	}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err = CreateKey(path, "bob", "", "", "", testNow)
	if err != nil {
		t.Fatal(err)
	}
	return path, alice, rec, bob
}

// authAt authenticates key against the store at path as of time at.
func authAt(t *testing.T, path, key string, at time.Time) (Identity, error) {
	t.Helper()
	ks, err := LoadKeyStore(path)
	if err != nil {
		t.Fatalf("LoadKeyStore() error = %v", err)
	}
	a := NewKeyVerifier(ks)
	a.Now = func() time.Time { return at }
	return a.Authenticate(requestWith(t, "X-Api-Key", key))
}

func TestKeyLifecycle(t *testing.T) {
	t0 := testNow.UTC().Truncate(time.Second)
	type check struct {
		key     string        // "old" or "new"
		at      time.Duration // after t0
		wantErr error
	}
	tests := []struct {
		name string
		// op changes the store and returns the new key, if it makes one.
		op     func(t *testing.T, path, id string) string
		checks []check
	}{
		{
			name:   "untouched key works at any time",
			op:     func(*testing.T, string, string) string { return "" },
			checks: []check{{"old", 0, nil}, {"old", 10 * 365 * 24 * time.Hour, nil}},
		},
		{
			name: "revoked key is refused at once",
			op: func(t *testing.T, path, id string) string {
				ksMust(t, RevokeKey(path, id, t0.Add(time.Hour)))
				return ""
			},
			// Revocation is permanent whatever the clock says.
			checks: []check{{"old", 0, ErrInvalidCredentials}, {"old", 2 * time.Hour, ErrInvalidCredentials}},
		},
		{
			name: "expired key is refused from ExpiresAt on",
			op: func(t *testing.T, path, id string) string {
				ksMust(t, SetKeyExpiry(path, id, keyTimePtr(t0.Add(time.Hour))))
				return ""
			},
			checks: []check{
				{"old", time.Hour - time.Nanosecond, nil},
				{"old", time.Hour, ErrInvalidCredentials},
				{"old", 2 * time.Hour, ErrInvalidCredentials},
			},
		},
		{
			name: "expiry removed",
			op: func(t *testing.T, path, id string) string {
				ksMust(t, SetKeyExpiry(path, id, keyTimePtr(t0.Add(time.Hour))))
				ksMust(t, SetKeyExpiry(path, id, nil))
				return ""
			},
			checks: []check{{"old", 2 * time.Hour, nil}},
		},
		{
			name: "expiry rounds down, never extends",
			op: func(t *testing.T, path, id string) string {
				ksMust(t, SetKeyExpiry(path, id, keyTimePtr(t0.Add(time.Hour+999*time.Millisecond))))
				return ""
			},
			checks: []check{{"old", time.Hour - time.Nanosecond, nil}, {"old", time.Hour, ErrInvalidCredentials}},
		},
		{
			name: "rotate without grace revokes the old key",
			op: func(t *testing.T, path, id string) string {
				key, _, err := RotateKey(path, id, t0, 0)
				ksMust(t, err)
				return key
			},
			checks: []check{{"old", 0, ErrInvalidCredentials}, {"new", 0, nil}},
		},
		{
			name: "rotate with grace keeps the old key until then",
			op: func(t *testing.T, path, id string) string {
				key, _, err := RotateKey(path, id, t0, 24*time.Hour)
				ksMust(t, err)
				return key
			},
			checks: []check{
				{"old", 24*time.Hour - time.Second, nil},
				{"old", 24 * time.Hour, ErrInvalidCredentials},
				{"new", 48 * time.Hour, nil},
			},
		},
		{
			name: "grace never extends an earlier expiry",
			op: func(t *testing.T, path, id string) string {
				ksMust(t, SetKeyExpiry(path, id, keyTimePtr(t0.Add(time.Hour))))
				key, _, err := RotateKey(path, id, t0, 24*time.Hour)
				ksMust(t, err)
				return key
			},
			checks: []check{
				{"old", time.Hour, ErrInvalidCredentials},
				// The new key gets the old key's lifetime (1h) from now.
				{"new", time.Hour - time.Second, nil},
				{"new", time.Hour, ErrInvalidCredentials},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, alice, rec, bob := lifecycleStore2(t)
			keys := map[string]string{"old": alice, "new": tt.op(t, path, rec.ID)}
			for _, c := range tt.checks {
				got, err := authAt(t, path, keys[c.key], t0.Add(c.at))
				if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
					t.Errorf("Authenticate(%s key at t0+%v) error = %v, want %v", c.key, c.at, err, c.wantErr)
					continue
				}
				if err != nil {
					assertNoLeak(t, err, keys[c.key])
					continue
				}
				want := Identity{User: rec.User, Team: rec.Team, Tenant: rec.Tenant, CostCenter: rec.CostCenter, Method: MethodAPIKey}
				got.KeyID = ""
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Authenticate(%s key at t0+%v) mismatch (-want +got):\n%s", c.key, c.at, diff)
				}
			}
			// Bob's key is never affected.
			if got, err := authAt(t, path, bob, t0); err != nil || got.User != "bob" {
				t.Errorf("Authenticate(bob) = %+v, %v; want bob", got, err)
			}
		})
	}
}

func TestRevokeKeyIdempotent(t *testing.T) {
	path, _, rec := lifecycleStore(t)
	first := testNow.Add(time.Minute)
	ksMust(t, RevokeKey(path, rec.ID, first))
	ksMust(t, RevokeKey(path, rec.ID, first.Add(time.Hour)))
	got := ksLookup(t, path, rec.ID)
	if want := first.UTC().Truncate(time.Second); got.RevokedAt == nil || !got.RevokedAt.Equal(want) {
		t.Errorf("RevokedAt after revoking twice = %v, want the first revocation %v", got.RevokedAt, want)
	}
}

func TestRotateKeyRecord(t *testing.T) {
	path, _, old := lifecycleStore(t)
	now := testNow.Add(time.Hour)
	key, rec, err := RotateKey(path, old.ID, now, 0)
	if err != nil {
		t.Fatalf("RotateKey() error = %v", err)
	}
	if rec.ID == old.ID || rec.Hash == old.Hash || rec.Hash != formatHash(hashKey(key)) {
		t.Errorf("RotateKey() = id %s hash %s, want a new id and the new key's hash", rec.ID, rec.Hash)
	}
	want := old.clone()
	want.ID, want.Hash, want.CreatedAt = rec.ID, rec.Hash, now.UTC().Truncate(time.Second)
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("RotateKey() record mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(rec, ksLookup(t, path, rec.ID)); diff != "" {
		t.Errorf("stored rotated record mismatch (-want +got):\n%s", diff)
	}

	// A revoked key cannot be rotated back to life.
	if _, _, err := RotateKey(path, old.ID, now, 0); err == nil {
		t.Error("RotateKey(revoked key) error = nil, want an error")
	}
	// Nor an expired one.
	ksMust(t, SetKeyExpiry(path, rec.ID, keyTimePtr(now)))
	if _, _, err := RotateKey(path, rec.ID, now, 0); err == nil {
		t.Error("RotateKey(expired key) error = nil, want an error")
	}
	if _, _, err := RotateKey(path, rec.ID, testNow, -time.Second); err == nil {
		t.Error("RotateKey(grace -1s) error = nil, want an error")
	}
}

func TestUpdateKey(t *testing.T) {
	tests := []struct {
		name    string
		f       func(*KeyRecord) error
		wantErr bool
		check   func(t *testing.T, got KeyRecord)
	}{
		{"team", func(r *KeyRecord) error { r.Team = "research"; return nil }, false,
			func(t *testing.T, got KeyRecord) {
				if got.Team != "research" || got.Tenant != "acme" {
					t.Errorf("after UpdateKey(team) record = %+v, want team research and tenant unchanged", got)
				}
			}},
		{"tenant and cost center", func(r *KeyRecord) error { r.Tenant, r.CostCenter = "globex", ""; return nil }, false,
			func(t *testing.T, got KeyRecord) {
				if got.Tenant != "globex" || got.CostCenter != "" {
					t.Errorf("after UpdateKey(tenant) record = %+v, want tenant globex and no cost center", got)
				}
			}},
		{"platform grant", func(r *KeyRecord) error { r.Platform = &PlatformGrant{TenantPattern: "acme-[a-z]+"}; return nil }, false,
			func(t *testing.T, got KeyRecord) {
				if diff := cmp.Diff(&PlatformGrant{TenantPattern: "acme-[a-z]+"}, got.Platform); diff != "" {
					t.Errorf("after UpdateKey(platform) mismatch (-want +got):\n%s", diff)
				}
			}},
		{"f fails", func(*KeyRecord) error { return errors.New("no") }, true, nil},
		{"id", func(r *KeyRecord) error { r.ID = goodID; return nil }, true, nil},
		{"hash", func(r *KeyRecord) error { r.Hash = goodHash; return nil }, true, nil},
		{"user", func(r *KeyRecord) error { r.User = "mallory"; return nil }, true, nil},
		{"created_at", func(r *KeyRecord) error { r.CreatedAt = r.CreatedAt.Add(time.Second); return nil }, true, nil},
		{"bad pattern", func(r *KeyRecord) error { r.Platform.TenantPattern = "("; return nil }, true, nil},
		{"empty grant tenant", func(r *KeyRecord) error { r.Platform.Tenants = []string{"a", ""}; return nil }, true, nil},
		{"empty grant", func(r *KeyRecord) error { r.Platform = &PlatformGrant{AllowUser: true}; return nil }, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _, rec := lifecycleStore(t)
			before, err := os.ReadFile(path)
			ksMust(t, err)
			err = UpdateKey(path, rec.ID, tt.f)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("UpdateKey(%s) error = %v, want error: %v", tt.name, err, tt.wantErr)
			}
			if tt.wantErr {
				if after, _ := os.ReadFile(path); string(after) != string(before) {
					t.Errorf("refused UpdateKey(%s) changed the file:\n%s", tt.name, after)
				}
				return
			}
			tt.check(t, ksLookup(t, path, rec.ID))
		})
	}

	t.Run("revocation cannot be lifted", func(t *testing.T) {
		path, _, rec := lifecycleStore(t)
		ksMust(t, RevokeKey(path, rec.ID, testNow))
		if err := UpdateKey(path, rec.ID, func(r *KeyRecord) error { r.RevokedAt = nil; return nil }); err == nil {
			t.Error("UpdateKey(RevokedAt = nil) error = nil, want an error")
		}
		if !ksLookup(t, path, rec.ID).Revoked() {
			t.Error("key no longer revoked after a refused UpdateKey")
		}
	})
}

func TestStoreOpsUnknownKey(t *testing.T) {
	path, _, _ := lifecycleStore(t)
	missing := filepath.Join(t.TempDir(), "missing.json")
	ops := map[string]func(path string) error{
		"RevokeKey":    func(p string) error { return RevokeKey(p, goodID, testNow) },
		"SetKeyExpiry": func(p string) error { return SetKeyExpiry(p, goodID, nil) },
		"UpdateKey":    func(p string) error { return UpdateKey(p, goodID, func(*KeyRecord) error { return nil }) },
		"RotateKey":    func(p string) error { _, _, err := RotateKey(p, goodID, testNow, 0); return err },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			if err := op(path); !errors.Is(err, ErrKeyNotFound) {
				t.Errorf("%s(unknown id) error = %v, want %v", name, err, ErrKeyNotFound)
			}
			// A missing store is not silently created.
			if err := op(missing); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s(missing store) error = %v, want %v", name, err, fs.ErrNotExist)
			}
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(missing store) = %v after store operations, want not exist", err)
	}
}

// TestStoreVersion checks that a store is written as version 1 until a
// record needs version 2, so an older gateway refuses exactly the stores
// it would misread.
func TestStoreVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	_, rec, err := CreateKey(path, "alice", "", "", "", testNow)
	ksMust(t, err)
	if got := fileVersion(t, path); got != 1 {
		t.Errorf("version after CreateKey = %d, want 1", got)
	}
	ksMust(t, RevokeKey(path, rec.ID, testNow))
	if got := fileVersion(t, path); got != 2 {
		t.Errorf("version after RevokeKey = %d, want 2", got)
	}
}

func fileVersion(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	ksMust(t, err)
	var f struct{ Version int }
	ksMust(t, json.Unmarshal(data, &f))
	return f.Version
}

func TestLoadKeyStoreVersion2Fields(t *testing.T) {
	rec := func(extra string) string {
		return `{"id":"` + goodID + `","hash":"` + goodHash + `","user":"a"` + extra + `}`
	}
	tests := []struct {
		name    string
		file    string
		wantErr bool
	}{
		{"expiry and revocation", `{"version":2,"keys":[` + rec(`,"expires_at":"2026-01-01T00:00:00Z","revoked_at":"2026-01-01T00:00:00Z"`) + `]}`, false},
		{"platform tenants", `{"version":2,"keys":[` + rec(`,"platform":{"tenants":["a","b"],"allow_user":true}`) + `]}`, false},
		{"platform pattern", `{"version":2,"keys":[` + rec(`,"platform":{"tenant_pattern":"acme-[a-z]+"}`) + `]}`, false},
		{"version 1 with expiry", `{"version":1,"keys":[` + rec(`,"expires_at":"2026-01-01T00:00:00Z"`) + `]}`, true},
		{"version 1 with platform", `{"version":1,"keys":[` + rec(`,"platform":{"tenants":["a"]}`) + `]}`, true},
		{"bad pattern", `{"version":2,"keys":[` + rec(`,"platform":{"tenant_pattern":"a(b"}`) + `]}`, true},
		{"empty tenant", `{"version":2,"keys":[` + rec(`,"platform":{"tenants":[""]}`) + `]}`, true},
		{"padded tenant", `{"version":2,"keys":[` + rec(`,"platform":{"tenants":[" a"]}`) + `]}`, true},
		{"control in tenant", `{"version":2,"keys":[` + rec(`,"platform":{"tenants":["a\n"]}`) + `]}`, true},
		{"empty grant", `{"version":2,"keys":[` + rec(`,"platform":{}`) + `]}`, true},
		{"null platform", `{"version":2,"keys":[` + rec(`,"platform":null`) + `]}`, false},
		{"grant field at record level", `{"version":2,"keys":[` + rec(`,"tenants":["a"]`) + `]}`, true},
		{"unknown grant field", `{"version":2,"keys":[` + rec(`,"platform":{"tenants":["a"],"any":true}`) + `]}`, true},
		{"wrong case grant field", `{"version":2,"keys":[` + rec(`,"platform":{"Tenants":["a"]}`) + `]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeKeyStore([]byte(tt.file))
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("decodeKeyStore(%s) error = %v, want error: %v", tt.file, err, tt.wantErr)
			}
		})
	}
}

// TestRecordsAreCopies checks that callers cannot change a store through
// what it hands out.
func TestRecordsAreCopies(t *testing.T) {
	path, alice, rec := lifecycleStore(t)
	ks, err := LoadKeyStore(path)
	ksMust(t, err)
	ks.Records()[0].Platform.Tenants[0] = "evil"
	r, _ := ks.Lookup(rec.ID)
	r.Platform.Tenants[0] = "evil"
	_, grant, err := NewKeyVerifier(ks).AuthenticateKey(requestWith(t, "X-Api-Key", alice))
	ksMust(t, err)
	grant.Tenants[0] = "evil"
	if got, _ := ks.Lookup(rec.ID); got.Platform.Tenants[0] != "t1" {
		t.Errorf("stored grant tenants = %q after callers edited copies, want [t1]", got.Platform.Tenants)
	}
}

func TestAuthenticateKeyGrant(t *testing.T) {
	path, alice, _ := lifecycleStore(t)
	ks, err := LoadKeyStore(path)
	ksMust(t, err)
	bob := ks.Records()[1]
	a := NewKeyVerifier(ks)
	_, grant, err := a.AuthenticateKey(requestWith(t, "Authorization", "Bearer "+alice))
	ksMust(t, err)
	if diff := cmp.Diff(&PlatformGrant{Tenants: []string{"t1"}, AllowUser: true}, grant); diff != "" {
		t.Errorf("AuthenticateKey(platform key) grant mismatch (-want +got):\n%s", diff)
	}
	// An ordinary key has no grant; a refused key returns none either.
	_, grant, err = a.AuthenticateKey(requestWith(t, "X-Api-Key", fixedKey(bob.ID, 3)))
	if err == nil || grant != nil {
		t.Errorf("AuthenticateKey(wrong secret) = grant %v, error %v; want nil, an error", grant, err)
	}
}

func TestPresentedCredential(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		want    string
		wantErr error
	}{
		{"jwt bearer", []string{"Authorization", "Bearer eyJ.a.b"}, "eyJ.a.b", nil},
		{"x-api-key", []string{"X-Api-Key", " k "}, "k", nil},
		{"none", nil, "", ErrNoCredentials},
		{"both", []string{"Authorization", "Bearer a", "X-Api-Key", "a"}, "", ErrBadRequest},
		{"basic", []string{"Authorization", "Basic a"}, "", ErrInvalidCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PresentedCredential(requestWith(t, tt.headers...).Header)
			if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("PresentedCredential(%q) = %q, %v; want %q, %v", tt.headers, got, err, tt.want, tt.wantErr)
			}
		})
	}
	if k, _, _ := NewKey(); !IsAPIKey(k) || IsAPIKey("eyJhbGciOiJSUzI1NiJ9.e30.sig") {
		t.Error("IsAPIKey does not tell a gateway key from a JWT")
	}
}

// TestRevokeWhileCreating runs revocations and creations at once on one
// store: every write is kept, none is lost to a concurrent one.
func TestRevokeWhileCreating(t *testing.T) {
	const n = 10
	path := filepath.Join(t.TempDir(), "keys.json")
	old := make([]KeyRecord, n)
	for i := range n {
		_, rec, err := CreateKey(path, fmt.Sprintf("old-%d", i), "", "", "", testNow)
		ksMust(t, err)
		old[i] = rec
	}
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		wg.Go(func() { errs[i] = RevokeKey(path, old[i].ID, testNow) })
		wg.Go(func() { _, _, errs[n+i] = CreateKey(path, fmt.Sprintf("new-%d", i), "", "", "", testNow) })
	}
	wg.Wait()
	ksMust(t, errors.Join(errs...))
	ks, err := LoadKeyStore(path)
	ksMust(t, err)
	recs := ks.Records()
	if len(recs) != 2*n {
		t.Fatalf("store has %d keys after %d creations, want %d", len(recs), 2*n, 2*n)
	}
	for _, r := range recs {
		if want := strings.HasPrefix(r.User, "old-"); r.Revoked() != want {
			t.Errorf("key of %s: Revoked() = %v, want %v", r.User, r.Revoked(), want)
		}
	}
}

func ksLookup(t *testing.T, path, id string) KeyRecord {
	t.Helper()
	ks, err := LoadKeyStore(path)
	ksMust(t, err)
	rec, ok := ks.Lookup(id)
	if !ok {
		t.Fatalf("Lookup(%s) = _, false, want the record", id)
	}
	return rec
}

func ksMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func keyTimePtr(v time.Time) *time.Time { return &v }
