package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/configtest"
)

// testPlatform is the identity of a platform key as the authenticator
// returns it.
var testPlatform = Identity{
	User:       "saas",
	Team:       "platform",
	Tenant:     "saas-own",
	CostCenter: "cc-9",
	Method:     MethodAPIKey,
	KeyID:      "0123456789abcdef",
}

// testGrant allows two listed tenants and a pattern. The alternation
// catches an anchoring bug: "^acme-corp|team-[a-z]+$" would accept
// "acme-corp-evil".
func testGrant() *PlatformGrant {
	return &PlatformGrant{
		Tenants:       []string{"acme", "beta.io"},
		TenantPattern: `acme-corp|team-[a-z]+`,
		AllowUser:     true,
	}
}

// headerRequest returns a request whose header map is exactly h, keys
// unchanged, as a lenient front proxy or a test can produce.
func headerRequest(h http.Header) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/model/m/converse", nil)
	r.Header = h
	return r
}

// malformedCases each send trusted headers that must be refused with 400,
// from a platform key whose grant would allow "acme" and a user.
var malformedCases = []struct {
	name string
	h    http.Header
}{
	{"duplicate tenant", http.Header{"X-Gateway-Tenant": {"acme", "acme"}}},
	{"duplicate tenant, different values", http.Header{"X-Gateway-Tenant": {"acme", "beta.io"}}},
	{"duplicate user", http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-User": {"bob", "eve"}}},
	{"no values", http.Header{"X-Gateway-Tenant": {}}},
	{"comma list", http.Header{"X-Gateway-Tenant": {"acme,beta.io"}}},
	{"comma list with space", http.Header{"X-Gateway-Tenant": {"acme, beta.io"}}},
	{"trailing comma", http.Header{"X-Gateway-Tenant": {"acme,"}}},
	{"semicolon", http.Header{"X-Gateway-Tenant": {"acme;beta.io"}}},
	{"underscore variant", http.Header{"X_Gateway_Tenant": {"acme"}}},
	{"mixed underscore variant", http.Header{"x-gateway_tenant": {"acme"}}},
	{"lowercase raw key", http.Header{"x-gateway-tenant": {"acme"}}},
	{"canonical plus underscore variant", http.Header{"X-Gateway-Tenant": {"acme"}, "X_gateway_tenant": {"evil"}}},
	{"user underscore variant", http.Header{"X-Gateway-Tenant": {"acme"}, "X_Gateway_User": {"bob"}}},
	{"CRLF injection", http.Header{"X-Gateway-Tenant": {"acme\r\nX-Gateway-Tenant: evil"}}},
	{"trailing LF", http.Header{"X-Gateway-Tenant": {"acme\n"}}},
	{"trailing CR", http.Header{"X-Gateway-Tenant": {"acme\r"}}},
	{"NUL", http.Header{"X-Gateway-Tenant": {"acme\x00evil"}}},
	{"DEL", http.Header{"X-Gateway-Tenant": {"acme\x7f"}}},
	{"tab", http.Header{"X-Gateway-Tenant": {"acme\t"}}},
	{"leading space", http.Header{"X-Gateway-Tenant": {" acme"}}},
	{"trailing space", http.Header{"X-Gateway-Tenant": {"acme "}}},
	{"inner space", http.Header{"X-Gateway-Tenant": {"ac me"}}},
	{"cyrillic homoglyph", http.Header{"X-Gateway-Tenant": {"\u0430cme"}}},
	{"full-width", http.Header{"X-Gateway-Tenant": {"ａｃｍｅ"}}},
	{"zero-width space", http.Header{"X-Gateway-Tenant": {"acme\u200b"}}},
	{"invalid UTF-8", http.Header{"X-Gateway-Tenant": {"acme\xff"}}},
	{"separator injection", http.Header{"X-Gateway-Tenant": {"acme/bob"}}},
	{"separator in user", http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-User": {"bob/eve"}}},
	{"equals sign", http.Header{"X-Gateway-Tenant": {"acme=1"}}},
	{"colon", http.Header{"X-Gateway-Tenant": {"aws:acme"}}},
	{"quoted", http.Header{"X-Gateway-Tenant": {`"acme"`}}},
	{"percent-encoded", http.Header{"X-Gateway-Tenant": {"acme%2Fbob"}}},
	{"leading dash", http.Header{"X-Gateway-Tenant": {"-acme"}}},
	{"dot", http.Header{"X-Gateway-Tenant": {"."}}},
	{"dot dot", http.Header{"X-Gateway-Tenant": {".."}}},
	{"over-long", http.Header{"X-Gateway-Tenant": {"team-" + strings.Repeat("a", 124)}}},
	{"over-long user", http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-User": {strings.Repeat("b", 129)}}},
	{"empty tenant", http.Header{"X-Gateway-Tenant": {""}}},
	{"empty user", http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-User": {""}}},
	{"user CRLF", http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-User": {"bob\r\n"}}},
	{"user homoglyph", http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-User": {"b\u043eb"}}},
	{"missing tenant", http.Header{}},
	{"user without tenant", http.Header{"X-Gateway-User": {"bob"}}},
	// A malformed tenant outside the grant is still 400: validation
	// comes before the grant.
	{"malformed and outside grant", http.Header{"X-Gateway-Tenant": {"evil\n"}}},
}

func TestTrustedHeadersMalformed(t *testing.T) {
	for _, tc := range malformedCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TrustedHeaders{}.Check(headerRequest(tc.h), testPlatform, testGrant())
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("Check(%q) error = %v, want ErrBadRequest", tc.h, err)
			}
			if errors.Is(err, ErrForbidden) {
				t.Errorf("Check(%q) error = %v, want not ErrForbidden", tc.h, err)
			}
			for _, vs := range tc.h {
				for _, v := range vs {
					if len(v) >= 3 && strings.Contains(err.Error(), v) {
						t.Errorf("Check(%q) error %q echoes the value %q", tc.h, err, v)
					}
				}
			}
		})
	}
}

func TestTrustedHeadersAccepted(t *testing.T) {
	max128 := "team-" + strings.Repeat("a", 123)
	tests := []struct {
		name string
		th   TrustedHeaders
		h    http.Header
		want Identity
	}{
		{
			name: "listed tenant, no user",
			h:    http.Header{"X-Gateway-Tenant": {"acme"}},
			want: Identity{User: "saas/acme", Label: "tenant-acme", Tenant: "acme"},
		},
		{
			name: "listed tenant with dot",
			h:    http.Header{"X-Gateway-Tenant": {"beta.io"}},
			want: Identity{User: "saas/beta.io", Label: "tenant-beta.io", Tenant: "beta.io"},
		},
		{
			name: "pattern tenant",
			h:    http.Header{"X-Gateway-Tenant": {"acme-corp"}},
			want: Identity{User: "saas/acme-corp", Label: "tenant-acme-corp", Tenant: "acme-corp"},
		},
		{
			name: "pattern tenant with user",
			h:    http.Header{"X-Gateway-Tenant": {"team-ml"}, "X-Gateway-User": {"bob+x_1@acme.org"}},
			want: Identity{User: "saas/team-ml/bob+x_1@acme.org", Label: "team-ml-bob+x_1@acme.org", Tenant: "team-ml"},
		},
		{
			name: "tenant of exactly MaxLen",
			h:    http.Header{"X-Gateway-Tenant": {max128}},
			want: Identity{User: "saas/" + max128, Label: "tenant-" + max128, Tenant: max128},
		},
		{
			name: "MaxLen at the STS limit",
			th:   TrustedHeaders{MaxLen: 256},
			h:    http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-User": {strings.Repeat("u", 256)}},
			want: Identity{User: "saas/acme/" + strings.Repeat("u", 256), Label: "acme-" + strings.Repeat("u", 256), Tenant: "acme"},
		},
		{
			name: "configured names",
			th:   TrustedHeaders{TenantHeader: "x-org", UserHeader: "X-Org-Member"},
			// The default names are ordinary headers then.
			h:    http.Header{"X-Org": {"acme"}, "X-Org-Member": {"bob"}, "X-Gateway-Tenant": {"evil"}},
			want: Identity{User: "saas/acme/bob", Label: "acme-bob", Tenant: "acme"},
		},
		{
			name: "unrelated headers ignored",
			h:    http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-Tenants": {"evil"}, "X-Gateway": {"x"}},
			want: Identity{User: "saas/acme", Label: "tenant-acme", Tenant: "acme"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.th.Check(headerRequest(tc.h), testPlatform, testGrant())
			if err != nil {
				t.Fatalf("Check(%q) error = %v, want nil", tc.h, err)
			}
			want := tc.want
			want.Team, want.CostCenter = "platform", "cc-9"
			want.Method, want.KeyID, want.Platform = MethodTrustedHeader, testPlatform.KeyID, "saas"
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Check(%q) mismatch (-want +got):\n%s", tc.h, diff)
			}
		})
	}
}

// TestTrustedHeadersOverLongCustomMaxLen checks the boundary with a
// configured MaxLen.
func TestTrustedHeadersOverLongCustomMaxLen(t *testing.T) {
	th := TrustedHeaders{MaxLen: 4}
	for _, tc := range []struct {
		tenant string
		ok     bool
	}{{"acme", true}, {"team-a", false}} {
		_, err := th.Check(headerRequest(http.Header{"X-Gateway-Tenant": {tc.tenant}}), testPlatform, testGrant())
		if got := err == nil; got != tc.ok {
			t.Errorf("Check(tenant %q, MaxLen 4) error = %v, want ok=%v", tc.tenant, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Errorf("Check(tenant %q, MaxLen 4) error = %v, want ErrBadRequest", tc.tenant, err)
		}
	}
}

func TestTrustedHeadersForbidden(t *testing.T) {
	tests := []struct {
		name   string
		tenant string
		grant  *PlatformGrant
	}{
		{"not listed", "globex", testGrant()},
		{"listed in other case", "ACME", testGrant()},
		{"prefix of listed", "acm", testGrant()},
		{"listed plus suffix", "acmex", testGrant()},
		{"pattern prefix attack", "acme-corp-evil", testGrant()},
		{"pattern suffix attack", "evil-acme-corp", testGrant()},
		{"pattern alternative plus suffix", "team-ml1", testGrant()},
		{"pattern needs one letter", "team-", testGrant()},
		{"dot is not a wildcard in list", "beta-io", testGrant()},
		{"empty grant", "acme", &PlatformGrant{AllowUser: true}},
		{"plain pattern prefix attack", "acme-corp-evil", &PlatformGrant{TenantPattern: "acme-corp"}},
		{"multiline flag does not unanchor", "acme-corp-evil", &PlatformGrant{TenantPattern: "(?m)acme-corp$"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"X-Gateway-Tenant": {tc.tenant}}
			got, err := TrustedHeaders{}.Check(headerRequest(h), testPlatform, tc.grant)
			if !errors.Is(err, ErrForbidden) {
				t.Fatalf("Check(tenant %q) = %+v, %v, want ErrForbidden", tc.tenant, got, err)
			}
			if errors.Is(err, ErrBadRequest) {
				t.Errorf("Check(tenant %q) error = %v, want not ErrBadRequest", tc.tenant, err)
			}
			if diff := cmp.Diff(Identity{}, got); diff != "" {
				t.Errorf("Check(tenant %q) returned an identity with its error (-want +got):\n%s", tc.tenant, diff)
			}
		})
	}
}

// TestTrustedHeadersNotPlatform checks that an ordinary caller sending a
// trusted header, in any spelling, gets 400, and one sending none keeps
// its identity.
func TestTrustedHeadersNotPlatform(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
	}{
		{"tenant", http.Header{"X-Gateway-Tenant": {"acme"}}},
		{"user", http.Header{"X-Gateway-User": {"bob"}}},
		{"both", http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-User": {"bob"}}},
		{"empty value", http.Header{"X-Gateway-Tenant": {""}}},
		{"no values", http.Header{"X-Gateway-User": {}}},
		{"underscore variant", http.Header{"X_Gateway_Tenant": {"acme"}}},
		{"lowercase raw key", http.Header{"x-gateway-user": {"bob"}}},
		{"malformed", http.Header{"X-Gateway-Tenant": {"acme\r\n"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TrustedHeaders{}.Check(headerRequest(tc.h), testPlatform, nil)
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("Check(%q, not platform) error = %v, want ErrBadRequest", tc.h, err)
			}
		})
	}

	t.Run("no trusted headers", func(t *testing.T) {
		h := http.Header{"Authorization": {"Bearer x"}, "X-Gateway": {"acme"}}
		got, err := TrustedHeaders{}.Check(headerRequest(h), testPlatform, nil)
		if err != nil {
			t.Fatalf("Check(%q, not platform) error = %v, want nil", h, err)
		}
		if diff := cmp.Diff(testPlatform, got); diff != "" {
			t.Errorf("Check(%q, not platform) mismatch (-want +got):\n%s", h, diff)
		}
	})
}

func TestTrustedHeadersAllowUser(t *testing.T) {
	grant := testGrant()
	grant.AllowUser = false

	h := http.Header{"X-Gateway-Tenant": {"acme"}, "X-Gateway-User": {"bob"}}
	if _, err := (TrustedHeaders{}).Check(headerRequest(h), testPlatform, grant); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Check(%q, AllowUser false) error = %v, want ErrBadRequest", h, err)
	}

	h = http.Header{"X-Gateway-Tenant": {"acme"}}
	got, err := TrustedHeaders{}.Check(headerRequest(h), testPlatform, grant)
	if err != nil {
		t.Fatalf("Check(%q, AllowUser false) error = %v, want nil", h, err)
	}
	if got.User != "saas/acme" {
		t.Errorf("Check(%q, AllowUser false).User = %q, want %q", h, got.User, "saas/acme")
	}
}

