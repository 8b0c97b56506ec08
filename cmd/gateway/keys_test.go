package main

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bedrock-gateway/gateway/internal/gateway"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

func TestKeysCreate(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "gateway.yaml")
	writeFile(t, cfgFile, "aws: {region: us-east-1}\nsession: {role_arn: 'arn:aws:iam::123456789012:role/R'}\nauth: {api_keys_file: keys.json}\n")

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"keys", "create", "-config", cfgFile, "--user", "alice@acme.org", "--team", "data-science", "--cost-center", "12345"}, testProcess(&stdout, &stderr))
	if err != nil {
		t.Fatalf("keys create: %v (%s)", err, stderr.String())
	}
	key := strings.TrimSpace(stdout.String())
	if strings.Contains(stderr.String(), key) {
		t.Error("the key is printed twice")
	}
	ks, err := auth.LoadKeyStore(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "/", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	id, err := auth.NewKeyVerifier(ks).Authenticate(req)
	if err != nil {
		t.Fatalf("the printed key does not authenticate: %v", err)
	}
	if id.User != "alice@acme.org" || id.Team != "data-science" || id.CostCenter != "12345" {
		t.Errorf("identity = %+v", id)
	}

	// A key whose identity could never become an STS session is refused
	// before it exists.
	stdout.Reset()
	err = run(context.Background(), []string{"keys", "create", "-config", cfgFile, "--user", "bob", "--team", "team#1"}, testProcess(&stdout, &stderr))
	if err == nil || stdout.Len() != 0 {
		t.Fatalf("keys create with an inexpressible team: err %v, printed %q", err, stdout.String())
	}
	if ks, _ := auth.LoadKeyStore(filepath.Join(dir, "keys.json")); len(ks.Records()) != 1 {
		t.Errorf("store has %d keys, want 1", len(ks.Records()))
	}
	if err := run(context.Background(), []string{"keys", "create", "-config", cfgFile}, testProcess(&stdout, &stderr)); err == nil {
		t.Error("keys create without --user succeeded")
	}
}

// TestExampleConfigIsValid keeps the shipped example honest.
func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := gateway.Load("../../configs/gateway.example.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Session.RoleARN == "" || cfg.TLS.CertFile == "" {
		t.Errorf("example config lost its role or TLS settings: %+v", cfg)
	}
}

// TestKeysStoreOnly manages a key store with -keys: no config file, so
// nothing but the store's path is needed.
func TestKeysStoreOnly(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	keys := func(args ...string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"keys"}, args...), testProcess(&stdout, &stderr))
		return strings.TrimSpace(stdout.String()), stderr.String(), err
	}
	key, errOut, err := keys("create", "-keys", keysFile, "--user", "alice@acme.org", "--team", "data-science")
	if err != nil {
		t.Fatalf("keys create -keys: %v (%s)", err, errOut)
	}
	ks, err := auth.LoadKeyStore(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "/", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	id, err := auth.NewKeyVerifier(ks).Authenticate(req)
	if err != nil || id.User != "alice@acme.org" || id.Team != "data-science" {
		t.Fatalf("the printed key authenticates as %+v, %v; want alice@acme.org in data-science", id, err)
	}
	keyID := ks.Records()[0].ID

	if out, errOut, err := keys("update", "-keys", keysFile, "--id", keyID, "--team", "finance"); err != nil {
		t.Fatalf("keys update -keys: %v (%s)", err, errOut)
	} else if out != "" {
		t.Errorf("keys update printed %q", out)
	}
	out, errOut, err := keys("list", "-keys", keysFile)
	if err != nil {
		t.Fatalf("keys list -keys: %v (%s)", err, errOut)
	}
	if !strings.Contains(out, keyID) || !strings.Contains(out, "finance") || strings.Contains(out, "data-science") {
		t.Errorf("keys list -keys after update:\n%s", out)
	}
	if _, errOut, err := keys("revoke", "-keys", keysFile, "--id", keyID); err != nil {
		t.Fatalf("keys revoke -keys: %v (%s)", err, errOut)
	}
	if out, _, _ := keys("list", "-keys", keysFile); !strings.Contains(out, "revoked") {
		t.Errorf("keys list -keys after revoke:\n%s", out)
	}

	// One of -config and -keys, not both, not neither.
	cfgFile := filepath.Join(t.TempDir(), "gateway.yaml")
	writeFile(t, cfgFile, "aws: {region: us-east-1}\nsession: {role_arn: 'arn:aws:iam::123456789012:role/R'}\nauth: {api_keys_file: keys.json}\n")
	for _, args := range [][]string{
		{"list"},
		{"list", "-keys", keysFile, "-config", cfgFile},
		{"create", "--user", "bob"},
	} {
		if _, _, err := keys(args...); err == nil {
			t.Errorf("keys %q succeeded", args)
		}
	}
}
