package tenancy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// decodeSession decodes a session block as the config loader does
// (unknown keys refused), with TagKeys pre-set to the defaults as
// Config.TagKeys suggests.
func decodeSession(t *testing.T, doc string) (Config, error) {
	t.Helper()
	d := DefaultTagKeys()
	cfg := Config{TagKeys: &d}
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	err := dec.Decode(&cfg)
	return cfg, err
}

// TestConfigYAML: the yaml tags are the schema of the session block.
func TestConfigYAML(t *testing.T) {
	got, err := decodeSession(t, `
role_arn: arn:aws:iam::123456789012:role/BedrockUser
name_prefix: gw-
tag_keys: {team: Team, cost_center: "", user: user}
duration: 30m
name_template: "{tenant}.{label}"
source_identity: true
source_identity_from: user
tenants:
  acme-corp: {role_arn: arn:aws:iam::123456789012:role/TenantAcme, session_name: gw-tenant-acme, platform: saas}
teams:
  ml: {role_arn: arn:aws:iam::123456789012:role/TeamML}
`)
	if err != nil {
		t.Fatalf("Decode() error = %v", err)
	}
	want := Config{
		RoleARN:             testRole,
		SessionNamePrefix:   "gw-",
		TagKeys:             &TagKeys{Team: "Team", Tenant: "tenant", CostCenter: "", User: "user"},
		Duration:            30 * time.Minute,
		SessionNameTemplate: "{tenant}.{label}",
		SourceIdentity:      true,
		SourceIdentityFrom:  "user",
		Tenants:             map[string]TenantRule{"acme-corp": {RoleARN: tenantRole, SessionName: "gw-tenant-acme", Platform: "saas"}},
		Teams:               map[string]TeamRule{"ml": {RoleARN: teamRole}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decode() mismatch (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate() = %v, want nil", err)
	}

	// Policy keys are no longer part of the session block.
	for _, key := range []string{"models: [x]", "limits: {burst: 1}", "tenant_limits: {burst: 1}", "tenants: {a: {models: [x]}}", "teams: {a: {limits: {}}}"} {
		if _, err := decodeSession(t, "role_arn: "+testRole+"\n"+key+"\n"); err == nil {
			t.Errorf("Decode(%q) error = nil, want unknown field", key)
		}
	}
}

// TestDefaults: a minimal config gets the exported defaults.
func TestDefaults(t *testing.T) {
	c := Config{RoleARN: testRole}.withDefaults()
	want := Config{RoleARN: testRole, TagKeys: new(DefaultTagKeys()), Duration: DefaultDuration,
		SessionNameTemplate: DefaultSessionNameTemplate, SourceIdentityFrom: DefaultSourceIdentityFrom}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("withDefaults() mismatch (-want +got):\n%s", diff)
	}
	if DefaultDuration != time.Hour || DefaultSourceIdentityFrom != "label" || DefaultSessionNameTemplate != "{label}" {
		t.Errorf("defaults = %v, %q, %q; want 1h, \"label\", \"{label}\"", DefaultDuration, DefaultSourceIdentityFrom, DefaultSessionNameTemplate)
	}
	if err := (Config{RoleARN: testRole, Duration: DefaultDuration, SourceIdentityFrom: DefaultSourceIdentityFrom,
		SessionNameTemplate: DefaultSessionNameTemplate, TagKeys: new(DefaultTagKeys())}).Validate(); err != nil {
		t.Errorf("Validate(explicit defaults) = %v, want nil", err)
	}
}
