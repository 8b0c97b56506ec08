package tenancy

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

const (
	tenantRole = "arn:aws:iam::123456789012:role/TenantAcme"
	teamRole   = "arn:aws:iam::123456789012:role/TeamML"
)

func mustResolver(t *testing.T, cfg Config) *Resolver {
	t.Helper()
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatalf("NewResolver(%+v) error = %v", cfg, err)
	}
	return r
}

func TestParseNameTemplate(t *testing.T) {
	tests := []struct {
		tmpl    string
		id      auth.Identity
		want    string // rendered
		wantErr bool
	}{
		{tmpl: "{label}", id: auth.Identity{User: "u1", Label: "alice@acme.org"}, want: "alice@acme.org"},
		{tmpl: "{label}", id: auth.Identity{User: "u1"}, want: "u1"},
		{tmpl: "{user}", id: auth.Identity{User: "u1", Label: "x"}, want: "u1"},
		{tmpl: "gw-{tenant}-{team}", id: auth.Identity{User: "u", Tenant: "acme", Team: "ml"}, want: "gw-acme-ml"},
		{tmpl: "{tenant}.{label}", id: auth.Identity{User: "u", Tenant: "acme"}, want: "acme.u"},
		{tmpl: "{team}{team}", id: auth.Identity{User: "u", Team: "ml"}, want: "mlml"},
		{tmpl: "{tenant}", id: auth.Identity{User: "u"}, want: ""},
		{tmpl: "", wantErr: true},
		{tmpl: "static", wantErr: true},
		{tmpl: "{email}", wantErr: true},
		{tmpl: "{user", wantErr: true},
		{tmpl: "user}", wantErr: true},
		{tmpl: "{{user}}", wantErr: true},
		{tmpl: "a={user}", wantErr: true},
		{tmpl: "a {user}", wantErr: true},
		{tmpl: "ü{user}", wantErr: true},
		{tmpl: "{USER}", wantErr: true},
		{tmpl: strings.Repeat("a", 300) + "{user}", wantErr: true},
	}
	for _, tt := range tests {
		tmpl, err := parseNameTemplate(tt.tmpl)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseNameTemplate(%q) error = %v, want error %v", tt.tmpl, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if got := tmpl.render(tt.id); got != tt.want {
			t.Errorf("parseNameTemplate(%q).render(%+v) = %q, want %q", tt.tmpl, tt.id, got, tt.want)
		}
	}
}

func TestResolveTemplatedNames(t *testing.T) {
	oidc := auth.Identity{User: "https://idp.example/|0001", Label: "alice@acme.org", Team: "ml", Tenant: "acme", Method: auth.MethodOIDC}
	tests := []struct {
		name, tmpl, prefix string
		id                 auth.Identity
		want               string
	}{
		{"default template without label is the old name", "", "gw-", auth.Identity{User: "alice@acme.org"}, "gw-alice@acme.org"},
		{"label is always hashed", "", "", oidc, "alice@acme.org=" + h(oidc.User)},
		{"label equal to user stays verbatim", "", "", auth.Identity{User: "bob", Label: "bob"}, "bob"},
		{"user template ignores label", "{user}", "gw-", auth.Identity{User: "bob", Label: "Bob B"}, "gw-bob"},
		{"tenant and label", "{tenant}.{label}", "gw-", oidc, "gw-acme.alice@acme.org=" + h(oidc.User)},
		{"template equal to user is verbatim", "{tenant}-{team}", "", auth.Identity{User: "acme-ml", Tenant: "acme", Team: "ml"}, "acme-ml"},
		{"empty rendering", "{tenant}", "gw-", auth.Identity{User: "bob"}, "gw-=" + h("bob")},
		{"long label truncated", "", "", auth.Identity{User: "u", Label: strings.Repeat("l", 80)}, strings.Repeat("l", 47) + "=" + h("u")},
		{"label characters replaced", "", "", auth.Identity{User: "u", Label: "Jürgen Groß"}, "J_rgen_Gro_=" + h("u")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustResolver(t, Config{RoleARN: testRole, SessionNamePrefix: tt.prefix, SessionNameTemplate: tt.tmpl})
			got, err := r.Resolve(tt.id)
			if err != nil {
				t.Fatalf("Resolve(%+v) error = %v", tt.id, err)
			}
			if got.SessionName != tt.want {
				t.Errorf("Resolve(%+v).SessionName = %q, want %q", tt.id, got.SessionName, tt.want)
			}
		})
	}
}

