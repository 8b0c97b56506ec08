package tenancy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

const testRole = "arn:aws:iam::123456789012:role/BedrockUser"

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		// wantPaths are the config paths of the reported problems, in
		// order; nil means valid.
		wantPaths []string
	}{
		{"minimal", Config{RoleARN: testRole}, nil},
		{"role with path", Config{RoleARN: "arn:aws:iam::123456789012:role/service-role/team/Bedrock+User"}, nil},
		{"govcloud", Config{RoleARN: "arn:aws-us-gov:iam::123456789012:role/BedrockUser"}, nil},
		{"china", Config{RoleARN: "arn:aws-cn:iam::123456789012:role/BedrockUser"}, nil},
		{"full", Config{
			RoleARN: testRole, SessionNamePrefix: "gw-",
			TagKeys:  &TagKeys{Team: "acme:team", Tenant: "tenant", CostCenter: "CostCenter", User: "user"},
			Duration: 15 * time.Minute,
		}, nil},
		{"one hour", Config{RoleARN: testRole, Duration: time.Hour}, nil},
		{"32-char prefix", Config{RoleARN: testRole, SessionNamePrefix: strings.Repeat("p", 32)}, nil},
		{"missing role", Config{}, []string{"role_arn"}},
		{"user arn", Config{RoleARN: "arn:aws:iam::123456789012:user/alice"}, []string{"role_arn"}},
		{"short account", Config{RoleARN: "arn:aws:iam::12345678901:role/R"}, []string{"role_arn"}},
		{"region in iam arn", Config{RoleARN: "arn:aws:iam:us-east-1:123456789012:role/R"}, []string{"role_arn"}},
		{"sts arn", Config{RoleARN: "arn:aws:sts::123456789012:assumed-role/R/s"}, []string{"role_arn"}},
		{"empty role name", Config{RoleARN: "arn:aws:iam::123456789012:role/"}, []string{"role_arn"}},
		{"role name too long", Config{RoleARN: "arn:aws:iam::123456789012:role/" + strings.Repeat("r", 65)}, []string{"role_arn"}},
		{"role name with space", Config{RoleARN: "arn:aws:iam::123456789012:role/Bedrock User"}, []string{"role_arn"}},
		{"prefix with equals", Config{RoleARN: testRole, SessionNamePrefix: "gw="}, []string{"name_prefix"}},
		{"prefix too long", Config{RoleARN: testRole, SessionNamePrefix: strings.Repeat("p", 33)}, []string{"name_prefix"}},
		{"aws: tag key", Config{RoleARN: testRole, TagKeys: &TagKeys{Team: "aws:team"}}, []string{"tag_keys.team"}},
		{"duplicate tag keys", Config{RoleARN: testRole, TagKeys: &TagKeys{Team: "team", Tenant: "Team"}}, []string{"tag_keys.tenant"}},
		{"duration too short", Config{RoleARN: testRole, Duration: 14 * time.Minute}, []string{"duration"}},
		{"duration too long", Config{RoleARN: testRole, Duration: 2 * time.Hour}, []string{"duration"}},
		{"negative duration", Config{RoleARN: testRole, Duration: -time.Hour}, []string{"duration"}},
		{"fractional seconds", Config{RoleARN: testRole, Duration: 30*time.Minute + time.Millisecond}, []string{"duration"}},
		{"several problems at once", Config{
			RoleARN:           "arn:aws:iam::1:role/R",
			SessionNamePrefix: "gw ",
			TagKeys:           &TagKeys{Team: "t,eam", CostCenter: "team", User: "TEAM"},
			Duration:          2 * time.Hour,
		}, []string{"role_arn", "name_prefix", "tag_keys.team", "tag_keys.user", "duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if diff := cmp.Diff(tt.wantPaths, configtest.Paths(err)); diff != "" {
				t.Errorf("Validate(%+v) = %v; problem paths mismatch (-want +got):\n%s", tt.cfg, err, diff)
			}
			r, nerr := NewResolver(tt.cfg)
			if (nerr == nil) != (tt.wantPaths == nil) || (nerr == nil) != (r != nil) {
				t.Errorf("NewResolver(%+v) = %v, %v; want error iff Validate fails (%v)", tt.cfg, r, nerr, err)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	alice := auth.Identity{
		User: "alice@acme.org", Team: "ml", Tenant: "acme", CostCenter: "cc-42",
		Method: "api-key", KeyID: "0123456789abcdef",
	}
	tests := []struct {
		name string
		cfg  Config
		id   auth.Identity
		want SessionSpec
	}{
		{"defaults", Config{RoleARN: testRole}, alice, SessionSpec{
			RoleARN:     testRole,
			SessionName: "alice@acme.org",
			Tags:        []Tag{{"cost-center", "cc-42"}, {"team", "ml"}, {"tenant", "acme"}},
			Duration:    time.Hour,
		}},
		{"prefix, duration and user tag", Config{
			RoleARN: testRole, SessionNamePrefix: "gw-", Duration: 15 * time.Minute,
			TagKeys: &TagKeys{Team: "z-team", Tenant: "m-tenant", CostCenter: "CostCenter", User: "a-user"},
		}, alice, SessionSpec{
			RoleARN:     testRole,
			SessionName: "gw-alice@acme.org",
			Tags: []Tag{
				{"CostCenter", "cc-42"}, {"a-user", "alice@acme.org"},
				{"m-tenant", "acme"}, {"z-team", "ml"},
			},
			Duration: 15 * time.Minute,
		}},
		{"empty attributes are not sent", Config{RoleARN: testRole}, auth.Identity{User: "bob", Team: "ml"}, SessionSpec{
			RoleARN:     testRole,
			SessionName: "bob",
			Tags:        []Tag{{"team", "ml"}},
			Duration:    time.Hour,
		}},
		{"no attributes, no tags", Config{RoleARN: testRole}, auth.Identity{User: "bob"}, SessionSpec{
			RoleARN: testRole, SessionName: "bob", Duration: time.Hour,
		}},
		{"partial tag keys are literal", Config{RoleARN: testRole, TagKeys: &TagKeys{Tenant: "tenant"}}, alice, SessionSpec{
			RoleARN:     testRole,
			SessionName: "alice@acme.org",
			Tags:        []Tag{{"tenant", "acme"}},
			Duration:    time.Hour,
		}},
		{"hashed session name, tags verbatim", Config{RoleARN: testRole},
			auth.Identity{User: "alice smith", Team: "data science"}, SessionSpec{
				RoleARN:     testRole,
				SessionName: "alice_smith=aof5cwq6z4hxxbo3",
				Tags:        []Tag{{"team", "data science"}},
				Duration:    time.Hour,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewResolver(tt.cfg)
			if err != nil {
				t.Fatalf("NewResolver(%+v) error = %v", tt.cfg, err)
			}
			got, err := r.Resolve(tt.id)
			if err != nil {
				t.Fatalf("Resolve(%+v) error = %v", tt.id, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resolve(%+v) mismatch (-want +got):\n%s", tt.id, diff)
			}
		})
	}
}

func TestResolveInexpressible(t *testing.T) {
	r, err := NewResolver(Config{RoleARN: testRole, TagKeys: &TagKeys{Team: "team", Tenant: "tenant", User: "user"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		id       auth.Identity
		wantErrs int
	}{
		{"empty user", auth.Identity{Team: "ml"}, 1},
		{"comma in team", auth.Identity{User: "alice", Team: "ml,ops"}, 1},
		{"team too long", auth.Identity{User: "alice", Team: strings.Repeat("t", 257)}, 1},
		{"aws: tenant", auth.Identity{User: "alice", Tenant: "aws:acme"}, 1},
		{"emoji in user tag", auth.Identity{User: "alice😀"}, 1},
		{"every problem reported", auth.Identity{User: "alice;", Team: "a*", Tenant: "b\n"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Resolve(tt.id)
			if !errors.Is(err, ErrInexpressible) {
				t.Fatalf("Resolve(%+v) = %+v, %v; want error wrapping ErrInexpressible", tt.id, got, err)
			}
			if n := countJoined(err); n != tt.wantErrs {
				t.Errorf("Resolve(%+v) reported %d problems (%v), want %d", tt.id, n, err, tt.wantErrs)
			}
			if diff := cmp.Diff(SessionSpec{}, got); diff != "" {
				t.Errorf("Resolve(%+v) returned a spec with an error (-want +got):\n%s", tt.id, diff)
			}
		})
	}
}

// TestResolveDistinctUsersDistinctSessions: two callers never share a
// session, whatever their attributes.
func TestResolveDistinctUsersDistinctSessions(t *testing.T) {
	r, err := NewResolver(Config{RoleARN: testRole, SessionNamePrefix: "gw-"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.Resolve(auth.Identity{User: "a b", Team: "ml"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Resolve(auth.Identity{User: "a_b", Team: "ml"})
	if err != nil {
		t.Fatal(err)
	}
	if a.SessionName == b.SessionName {
		t.Errorf("Resolve(%q).SessionName = Resolve(%q).SessionName = %q, want distinct", "a b", "a_b", a.SessionName)
	}
}