// TestTrustedHeadersConfigErrors checks that a configuration Check cannot
// apply fails closed, and not as the caller's fault.
func TestTrustedHeadersConfigErrors(t *testing.T) {
	h := http.Header{"X-Gateway-Tenant": {"acme"}}
	tests := []struct {
		name     string
		th       TrustedHeaders
		platform Identity
		grant    *PlatformGrant
	}{
		{"same header names", TrustedHeaders{UserHeader: "x_gateway_tenant"}, testPlatform, testGrant()},
		{"invalid header name", TrustedHeaders{TenantHeader: "X Tenant"}, testPlatform, testGrant()},
		{"platform user with separator", TrustedHeaders{}, Identity{User: "saas/acme"}, testGrant()},
		{"empty platform user", TrustedHeaders{}, Identity{}, testGrant()},
		{"invalid pattern", TrustedHeaders{}, testPlatform, &PlatformGrant{TenantPattern: "acme("}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.th.Check(headerRequest(h), tc.platform, tc.grant)
			if err == nil {
				t.Fatalf("Check(%q) = %+v, nil, want an error", h, got)
			}
			if errors.Is(err, ErrBadRequest) || errors.Is(err, ErrForbidden) {
				t.Errorf("Check(%q) error = %v, want neither ErrBadRequest nor ErrForbidden", h, err)
			}
		})
	}
}

