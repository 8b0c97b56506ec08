package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// keysEnv is a config and key store for CLI tests.
type keysEnv struct {
	t        *testing.T
	cfgFile  string
	keysFile string
}

func newKeysEnv(t *testing.T) *keysEnv {
	dir := t.TempDir()
	e := &keysEnv{t: t, cfgFile: filepath.Join(dir, "gateway.yaml"), keysFile: filepath.Join(dir, "keys.json")}
	writeFile(t, e.cfgFile, "aws: {region: us-east-1}\nsession: {role_arn: 'arn:aws:iam::123456789012:role/R'}\nauth: {api_keys_file: keys.json}\n")
	return e
}

// run runs `gateway keys <sub> -config FILE args...` and returns stdout,
// stderr and the error.
func (e *keysEnv) run(sub string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	all := append([]string{"keys", sub, "-config", e.cfgFile}, args...)
	err := run(context.Background(), all, testProcess(&stdout, &stderr))
	return stdout.String(), stderr.String(), err
}

// mustRun is run that fails the test on error.
func (e *keysEnv) mustRun(sub string, args ...string) string {
	e.t.Helper()
	out, errOut, err := e.run(sub, args...)
	if err != nil {
		e.t.Fatalf("keys %s %q: %v (%s)", sub, args, err, errOut)
	}
	return strings.TrimSpace(out)
}

// auth authenticates key against the store as it is now on disk.
func (e *keysEnv) auth(key string) (auth.Identity, *auth.PlatformGrant, error) {
	e.t.Helper()
	ks, err := auth.LoadKeyStore(e.keysFile)
	if err != nil {
		e.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "/", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	return auth.NewKeyVerifier(ks).AuthenticateKey(req)
}

func keyID(key string) string { return key[len("bgw_") : len("bgw_")+16] }

func TestKeysLifecycleCLI(t *testing.T) {
	e := newKeysEnv(t)
	alice := e.mustRun("create", "--user", "alice@acme.org", "--team", "ml", "--cost-center", "12345", "--expires", "90d")
	platform := e.mustRun("create", "--user", "saas", "--platform-tenants", "acme-corp,globex", "--platform-tenant-pattern", "t-[0-9]+", "--platform-allow-user")

	// create: expiry and grant are stored.
	id, grant, err := e.auth(alice)
	if err != nil || id.Team != "ml" || grant != nil {
		t.Fatalf("alice's key = %+v, grant %v, %v; want team ml, no grant", id, grant, err)
	}
	ks, _ := auth.LoadKeyStore(e.keysFile)
	rec, _ := ks.Lookup(keyID(alice))
	if rec.ExpiresAt == nil || rec.ExpiresAt.Sub(rec.CreatedAt) < 89*24*time.Hour || rec.ExpiresAt.Sub(rec.CreatedAt) > 91*24*time.Hour {
		t.Errorf("alice's key ExpiresAt = %v, created %v; want about 90 days later", rec.ExpiresAt, rec.CreatedAt)
	}
	_, grant, err = e.auth(platform)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&auth.PlatformGrant{Tenants: []string{"acme-corp", "globex"}, TenantPattern: "t-[0-9]+", AllowUser: true}, grant); diff != "" {
		t.Errorf("platform key grant mismatch (-want +got):\n%s", diff)
	}

	// list: a table of every key, never a hash or a secret.
	list := e.mustRun("list")
	lines := strings.Split(list, "\n")
	if len(lines) != 3 {
		t.Fatalf("keys list printed %d lines, want a header and 2 keys:\n%s", len(lines), list)
	}
	for _, col := range []string{"ID", "USER", "TEAM", "TENANT", "COST CENTER", "CREATED", "EXPIRES", "REVOKED", "STATUS", "PLATFORM"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("keys list header %q lacks column %q", lines[0], col)
		}
	}
	for _, secret := range []string{"sha256", alice[len("bgw_")+17:], platform[len("bgw_")+17:]} {
		if strings.Contains(list, secret) {
			t.Errorf("keys list shows %q:\n%s", secret, list)
		}
	}
	if !regexp.MustCompile(keyID(platform) + `\s+saas\s.*active\s+tenants=acme-corp,globex pattern=t-\[0-9\]\+ user`).MatchString(list) {
		t.Errorf("keys list does not show the platform key's grant:\n%s", list)
	}

	// update: team changes, tenant unchanged, cost center removed.
	e.mustRun("update", "--id", keyID(alice), "--team", "research", "--cost-center", "")
	id, _, err = e.auth(alice)
	if err != nil || id.Team != "research" || id.CostCenter != "" {
		t.Errorf("after update, alice = %+v, %v; want team research, no cost center", id, err)
	}
	// An update to an identity that cannot become a session is refused.
	if _, _, err := e.run("update", "--id", keyID(alice), "--team", "team#1"); err == nil {
		t.Error("keys update --team team#1 succeeded")
	}
	if _, _, err := e.run("update", "--id", keyID(alice)); err == nil {
		t.Error("keys update without a change succeeded")
	}

	// rotate with grace: both keys work; the new one prints once.
	out, errOut, err := e.run("rotate", "--id", keyID(alice), "--grace", "1h")
	if err != nil {
		t.Fatalf("keys rotate: %v (%s)", err, errOut)
	}
	alice2 := strings.TrimSpace(out)
	if strings.Contains(errOut, alice2) || !auth.IsAPIKey(alice2) {
		t.Errorf("keys rotate printed %q to stdout and %q to stderr; want the key once, on stdout", out, errOut)
	}
	for _, k := range []string{alice, alice2} {
		if id, _, err := e.auth(k); err != nil || id.User != "alice@acme.org" || id.Team != "research" {
			t.Errorf("during the grace period, key %s = %+v, %v; want alice in research", keyID(k), id, err)
		}
	}

	// revoke: refused at once.
	e.mustRun("revoke", "--id", keyID(alice))
	if _, _, err := e.auth(alice); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("revoked key error = %v, want %v", err, auth.ErrInvalidCredentials)
	}
	if !regexp.MustCompile(keyID(alice) + `.*revoked`).MatchString(e.mustRun("list")) {
		t.Errorf("keys list does not show %s revoked", keyID(alice))
	}

	// rotate without grace revokes the old key.
	alice3 := e.mustRun("rotate", "--id", keyID(alice2))
	if _, _, err := e.auth(alice2); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("key rotated without grace: error = %v, want %v", err, auth.ErrInvalidCredentials)
	}
	if _, _, err := e.auth(alice3); err != nil {
		t.Errorf("new key after rotation: %v", err)
	}
}