// TestTemplatedNamesInjective: callers sharing a label, tenant or team,
// or whose label is another caller's user, still get distinct names.
func TestTemplatedNamesInjective(t *testing.T) {
	ids := []auth.Identity{
		{User: "alice@acme.org"},
		{User: "idp1|1", Label: "alice@acme.org"},
		{User: "idp2|1", Label: "alice@acme.org"},
		{User: "alice@acme.org=" + h("idp1|1")},
		{User: "alice@acme.org", Label: "alice@acme.org", Tenant: "acme"},
		{User: "acme-ml", Tenant: "acme", Team: "ml"},
		{User: "acme-ml2", Tenant: "acme", Team: "ml"},
		{User: "x", Label: "acme-ml"},
		{User: "a b"}, {User: "a_b"}, {User: "a_b", Label: "a b"},
		{User: "platform/acme", Tenant: "acme", Platform: "platform", Method: auth.MethodTrustedHeader},
		{User: "other/acme", Tenant: "acme", Platform: "other", Method: auth.MethodTrustedHeader},
	}
	for _, tmpl := range []string{"{label}", "{user}", "{tenant}-{team}", "{tenant}", "x{team}", "{label}.{tenant}"} {
		for _, prefix := range []string{"", "gw-"} {
			r := mustResolver(t, Config{RoleARN: testRole, SessionNamePrefix: prefix, SessionNameTemplate: tmpl})
			byName := map[string]string{}
			for _, id := range ids {
				spec, err := r.Resolve(id)
				if err != nil {
					t.Fatalf("template %q: Resolve(%+v) error = %v", tmpl, id, err)
				}
				if other, dup := byName[spec.SessionName]; dup && other != id.User {
					t.Errorf("template %q prefix %q: users %q and %q both get %q, want distinct", tmpl, prefix, other, id.User, spec.SessionName)
				}
				byName[spec.SessionName] = id.User
			}
		}
	}
}

func FuzzSessionNameTemplate(f *testing.F) {
	for _, s := range []struct{ tmpl, u1, u2, label, tenant string }{
		{"{label}", "a b", "a_b", "", ""},
		{"{label}", "idp|1", "idp|2", "alice@acme.org", ""},
		{"{tenant}-{team}", "acme-ml", "x", "", "acme"},
		{"gw-{tenant}.{label}", "u", "u=", "l", "t"},
		{"{user}", "x=y", "x_y=cs7vbwahndz3zuel", "", ""},
		{"{team}", "", "b", "", ""},
		{"{bogus}", "a", "b", "", ""},
		{"{label}{label}{label}", strings.Repeat("é", 40), "z", strings.Repeat("l", 70), ""},
	} {
		f.Add(s.tmpl, s.u1, s.u2, s.label, s.tenant)
	}
	f.Fuzz(func(t *testing.T, tmplText, u1, u2, label, tenant string) {
		tmpl, err := parseNameTemplate(tmplText)
		if err != nil {
			if _, verr := NewResolver(Config{RoleARN: testRole, SessionNameTemplate: tmplText}); verr == nil && tmplText != "" {
				t.Fatalf("parseNameTemplate(%q) error = %v but NewResolver accepts it", tmplText, err)
			}
			return
		}
		for _, prefix := range []string{"", "gw-", strings.Repeat("p", 32)} {
			// Both identities share label, team and tenant: only User
			// tells them apart, as for two OIDC users with one email.
			id1 := auth.Identity{User: u1, Label: label, Tenant: tenant, Team: label}
			id2 := auth.Identity{User: u2, Label: label, Tenant: tenant, Team: label}
			n1, err1 := tmpl.name(prefix, id1)
			n2, err2 := tmpl.name(prefix, id2)
			for _, c := range []struct {
				u, n string
				err  error
			}{{u1, n1, err1}, {u2, n2, err2}} {
				if c.u == "" {
					if !errors.Is(c.err, ErrInexpressible) {
						t.Fatalf("template %q name(%q, user \"\") = %q, %v; want ErrInexpressible", tmplText, prefix, c.n, c.err)
					}
					continue
				}
				if c.err != nil {
					t.Fatalf("template %q name(%q, user %q) error = %v", tmplText, prefix, c.u, c.err)
				}
				if !sessionNamePattern.MatchString(c.n) {
					t.Fatalf("template %q name(%q, user %q) = %q, want match for %s", tmplText, prefix, c.u, c.n, sessionNamePattern)
				}
				if k := strings.Count(c.n, "="); k > 1 {
					t.Fatalf("template %q name(%q, user %q) = %q has %d '=', want at most 1", tmplText, prefix, c.u, c.n, k)
				}
			}
			if u1 != u2 && u1 != "" && u2 != "" && n1 == n2 {
				t.Fatalf("template %q prefix %q: users %q and %q both named %q, want distinct", tmplText, prefix, u1, u2, n1)
			}
		}
	})
}

