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