func TestKeysCLIErrors(t *testing.T) {
	e := newKeysEnv(t)
	key := e.mustRun("create", "--user", "alice")
	id := keyID(key)
	unknown := "0123456789abcdef"
	tests := []struct {
		name string
		sub  string
		args []string
	}{
		{"create expires in the past", "create", []string{"--user", "bob", "--expires", "2001-01-01T00:00:00Z"}},
		{"create expires garbage", "create", []string{"--user", "bob", "--expires", "soon"}},
		{"create bad pattern", "create", []string{"--user", "bob", "--platform-tenant-pattern", "("}},
		{"create empty tenant in list", "create", []string{"--user", "bob", "--platform-tenants", "a,,b"}},
		{"create grant without tenants", "create", []string{"--user", "bob", "--platform-allow-user"}},
		{"revoke without id", "revoke", nil},
		{"revoke unknown id", "revoke", []string{"--id", unknown}},
		{"rotate unknown id", "rotate", []string{"--id", unknown}},
		{"rotate negative grace", "rotate", []string{"--id", id, "--grace", "-1h"}},
		{"rotate bad grace", "rotate", []string{"--id", id, "--grace", "a while"}},
		{"update unknown id", "update", []string{"--id", unknown, "--team", "x"}},
		{"update expires garbage", "update", []string{"--id", id, "--expires", "later"}},
		{"list with arguments", "list", []string{"extra"}},
		{"unknown subcommand", "delete", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := auth.LoadKeyStore(e.keysFile)
			out, _, err := e.run(tt.sub, tt.args...)
			if err == nil || out != "" {
				t.Errorf("keys %s %q = %q, %v; want an error and nothing on stdout", tt.sub, tt.args, out, err)
			}
			after, _ := auth.LoadKeyStore(e.keysFile)
			if diff := cmp.Diff(before.Records(), after.Records()); diff != "" {
				t.Errorf("refused keys %s changed the store (-before +after):\n%s", tt.sub, diff)
			}
		})
	}
	if _, _, err := e.run("revoke", "--id", unknown); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Errorf("keys revoke --id unknown error = %v, want %v", err, auth.ErrKeyNotFound)
	}
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"keys"}, testProcess(&bytes.Buffer{}, &stderr)); err == nil {
		t.Error("keys without a subcommand succeeded")
	}
}

func TestKeysUpdateExpires(t *testing.T) {
	e := newKeysEnv(t)
	key := e.mustRun("create", "--user", "alice", "--expires", "2h")
	e.mustRun("update", "--id", keyID(key), "--expires", "never")
	ks, _ := auth.LoadKeyStore(e.keysFile)
	if rec, _ := ks.Lookup(keyID(key)); rec.ExpiresAt != nil {
		t.Errorf("after --expires never, ExpiresAt = %v, want nil", rec.ExpiresAt)
	}
	e.mustRun("update", "--id", keyID(key), "--expires", "2999-01-02T03:04:05Z")
	ks, _ = auth.LoadKeyStore(e.keysFile)
	want := time.Date(2999, 1, 2, 3, 4, 5, 0, time.UTC)
	if rec, _ := ks.Lookup(keyID(key)); rec.ExpiresAt == nil || !rec.ExpiresAt.Equal(want) {
		t.Errorf("after --expires %v, ExpiresAt = %v", want, rec.ExpiresAt)
	}
}
