package auth

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/bedrock-gateway/gateway/internal/configtest"
)

func TestConfigValidate(t *testing.T) {
	withKeys := func(c Config) Config { c.APIKeysFile = "keys.json"; return c }
	issuer := OIDCIssuer{Issuer: "https://idp.example.com", Audiences: []string{"gw"}}
	tests := []struct {
		name string
		cfg  Config
		want []string // message prefixes, one per problem; nil means valid
	}{
		{"defaults", withKeys(DefaultConfig()), nil},
		{"zero fields take defaults", Config{APIKeysFile: "keys.json"}, nil},
		{"with an issuer", withKeys(Config{OIDC: OIDCConfig{Issuers: []OIDCIssuer{issuer}}}), nil},
		{"no key store", Config{}, []string{"api_keys_file: required"}},
		{"negative keys_reload", withKeys(Config{KeysReload: -time.Second}), []string{"keys_reload: "}},
		// Without issuers the oidc block is unused, as it always was.
		{"oidc settings without issuers", withKeys(Config{OIDC: OIDCConfig{Leeway: -time.Second}}), nil},
		{"issuer without audiences", withKeys(Config{OIDC: OIDCConfig{Issuers: []OIDCIssuer{{Issuer: issuer.Issuer}}}}),
			[]string{"oidc.issuers[0].audiences: "}},
		{"leeway too large", withKeys(Config{OIDC: OIDCConfig{Leeway: time.Hour, Issuers: []OIDCIssuer{issuer}}}),
			[]string{"oidc.leeway: "}},
		{"max_len too large", withKeys(Config{TrustedHeaders: TrustedHeaders{MaxLen: 300}}), []string{"trusted_headers.max_len: "}},
		{"same trusted headers", withKeys(Config{TrustedHeaders: TrustedHeaders{UserHeader: "x-gateway-tenant"}}),
			[]string{"trusted_headers.user_header: "}},
		{"every problem at once", Config{
			KeysReload: -1,
			OIDC: OIDCConfig{Leeway: -1, Issuers: []OIDCIssuer{
				{Issuer: "http://idp.example.com", Audiences: []string{"gw"}},
				{Issuer: "https://idp.example.com"},
			}},
			TrustedHeaders: TrustedHeaders{TenantHeader: "X Org", MaxLen: -1},
		}, []string{
			"api_keys_file: required", "keys_reload: ", "oidc.leeway: ", "oidc.issuers[0].issuer: ",
			"oidc.issuers[1].audiences: ", "oidc.issuers[1].alias: ",
			"trusted_headers.tenant_header: ", "trusted_headers.max_len: ",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			configtest.Problems(t, tt.cfg.Validate(), tt.want)
		})
	}
}