func TestTrustedHeadersValidate(t *testing.T) {
	tests := []struct {
		name string
		th   TrustedHeaders
		want []string // message prefixes, one per problem; nil means valid
	}{
		{"defaults", TrustedHeaders{}, nil},
		{"custom", TrustedHeaders{TenantHeader: "X-Org", UserHeader: "X-Member", MaxLen: 64}, nil},
		{"MaxLen at the STS limit", TrustedHeaders{MaxLen: 256}, nil},
		{"same names", TrustedHeaders{TenantHeader: "X-Org", UserHeader: "x-org"}, []string{"user_header: "}},
		{"same names modulo underscore", TrustedHeaders{TenantHeader: "X-Org-Id", UserHeader: "X_ORG_ID"}, []string{"user_header: "}},
		{"user equals default tenant", TrustedHeaders{UserHeader: "X-Gateway-Tenant"}, []string{"user_header: "}},
		{"space in name", TrustedHeaders{TenantHeader: "X Org"}, []string{"tenant_header: "}},
		{"colon in name", TrustedHeaders{UserHeader: "X-Org:"}, []string{"user_header: "}},
		{"non-ASCII name", TrustedHeaders{UserHeader: "X-Оrg"}, []string{"user_header: "}},
		{"negative MaxLen", TrustedHeaders{MaxLen: -1}, []string{"max_len: "}},
		{"MaxLen above the STS limit", TrustedHeaders{MaxLen: 257}, []string{"max_len: "}},
		{"every problem at once", TrustedHeaders{TenantHeader: "X Org", UserHeader: "X Org", MaxLen: 1000},
			[]string{"tenant_header: ", "user_header: ", "user_header: ", "max_len: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.th.Validate()
			configtest.Problems(t, err, tc.want)
			// Check fails closed on a configuration Validate refuses, and
			// not as the caller's fault.
			_, cerr := tc.th.Check(headerRequest(http.Header{"X-Gateway-Tenant": {"acme"}}), testPlatform, testGrant())
			if tc.want != nil && (cerr == nil || errors.Is(cerr, ErrBadRequest) || errors.Is(cerr, ErrForbidden)) {
				t.Errorf("Check() with an invalid configuration = %v, want a configuration error", cerr)
			}
		})
	}
}

