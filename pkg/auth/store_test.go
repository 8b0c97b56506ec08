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

var testNow = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.FixedZone("CET", 3600))

func TestCreateKeyRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	key, rec, err := CreateKey(path, "alice@acme.org", "ml", "acme", "cc-42", testNow)
	if err != nil {
		t.Fatalf("CreateKey() error = %v", err)
	}
	want := KeyRecord{
		ID:         key[len(keyPrefix) : len(keyPrefix)+keyIDLen],
		Hash:       formatHash(hashKey(key)),
		User:       "alice@acme.org",
		Team:       "ml",
		Tenant:     "acme",
		CostCenter: "cc-42",
		CreatedAt:  time.Date(2026, 3, 1, 11, 30, 45, 0, time.UTC),
	}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("CreateKey() record mismatch (-want +got):\n%s", diff)
	}
	ks, err := LoadKeyStore(path)
	if err != nil {
		t.Fatalf("LoadKeyStore() error = %v", err)
	}
	got, ok := ks.Lookup(rec.ID)
	if !ok {
		t.Fatalf("Lookup(%q) = _, false, want the created record", rec.ID)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Lookup() after reload mismatch (-want +got):\n%s", diff)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), key[len(keyPrefix)+keyIDLen+1:]) {
		t.Errorf("key store file contains the key's secret:\n%s", data)
	}
	// The file uses the documented field names and an RFC 3339 timestamp.
	var raw struct {
		Version int                 `json:"version"`
		Keys    []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("key store is not the documented JSON: %v\n%s", err, data)
	}
	wantRaw := map[string]string{
		"id": want.ID, "hash": want.Hash, "user": "alice@acme.org", "team": "ml",
		"tenant": "acme", "cost_center": "cc-42", "created_at": "2026-03-01T11:30:45Z",
	}
	if raw.Version != 1 || len(raw.Keys) != 1 {
		t.Fatalf("key store = version %d with %d keys, want version 1 with 1 key", raw.Version, len(raw.Keys))
	}
	if diff := cmp.Diff(wantRaw, raw.Keys[0]); diff != "" {
		t.Errorf("key store record mismatch (-want +got):\n%s", diff)
	}
}

func TestCreateKeyEmptyUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	if _, _, err := CreateKey(path, "", "ml", "", "", testNow); err == nil {
		t.Fatalf("CreateKey(user \"\") error = nil, want an error")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(%s) after refused CreateKey = %v, want not exist", path, err)
	}
}

func TestKeyStoreFileMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	for range 2 { // create, then rewrite
		if _, _, err := CreateKey(path, "alice", "", "", "", testNow); err != nil {
			t.Fatalf("CreateKey() error = %v", err)
		}
		for _, p := range []string{path, path + ".lock"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("mode of %s = %v, want %v", filepath.Base(p), got, os.FileMode(0o600))
			}
		}
	}
	// No temporary files are left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"keys.json", "keys.json.lock"}, names); diff != "" {
		t.Errorf("directory contents mismatch (-want +got):\n%s", diff)
	}
}

func TestCreateKeyConcurrent(t *testing.T) {
	const n = 20
	path := filepath.Join(t.TempDir(), "keys.json")
	var wg sync.WaitGroup
	keys := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			keys[i], _, errs[i] = CreateKey(path, fmt.Sprintf("user-%d", i), "", "", "", testNow)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent CreateKey() error = %v", err)
	}
	ks, err := LoadKeyStore(path)
	if err != nil {
		t.Fatalf("LoadKeyStore() error = %v", err)
	}
	if got := len(ks.Records()); got != n {
		t.Fatalf("len(Records()) = %d after %d concurrent CreateKey, want %d", got, n, n)
	}
	a := NewKeyVerifier(ks)
	for i, key := range keys {
		id, err := a.Authenticate(requestWith(t, "X-Api-Key", key))
		if err != nil {
			t.Fatalf("Authenticate(key %d) error = %v", i, err)
		}
		if want := fmt.Sprintf("user-%d", i); id.User != want {
			t.Errorf("Authenticate(key %d).User = %q, want %q", i, id.User, want)
		}
	}
}

func TestLoadKeyStoreMissing(t *testing.T) {
	_, err := LoadKeyStore(filepath.Join(t.TempDir(), "nope.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadKeyStore(missing) error = %v, want wrapping %v", err, fs.ErrNotExist)
	}
}

const (
	goodID   = "0123456789abcdef"
	goodID2  = "fedcba9876543210"
	goodHash = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
)

func record(id, hash, user string) string {
	return fmt.Sprintf(`{"id":%q,"hash":%q,"user":%q,"team":"","tenant":"","cost_center":"","created_at":"2026-01-01T00:00:00Z"}`, id, hash, user)
}