func TestResolveRules(t *testing.T) {
	cfg := Config{
		RoleARN:           testRole,
		SessionNamePrefix: "gw-",
		Tenants: map[string]TenantRule{
			"acme-corp": {RoleARN: tenantRole, SessionName: "gw-tenant-acme", Platform: "saas"},
			"globex":    {SessionName: "gw-tenant-globex", Platform: "saas"},
		},
		Teams: map[string]TeamRule{"ml": {RoleARN: teamRole}},
	}
	tenantOnly := func(platform, tenant string) auth.Identity {
		return auth.Identity{User: TenantOnlyUser(platform, tenant), Tenant: tenant, Platform: platform, Method: auth.MethodTrustedHeader}
	}
	tests := []struct {
		name     string
		id       auth.Identity
		wantRole string
		wantName string
	}{
		{"default role", auth.Identity{User: "bob"}, testRole, "gw-bob"},
		{"team role", auth.Identity{User: "bob", Team: "ml"}, teamRole, "gw-bob"},
		{"tenant role beats team role", auth.Identity{User: "bob", Team: "ml", Tenant: "acme-corp"}, tenantRole, "gw-bob"},
		{"tenant without role falls back to team", auth.Identity{User: "bob", Team: "ml", Tenant: "globex"}, teamRole, "gw-bob"},
		{"unknown team and tenant", auth.Identity{User: "bob", Team: "ops", Tenant: "initech"}, testRole, "gw-bob"},
		{"the article's tenant session", tenantOnly("saas", "acme-corp"), tenantRole, "gw-tenant-acme"},
		{"another platform's tenant-only identity", tenantOnly("other", "acme-corp"), tenantRole,
			"gw-other_acme-corp=" + h("other/acme-corp")},
		{"tenant user asserted by the platform", auth.Identity{
			User: "saas/acme-corp/alice", Tenant: "acme-corp", Platform: "saas", Method: auth.MethodTrustedHeader,
		}, tenantRole, "gw-saas_acme-corp_alice=" + h("saas/acme-corp/alice")},
		{"same user string by api key is not tenant-only", auth.Identity{
			User: "saas/acme-corp", Tenant: "acme-corp", Platform: "saas", Method: "api-key",
		}, tenantRole, "gw-saas_acme-corp=" + h("saas/acme-corp")},
		{"user named like a reserved session name", auth.Identity{User: "tenant-acme"}, testRole, "gw-tenant-acme=" + h("tenant-acme")},
		{"reserved names compare case-insensitively", auth.Identity{User: "TENANT-globex"}, testRole, "gw-TENANT-globex=" + h("TENANT-globex")},
	}
	r := mustResolver(t, cfg)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Resolve(tt.id)
			if err != nil {
				t.Fatalf("Resolve(%+v) error = %v", tt.id, err)
			}
			if got.RoleARN != tt.wantRole || got.SessionName != tt.wantName {
				t.Errorf("Resolve(%+v) = role %q, name %q; want %q, %q", tt.id, got.RoleARN, got.SessionName, tt.wantRole, tt.wantName)
			}
		})
	}
	// The article's example, in full.
	got, err := r.Resolve(tenantOnly("saas", "acme-corp"))
	if err != nil {
		t.Fatal(err)
	}
	want := SessionSpec{RoleARN: tenantRole, SessionName: "gw-tenant-acme", Tags: []Tag{{"tenant", "acme-corp"}}, Duration: time.Hour}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Resolve(tenant-only acme-corp) mismatch (-want +got):\n%s", diff)
	}
}