// TestTrustedHeadersUserInjective checks that near-colliding (platform,
// tenant, user) triples get different Users, and that each User splits
// back into its triple.
func TestTrustedHeadersUserInjective(t *testing.T) {
	type triple struct{ platform, tenant, user string }
	triples := []triple{
		{"saas", "acme", ""},
		{"saas", "acme", "bob"},
		{"saas", "acme.bob", ""},
		{"saas", "acme-bob", ""},
		{"saas", "acme_bob", ""},
		{"saas", "acmebob", ""},
		{"saas", "acme", "bob.eve"},
		{"saas", "acme.bob", "eve"},
		{"saas", "acme", "bob-eve"},
		{"saas", "acme-bob", "eve"},
		{"saas-acme", "bob", ""},
		{"saas", "acme-bob", ""},
		{"saas.acme", "bob", ""},
		{"saas", "acme", "saas"},
		{"sa", "as", "acme"},
		{"saas", "Acme", ""},
		{"saas@acme", "bob", ""},
		{"saas", "acme@bob", ""},
		{"saas", "acme", "bob@acme"},
		{"saas", "acme", "tenant-acme"},
		{"tenant", "acme", ""},
	}
	grant := &PlatformGrant{TenantPattern: ".+", AllowUser: true}
	seen := map[string]triple{}
	for _, tr := range triples {
		h := http.Header{"X-Gateway-Tenant": {tr.tenant}}
		if tr.user != "" {
			h["X-Gateway-User"] = []string{tr.user}
		}
		id, err := TrustedHeaders{}.Check(headerRequest(h), Identity{User: tr.platform}, grant)
		if err != nil {
			t.Fatalf("Check(%+v) error = %v, want nil", tr, err)
		}
		if prev, ok := seen[id.User]; ok && prev != tr {
			t.Errorf("Check(%+v).User = %q, the same as for %+v", tr, id.User, prev)
		}
		seen[id.User] = tr

		parts := strings.Split(id.User, "/")
		var back triple
		switch len(parts) {
		case 2:
			back = triple{parts[0], parts[1], ""}
		case 3:
			back = triple{parts[0], parts[1], parts[2]}
		default:
			t.Fatalf("Check(%+v).User = %q, want 2 or 3 parts", tr, id.User)
		}
		if back != tr {
			t.Errorf("Check(%+v).User = %q splits into %+v, want the input", tr, id.User, back)
		}
	}
}

