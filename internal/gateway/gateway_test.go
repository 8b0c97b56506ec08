package gateway

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

const (
	testInvokeRole  = "arn:aws:iam::123456789012:role/BedrockInvocationRole"
	testGatewayRole = "arn:aws:iam::123456789012:role/BedrockGatewayRole"
)

// TestCABundleTrustsBothClients: with aws.ca_bundle naming the authority
// of a TLS-inspecting proxy (here: the fake's own certificate), STS and
// Bedrock are both reached over TLS and the call is billed to the
// caller; without it neither is trusted, and nothing reaches Bedrock.
func TestCABundleTrustsBothClients(t *testing.T) {
	fake := fakeaws.New(fakeaws.Options{Roles: []string{testInvokeRole}})
	stsSrv := httptest.NewTLSServer(fake.STSHandler())
	defer stsSrv.Close()
	brSrv := httptest.NewTLSServer(fake.BedrockHandler())
	defer brSrv.Close()
	dir := t.TempDir()
	bundle := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: stsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys.json")
	key, _, err := auth.CreateKey(keys, "alice@acme.org", "data-science", "", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		bundle   string
		wantCode int
	}{
		{"with the bundle", bundle, http.StatusOK},
		{"without it", "", http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fake.Invocations())
			cfg := Default()
			cfg.AWS = AWSConfig{Region: "us-east-1", STSEndpoint: stsSrv.URL, BedrockRuntimeEndpoint: brSrv.URL, CABundle: tc.bundle}
			cfg.Session.RoleARN, cfg.Auth.APIKeysFile, cfg.Usage.Ledger = testInvokeRole, keys, LedgerOff
			g, err := New(context.Background(), &cfg, Options{
				Credentials: credentials.StaticCredentialsProvider{Value: fake.RootCredentials(testGatewayRole)},
				Logger:      slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close(5 * time.Second)
			req := httptest.NewRequest(http.MethodPost, "/model/amazon.nova-lite-v1:0/converse",
				strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			g.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.wantCode {
				t.Fatalf("Converse = %d %s, want %d", rec.Code, rec.Body, tc.wantCode)
			}
			invs := fake.Invocations()[before:]
			switch {
			case tc.wantCode == http.StatusOK && (len(invs) != 1 || !strings.HasSuffix(invs[0].PrincipalARN, "/alice@acme.org")):
				t.Errorf("Bedrock calls = %+v, want one billed to alice", invs)
			case tc.wantCode != http.StatusOK && len(invs) != 0:
				t.Errorf("Bedrock calls = %+v, want none", invs)
			}
		})
	}
}