var sourceIdentityPattern = regexp.MustCompile(`^[A-Za-z0-9_+=,.@-]{2,64}$`)

func TestSourceIdentity(t *testing.T) {
	oidc := auth.Identity{User: "https://idp.example/|0001", Label: "alice@acme.org"}
	tests := []struct {
		name string
		cfg  Config
		id   auth.Identity
		want string
	}{
		{"off", Config{RoleARN: testRole}, oidc, ""},
		{"label by default, hashed", Config{RoleARN: testRole, SourceIdentity: true}, oidc, "alice@acme.org=" + h(oidc.User)},
		{"user", Config{RoleARN: testRole, SourceIdentity: true, SourceIdentityFrom: "user"}, oidc, "https___idp.example__0001=" + h(oidc.User)},
		{"plain user verbatim, no prefix", Config{RoleARN: testRole, SessionNamePrefix: "gw-", SourceIdentity: true}, auth.Identity{User: "bob"}, "bob"},
		{"one-character user is hashed to a valid length", Config{RoleARN: testRole, SourceIdentity: true}, auth.Identity{User: "b"}, "b=" + h("b")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mustResolver(t, tt.cfg).Resolve(tt.id)
			if err != nil {
				t.Fatalf("Resolve(%+v) error = %v", tt.id, err)
			}
			if got.SourceIdentity != tt.want {
				t.Errorf("Resolve(%+v).SourceIdentity = %q, want %q", tt.id, got.SourceIdentity, tt.want)
			}
			if tt.want != "" && !sourceIdentityPattern.MatchString(got.SourceIdentity) {
				t.Errorf("Resolve(%+v).SourceIdentity = %q, want match for %s", tt.id, got.SourceIdentity, sourceIdentityPattern)
			}
		})
	}
}

func TestValidateRules(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantPaths []string
	}{
		{"full valid", Config{
			RoleARN: testRole, SessionNameTemplate: "{tenant}.{label}", SourceIdentity: true, SourceIdentityFrom: "user",
			Tenants: map[string]TenantRule{"acme-corp": {RoleARN: tenantRole, SessionName: "gw-tenant-acme", Platform: "saas"}, "initech": {}},
			Teams:   map[string]TeamRule{"ml": {RoleARN: teamRole}, "data science": {}},
		}, nil},
		{"bad template", Config{RoleARN: testRole, SessionNameTemplate: "{email}"}, []string{"name_template"}},
		{"bad source identity from", Config{RoleARN: testRole, SourceIdentityFrom: "email"}, []string{"source_identity_from"}},
		{"bad tenant rules", Config{RoleARN: testRole, Tenants: map[string]TenantRule{
			"a": {RoleARN: "arn:aws:iam::1:role/x", SessionName: "x=y", Platform: "p"},
			"b": {SessionName: "gw-tenant", Platform: "p"},
			"c": {SessionName: "GW-TENANT", Platform: "p"},
			"d": {SessionName: "gw-d"},
			"e": {SessionName: "x", Platform: "p"},
			"":  {},
		}}, []string{
			"tenants.", "tenants.a.role_arn", "tenants.a.session_name",
			"tenants.c.session_name", "tenants.d.platform", "tenants.e.session_name",
		}},
		{"bad team rules", Config{RoleARN: testRole, Teams: map[string]TeamRule{
			"ml":                     {RoleARN: "arn:aws:iam::123456789012:user/x"},
			"o,k":                    {},
			"aws:team":               {},
			"\xff":                   {},
			strings.Repeat("t", 257): {},
		}}, []string{"teams.aws", "teams.ml.role_arn", "teams.o,k", "teams." + strings.Repeat("t", 257), "teams.\xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if diff := cmp.Diff(tt.wantPaths, configtest.Paths(err)); diff != "" {
				t.Errorf("Validate() = %v; problem paths mismatch (-want +got):\n%s", err, diff)
			}
		})
	}
}