// acceptedValue is the documented charset of an accepted tenant or user,
// written independently of validTrustedValue.
var acceptedValue = regexp.MustCompile(`\A[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}\z`)

func FuzzTrustedHeaders(f *testing.F) {
	// Seeds: every malformed case that fits two single-valued headers,
	// plus accepted ones.
	for _, tc := range malformedCases {
		var keys []string
		for k, vs := range tc.h {
			for range vs {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		switch len(keys) {
		case 1:
			f.Add(keys[0], tc.h[keys[0]][0], "", "")
		case 2:
			f.Add(keys[0], tc.h[keys[0]][0], keys[1], tc.h[keys[1]][0])
		}
	}
	f.Add("X-Gateway-Tenant", "acme", "", "")
	f.Add("X-Gateway-Tenant", "acme-corp", "X-Gateway-User", "bob@acme.org")
	f.Add("X-Gateway-Tenant", "acme-corp-evil", "", "")
	f.Add("X-Gateway-Tenant", "team-ml", "X-Gateway-Tenant", "team-ml")

	tenantOK := regexp.MustCompile(`\A(?:acme-corp|team-[a-z]+)\z`)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		h := http.Header{}
		h[k1] = append(h[k1], v1)
		if k2 != "" {
			h[k2] = append(h[k2], v2)
		}

		id, err := TrustedHeaders{}.Check(headerRequest(h), testPlatform, testGrant())
		if err != nil {
			if !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrForbidden) {
				t.Fatalf("Check(%q) error = %v, want ErrBadRequest or ErrForbidden", h, err)
			}
		} else {
			tenant := id.Tenant
			if !slices.Contains([]string{"acme", "beta.io"}, tenant) && !tenantOK.MatchString(tenant) {
				t.Errorf("Check(%q).Tenant = %q, not in the grant", h, tenant)
			}
			if vs := h["X-Gateway-Tenant"]; len(vs) != 1 || vs[0] != tenant {
				t.Errorf("Check(%q).Tenant = %q, want the single X-Gateway-Tenant value", h, tenant)
			}
			rest, ok := strings.CutPrefix(id.User, "saas/"+tenant)
			if !ok {
				t.Fatalf("Check(%q).User = %q, want prefix %q", h, id.User, "saas/"+tenant)
			}
			values := []string{tenant}
			if rest != "" {
				user, ok := strings.CutPrefix(rest, "/")
				if !ok || len(h["X-Gateway-User"]) != 1 || h["X-Gateway-User"][0] != user {
					t.Errorf("Check(%q).User = %q, want saas/<tenant>/<X-Gateway-User>", h, id.User)
				}
				values = append(values, user)
			}
			for _, v := range values {
				if !acceptedValue.MatchString(v) {
					t.Errorf("Check(%q) accepted %q, outside [A-Za-z0-9][A-Za-z0-9._@+-]{0,127}", h, v)
				}
			}
			if id.Method != MethodTrustedHeader || id.Platform != "saas" {
				t.Errorf("Check(%q) = Method %q, Platform %q, want %q, %q", h, id.Method, id.Platform, MethodTrustedHeader, "saas")
			}
		}

		// The same headers from an ordinary caller: accepted only if no
		// key is any spelling of a trusted header, and then unchanged.
		got, err := TrustedHeaders{}.Check(headerRequest(h), testPlatform, nil)
		trusted := false
		for k := range h {
			switch strings.ReplaceAll(strings.ToLower(k), "_", "-") {
			case "x-gateway-tenant", "x-gateway-user":
				trusted = true
			}
		}
		switch {
		case trusted && !errors.Is(err, ErrBadRequest):
			t.Errorf("Check(%q, not platform) error = %v, want ErrBadRequest", h, err)
		case !trusted && err != nil:
			t.Errorf("Check(%q, not platform) error = %v, want nil", h, err)
		case !trusted && got != testPlatform:
			t.Errorf("Check(%q, not platform) = %+v, want %+v", h, got, testPlatform)
		}
	})
}