func TestLoadKeyStore(t *testing.T) {
	tests := []struct {
		name string
		file string
		// wantErrs is the number of joined problems, 0 for success.
		wantErrs int
		wantIDs  int
	}{
		{"empty store", `{"version":1,"keys":[]}`, 0, 0},
		{"null keys", `{"version":1,"keys":null}`, 0, 0},
		{"one key", `{"version":1,"keys":[` + record(goodID, goodHash, "alice") + `]}`, 0, 1},
		{"minimal record", `{"version":1,"keys":[{"id":"` + goodID + `","hash":"` + goodHash + `","user":"a"}]}`, 0, 1},
		{"two keys one user", `{"version":1,"keys":[` + record(goodID, goodHash, "alice") + `,` + record(goodID2, goodHash, "alice") + `]}`, 0, 2},
		{"not json", `version: 1`, 1, 0},
		{"empty file", ``, 1, 0},
		{"missing version", `{"keys":[]}`, 1, 0},
		{"version 2", `{"version":2,"keys":[]}`, 0, 0},
		{"version 3", `{"version":3,"keys":[]}`, 1, 0},
		{"unknown top-level field", `{"version":1,"keys":[],"extra":true}`, 1, 0},
		{"unknown record field", `{"version":1,"keys":[{"id":"` + goodID + `","hash":"` + goodHash + `","user":"a","admin":true}]}`, 1, 0},
		{"known name at wrong level", `{"version":1,"keys":[],"user":"a"}`, 1, 0},
		{"wrong case name", `{"Version":1,"keys":[]}`, 1, 0},
		{"duplicate member", `{"version":1,"keys":[{"id":"` + goodID + `","hash":"` + goodHash + `","user":"a","user":"b"}]}`, 1, 0},
		{"trailing data", `{"version":1,"keys":[]} {}`, 1, 0},
		{"trailing garbage", `{"version":1,"keys":[]}x`, 1, 0},
		{"duplicate id", `{"version":1,"keys":[` + record(goodID, goodHash, "alice") + `,` + record(goodID, goodHash, "bob") + `]}`, 1, 0},
		{"bad id", `{"version":1,"keys":[` + record("0123", goodHash, "alice") + `]}`, 1, 0},
		{"bad hash", `{"version":1,"keys":[` + record(goodID, "md5:00", "alice") + `]}`, 1, 0},
		{"empty user", `{"version":1,"keys":[` + record(goodID, goodHash, "") + `]}`, 1, 0},
		{"bad created_at", `{"version":1,"keys":[{"id":"` + goodID + `","hash":"` + goodHash + `","user":"a","created_at":"yesterday"}]}`, 1, 0},
		{"every problem reported", `{"version":1,"keys":[` +
			record("0123", goodHash, "alice") + `,` + // bad id
			record(goodID, "sha256:zz", "") + `,` + // bad hash and empty user (one record, one joined error)
			record(goodID2, goodHash, "carol") + `,` +
			record(goodID2, goodHash, "dave") + // duplicate id
			`]}`, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			ks, err := LoadKeyStore(path)
			if tt.wantErrs == 0 {
				if err != nil {
					t.Fatalf("LoadKeyStore(%s) error = %v, want nil", tt.file, err)
				}
				if got := len(ks.Records()); got != tt.wantIDs {
					t.Errorf("LoadKeyStore(%s) has %d records, want %d", tt.file, got, tt.wantIDs)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadKeyStore(%s) error = nil, want an error", tt.file)
			}
			if got := countJoined(err); got != tt.wantErrs {
				t.Errorf("LoadKeyStore(%s) reported %d problems, want %d: %v", tt.file, got, tt.wantErrs, err)
			}
		})
	}
}

// countJoined returns how many errors an errors.Join inside err holds, or 1
// if there is none.
func countJoined(err error) int {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return len(j.Unwrap())
	}
	return 1
}

func TestAddKey(t *testing.T) {
	valid := KeyRecord{ID: goodID, Hash: goodHash, User: "alice", CreatedAt: testNow}
	tests := []struct {
		name     string
		existing string // "" means no file
		rec      KeyRecord
		wantErr  bool
	}{
		{"creates file", "", valid, false},
		{"appends", `{"version":1,"keys":[` + record(goodID2, goodHash, "bob") + `]}`, valid, false},
		{"duplicate id", `{"version":1,"keys":[` + record(goodID, goodHash, "bob") + `]}`, valid, true},
		{"invalid existing store", `{"version":1,"keys":[],"extra":1}`, valid, true},
		{"invalid record", "", KeyRecord{ID: "xyz", Hash: goodHash, User: "alice"}, true},
		{"record without user", "", KeyRecord{ID: goodID, Hash: goodHash}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if tt.existing != "" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := AddKey(path, tt.rec)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("AddKey(%+v) error = %v, want error: %v", tt.rec, err, tt.wantErr)
			}
			data, readErr := os.ReadFile(path)
			if tt.wantErr {
				// A refused AddKey leaves the file as it was.
				if tt.existing == "" && !errors.Is(readErr, fs.ErrNotExist) {
					t.Errorf("after refused AddKey, ReadFile error = %v, want not exist", readErr)
				}
				if tt.existing != "" && string(data) != tt.existing {
					t.Errorf("after refused AddKey, file = %s, want unchanged %s", data, tt.existing)
				}
				return
			}
			ks, err := LoadKeyStore(path)
			if err != nil {
				t.Fatalf("LoadKeyStore() after AddKey error = %v", err)
			}
			got, ok := ks.Lookup(tt.rec.ID)
			if !ok {
				t.Fatalf("Lookup(%q) after AddKey = _, false, want true", tt.rec.ID)
			}
			if diff := cmp.Diff(tt.rec, got); diff != "" {
				t.Errorf("Lookup() after AddKey mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