// TestDefaultConfigIsTheZeroConfig checks that DefaultConfig shows what
// the package does with zero fields.
func TestDefaultConfigIsTheZeroConfig(t *testing.T) {
	def := DefaultConfig()

	path := filepath.Join(t.TempDir(), "keys.json")
	if _, _, err := CreateKey(path, "alice", "", "", "", testNow); err != nil {
		t.Fatal(err)
	}
	w, err := NewKeyWatcher(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.interval != def.KeysReload {
		t.Errorf("key watch interval for keys_reload 0 = %v, DefaultConfig().KeysReload = %v", w.interval, def.KeysReload)
	}

	const iss = "https://idp.example.com"
	v, err := NewOIDCVerifier(context.Background(), OIDCConfig{Issuers: []OIDCIssuer{{Issuer: iss, Audiences: []string{"gw"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if v.leeway != def.OIDC.Leeway {
		t.Errorf("leeway for oidc.leeway 0 = %v, DefaultConfig() = %v", v.leeway, def.OIDC.Leeway)
	}
	if got := v.issuers[iss].keys.minInterval; got != def.OIDC.JWKSRefreshInterval {
		t.Errorf("refresh interval for oidc.jwks_refresh_interval 0 = %v, DefaultConfig() = %v", got, def.OIDC.JWKSRefreshInterval)
	}

	zt, zu, zl := TrustedHeaders{}.names()
	dt, du, dl := def.TrustedHeaders.names()
	if zt != dt || zu != du || zl != dl {
		t.Errorf("zero TrustedHeaders = %q, %q, %d; DefaultConfig() = %q, %q, %d", zt, zu, zl, dt, du, dl)
	}
}

// decodeAuth decodes an auth block the way the config loader does: over
// DefaultConfig, refusing unknown keys.
func decodeAuth(t *testing.T, src string) (Config, error) {
	t.Helper()
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
	dec.KnownFields(true)
	err := dec.Decode(&cfg)
	return cfg, err
}

func TestConfigYAML(t *testing.T) {
	t.Run("every key", func(t *testing.T) {
		got, err := decodeAuth(t, `
api_keys_file: keys.json
keys_reload: 5s
oidc:
  leeway: 30s
  jwks_refresh_interval: 1m
  issuers:
    - issuer: https://login.microsoftonline.com/t1/v2.0
      audiences: [api://gw]
      algorithms: [RS256]
      alias: entra
      user_claim: uid
      entra_ids: true
      label_claim: email
      team_claim: dept
      tenant_claim: org
      cost_center_claim: cc
      groups_claim: roles
      team_group_pattern: ^t-(.*)$
trusted_headers:
  tenant_header: X-Org
  user_header: X-Member
  max_len: 64
`)
		if err != nil {
			t.Fatalf("Decode() = %v", err)
		}
		want := Config{
			APIKeysFile: "keys.json",
			KeysReload:  5 * time.Second,
			OIDC: OIDCConfig{
				Leeway:              30 * time.Second,
				JWKSRefreshInterval: time.Minute,
				Issuers: []OIDCIssuer{{
					Issuer: "https://login.microsoftonline.com/t1/v2.0", Audiences: []string{"api://gw"},
					Algorithms: []string{"RS256"}, Alias: "entra", UserClaim: "uid", EntraIDs: true,
					LabelClaim: "email", TeamClaim: "dept", TenantClaim: "org", CostCenterClaim: "cc",
					GroupsClaim: "roles", TeamGroupPattern: "^t-(.*)$",
				}},
			},
			TrustedHeaders: TrustedHeaders{TenantHeader: "X-Org", UserHeader: "X-Member", MaxLen: 64},
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(OIDCConfig{}, "Now")); diff != "" {
			t.Errorf("decoded auth block (-want +got):\n%s", diff)
		}
	})

	t.Run("keys left out keep their defaults", func(t *testing.T) {
		got, err := decodeAuth(t, "api_keys_file: keys.json\ntrusted_headers:\n  max_len: 64\n")
		if err != nil {
			t.Fatalf("Decode() = %v", err)
		}
		want := DefaultConfig()
		want.APIKeysFile = "keys.json"
		want.TrustedHeaders.MaxLen = 64
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(OIDCConfig{}, "Now")); diff != "" {
			t.Errorf("decoded auth block (-want +got):\n%s", diff)
		}
	})

	// Fields that are not configuration must not be settable from YAML,
	// and a misspelt key is an error, not a default.
	for _, tc := range []struct{ name, src string }{
		{"oidc.httpclient", "oidc:\n  httpclient: {}\n"},
		{"oidc.now", "oidc:\n  now: x\n"},
		{"oidc.issuers[0].audience", "oidc:\n  issuers:\n    - issuer: https://idp.example.com\n      audience: gw\n"},
		{"trusted_headers.maxlen", "trusted_headers:\n  maxlen: 64\n"},
		{"keys", "keys: k.json\n"},
	} {
		t.Run("unknown key "+tc.name, func(t *testing.T) {
			if _, err := decodeAuth(t, tc.src); err == nil {
				t.Errorf("Decode(%q) = nil, want an unknown-key error", tc.src)
			}
		})
	}
}