// sameFoldedCases seed TestSameFoldedHeaderName and its fuzz target.
var sameFoldedCases = []struct{ a, b string }{
	{"X-Gateway-Tenant", "X-Gateway-Tenant"},
	{"X-Gateway-Tenant", "x_gateway_TENANT"},
	{"X-Gateway-Tenant", "X-Gateway-User"},
	{"X-Gateway-Tenant", "X-Gateway-Tenan"},
	{"X-Gateway-Tenant", "X-Gateway-Tenant "},
	{"Content-Type", "content_type"},
	{"", ""},
	{"\u212a", "k"}, // Kelvin sign: Unicode lower-cases it to k
	{"\u0130", "i"},
	{"ÄÖ", "äö"},
}

// TestSameFoldedHeaderName: the allocation-free comparison agrees with
// comparing foldHeaderName's results.
func TestSameFoldedHeaderName(t *testing.T) {
	for _, tc := range sameFoldedCases {
		got, want := sameFoldedHeaderName(tc.a, tc.b), foldHeaderName(tc.a) == foldHeaderName(tc.b)
		if got != want {
			t.Errorf("sameFoldedHeaderName(%q, %q) = %v, want %v", tc.a, tc.b, got, want)
		}
	}
}

func FuzzSameFoldedHeaderName(f *testing.F) {
	for _, tc := range sameFoldedCases {
		f.Add(tc.a, tc.b)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		got, want := sameFoldedHeaderName(a, b), foldHeaderName(a) == foldHeaderName(b)
		if got != want {
			t.Errorf("sameFoldedHeaderName(%q, %q) = %v, want %v", a, b, got, want)
		}
	})
}

// TestTenantPatternCompiledAtLoad: the key store compiles a platform key's
// tenant pattern once, anchored, and Authenticate matches with that
// compiled pattern as Check would with its own.
func TestTenantPatternCompiledAtLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	key, rec, err := IssueKey(path, KeyRecord{User: "saas",
		Platform: &PlatformGrant{TenantPattern: `acme-corp|t-[0-9]+`}}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := LoadKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if ks.byID[rec.ID].tenantRE == nil {
		t.Fatal("the store did not compile the tenant pattern")
	}
	a := &Authenticator{Keys: NewKeyVerifier(ks)}
	for _, tc := range []struct {
		tenant  string
		wantErr error
	}{
		{"acme-corp", nil},
		{"t-42", nil},
		{"acme-corp-evil", ErrForbidden},
		{"xt-42", ErrForbidden},
		{"t-", ErrForbidden},
	} {
		r := requestWith(t, "Authorization", "Bearer "+key, "X-Gateway-Tenant", tc.tenant)
		id, err := a.Authenticate(r)
		if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
			t.Errorf("Authenticate(tenant %q) error = %v, want %v", tc.tenant, err, tc.wantErr)
			continue
		}
		_, checkErr := TrustedHeaders{}.Check(r, rec.Identity(), rec.Platform)
		if (err == nil) != (checkErr == nil) {
			t.Errorf("Authenticate(tenant %q) error = %v, but Check error = %v", tc.tenant, err, checkErr)
		}
		if err == nil && id.Tenant != tc.tenant {
			t.Errorf("Authenticate(tenant %q).Tenant = %q", tc.tenant, id.Tenant)
		}
	}
}
