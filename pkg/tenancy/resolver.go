package tenancy

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// Session duration limits: STS DurationSeconds minimum is 900 (15m), and a
// role assumed by role chaining (the gateway itself runs as a role) is
// capped at 3600 (1h); above that AssumeRole fails (STS API reference,
// AssumeRole DurationSeconds).
const (
	minDuration = 15 * time.Minute
	maxDuration = time.Hour
)

// Defaults that Config applies to its zero fields (see Config). They are
// exported so that a config loader can document or show them without
// restating them.
const (
	// DefaultDuration is the session lifetime when Config.Duration is
	// zero: the longest a chained role allows.
	DefaultDuration = maxDuration
	// DefaultSourceIdentityFrom is Config.SourceIdentityFrom when empty:
	// the readable label rather than the opaque user ID.
	DefaultSourceIdentityFrom = "label"
)

// roleARN matches an IAM role ARN: arn:<partition>:iam::<12-digit
// account>:role/<optional path/><name>, with IAM's path characters
// (U+0021-U+007E) and role name characters ([\w+=,.@-]{1,64}). STS limits
// RoleArn to 20-2048 characters.
var roleARN = regexp.MustCompile(`^arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/(?:[\x21-\x7e]+/)?[A-Za-z0-9_+=,.@-]{1,64}$`)

const maxRoleARN = 2048

// Config says which role every caller's session assumes and how the
// caller's identity is written into it. It is the YAML block "session:",
// decoded directly by the config loader, so the yaml tags are the schema;
// Validate names each problem by its YAML path relative to that block.
// Which models a caller may use and at what rate is not here: see
// pkg/policy.
type Config struct {
	// RoleARN is the Bedrock invocation role each caller's session
	// assumes, for example arn:aws:iam::123456789012:role/BedrockUser.
	// Required. YAML: role_arn.
	RoleARN string `yaml:"role_arn"`
	// SessionNamePrefix is prepended to every RoleSessionName, for
	// example "gw-". Optional; at most 32 characters of [\w+,.@-] ('=' is
	// reserved, see SessionName). YAML: name_prefix.
	SessionNamePrefix string `yaml:"name_prefix"`
	// TagKeys names the session tag each identity attribute is sent as.
	// nil means DefaultTagKeys(); a non-nil value is taken literally, so
	// &TagKeys{} sends no tags (for a role whose trust policy does not
	// allow sts:TagSession). YAML: tag_keys.
	//
	// A YAML decoder fills only the keys the block names, so a loader
	// that wants each key left out of tag_keys to keep its default (and
	// an explicit "" to turn that tag off) points TagKeys at a copy of
	// DefaultTagKeys() before decoding: go.yaml.in/yaml/v3 decodes into
	// the existing value.
	TagKeys *TagKeys `yaml:"tag_keys"`
	// Duration is the requested session lifetime (DurationSeconds): whole
	// seconds in 15m..1h. Zero means DefaultDuration. YAML: duration.
	Duration time.Duration `yaml:"duration"`

	// SessionNameTemplate says what the readable part of the
	// RoleSessionName shows: literal text of [\w+,.@-] (no '=') and at
	// least one of the placeholders {user} (Identity.User), {label}
	// (Identity.Label, or User when empty), {tenant} and {team}. "" means
	// DefaultSessionNameTemplate, "{label}". When the rendered text is
	// exactly Identity.User the name is SessionName(prefix, User), as
	// without a template; otherwise it is always the hashed form
	// prefix + rendered + "=" + hash(User), so the name stays unique per
	// user whatever the label, team or tenant say (see SessionName).
	// YAML: name_template.
	SessionNameTemplate string `yaml:"name_template"`
	// SourceIdentity, if true, sets the STS SourceIdentity of every
	// session, which then appears in CloudTrail for every action taken
	// with it. It needs sts:SetSourceIdentity in the gateway's own
	// permissions and in the invocation role's trust policy, and fails if
	// the gateway's own session already carries a SourceIdentity
	// (IAM User Guide, id_credentials_temp_control-access_monitor).
	// YAML: source_identity.
	SourceIdentity bool `yaml:"source_identity"`
	// SourceIdentityFrom says what the SourceIdentity shows: "user" (as
	// SessionName("", User)) or "label" (as the template "{label}"
	// without prefix). "" means DefaultSourceIdentityFrom, "label".
	// Either way the value is 2-64 characters of [\w+=,.@-] (STS
	// AssumeRole SourceIdentity) and unique per user.
	// YAML: source_identity_from.
	SourceIdentityFrom string `yaml:"source_identity_from"`
	// Tenants holds per-tenant rules, keyed by Identity.Tenant exactly
	// (role, tenant-only session name). YAML: tenants.
	Tenants map[string]TenantRule `yaml:"tenants"`
	// Teams holds per-team rules, keyed by Identity.Team exactly (role).
	// A tenant rule's role takes precedence over a team rule's.
	// YAML: teams.
	Teams map[string]TeamRule `yaml:"teams"`
}

// TagKeys names the STS session tag each identity attribute is sent
// under; "" means the attribute is not sent. A tag surfaces in CUR 2.0 as
// iamPrincipal/<key> once activated as a cost allocation tag, so these
// keys are what finance queries by. Keys must satisfy the STS tag key
// rules and differ from each other case-insensitively.
//
// A Config without TagKeys uses DefaultTagKeys(), so a config that
// forgets to name tags still attributes spend by team, tenant and cost
// center.
type TagKeys struct {
	Team       string `yaml:"team"`
	Tenant     string `yaml:"tenant"`
	CostCenter string `yaml:"cost_center"`
	// User sends the caller's user name as a tag as well; off by default,
	// because the RoleSessionName already carries it.
	User string `yaml:"user"`
}

// DefaultTagKeys returns the tag keys used when Config.TagKeys is nil:
// "team", "tenant" and "cost-center", and no user tag.
func DefaultTagKeys() TagKeys {
	return TagKeys{Team: "team", Tenant: "tenant", CostCenter: "cost-center"}
}

// withDefaults returns c with its zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.TagKeys == nil {
		d := DefaultTagKeys()
		c.TagKeys = &d
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.SessionNameTemplate == "" {
		c.SessionNameTemplate = DefaultSessionNameTemplate
	}
	if c.SourceIdentityFrom == "" {
		c.SourceIdentityFrom = DefaultSourceIdentityFrom
	}
	return c
}

// fields pairs each tag key with its config path.
func (k TagKeys) fields() []struct{ path, key string } {
	return []struct{ path, key string }{
		{"tag_keys.team", k.Team},
		{"tag_keys.tenant", k.Tenant},
		{"tag_keys.cost_center", k.CostCenter},
		{"tag_keys.user", k.User},
	}
}

// Validate reports every problem with c (after defaults), joined with
// errors.Join, each named by its YAML path relative to the session block
// ("role_arn", "tenants.acme.session_name"). It has no side effects.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	switch {
	case c.RoleARN == "":
		errs = append(errs, errors.New("role_arn: required"))
	default:
		if err := validateRoleARN("role_arn", c.RoleARN); err != nil {
			errs = append(errs, err)
		}
	}
	if err := validatePrefix(c.SessionNamePrefix); err != nil {
		errs = append(errs, fmt.Errorf("name_prefix: %w", err))
	}
	seen := map[string]string{}
	for _, f := range c.TagKeys.fields() {
		if f.key == "" {
			continue
		}
		if err := validateTagKey(f.key); err != nil {
			errs = append(errs, fmt.Errorf("%s: %.64q: %w", f.path, f.key, err))
			continue
		}
		lk := strings.ToLower(f.key)
		if prev, dup := seen[lk]; dup {
			errs = append(errs, fmt.Errorf("%s: key %q already used by %s (tag keys are case-insensitive)", f.path, f.key, prev))
			continue
		}
		seen[lk] = f.path
	}
	if d := c.Duration; d < minDuration || d > maxDuration || d%time.Second != 0 {
		errs = append(errs, fmt.Errorf("duration: must be whole seconds in %v..%v, got %v", minDuration, maxDuration, d))
	}
	if _, err := parseNameTemplate(c.SessionNameTemplate); err != nil {
		errs = append(errs, fmt.Errorf("name_template: %w", err))
	}
	if _, ok := sourceIdentityTemplates[c.SourceIdentityFrom]; !ok {
		errs = append(errs, fmt.Errorf(`source_identity_from: must be "user" or "label", got %.32q`, c.SourceIdentityFrom))
	}
	errs = append(errs, c.validateRules()...)
	return errors.Join(errs...)
}

// Resolver turns authenticated identities into STS session specs under one
// validated Config. Safe for concurrent use.
type Resolver struct {
	cfg      Config // defaults applied
	name     nameTemplate
	source   nameTemplate
	reserved map[string]bool // lowercased TenantRule.SessionName values
}

// sourceIdentityTemplates maps Config.SourceIdentityFrom to its template.
var sourceIdentityTemplates = map[string]string{"user": "{user}", "label": "{label}"}

// NewResolver validates cfg and returns a Resolver for it. The error joins
// every problem in cfg.
func NewResolver(cfg Config) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tenancy config: %w", err)
	}
	cfg = cfg.withDefaults()
	r := &Resolver{cfg: cfg, reserved: map[string]bool{}}
	r.name, _ = parseNameTemplate(cfg.SessionNameTemplate) // validated
	r.source, _ = parseNameTemplate(sourceIdentityTemplates[cfg.SourceIdentityFrom])
	for _, rule := range cfg.Tenants {
		if rule.SessionName != "" {
			r.reserved[strings.ToLower(rule.SessionName)] = true
		}
	}
	return r, nil
}

// Resolve returns the session spec for id:
//
//   - RoleARN: the tenant rule's, else the team rule's, else Config.RoleARN.
//   - SessionName: for a tenant-only identity (IsTenantOnly) whose tenant
//     rule sets SessionName for id.Platform, that exact name; otherwise
//     the name template's (see Config.SessionNameTemplate). A templated
//     name that would equal a reserved tenant session name (compared
//     case-insensitively) takes the hashed form instead, so no caller can
//     be billed as a tenant by choosing its user name.
//   - SourceIdentity: if Config.SourceIdentity, see
//     Config.SourceIdentityFrom.
//   - Tags: one per configured tag key whose attribute is non-empty,
//     sorted by key.
//   - Duration: Config.Duration.
//
// An empty attribute is not sent rather than sent as "". STS would accept
// an empty value, but an empty team tag is noise in CUR, and sending it
// would override a same-key tag set on the role itself (session tags win).
//
// An identity that STS cannot express exactly (empty user, a value with
// characters STS refuses, too long, aws: prefix) is refused with an error
// wrapping ErrInexpressible, listing every problem; nothing is truncated
// or sanitised.
func (r *Resolver) Resolve(id auth.Identity) (SessionSpec, error) {
	name, err := r.sessionName(id)
	if err != nil {
		return SessionSpec{}, fmt.Errorf("resolve user %.64q: %w", id.User, err)
	}
	var source string
	if r.cfg.SourceIdentity {
		if source, err = r.source.name("", id); err != nil {
			return SessionSpec{}, fmt.Errorf("resolve user %.64q: source identity: %w", id.User, err)
		}
	}
	var tags []Tag
	k := r.cfg.TagKeys
	for _, a := range [...]struct{ key, value string }{
		{k.Team, id.Team},
		{k.Tenant, id.Tenant},
		{k.CostCenter, id.CostCenter},
		{k.User, id.User},
	} {
		if a.key != "" && a.value != "" {
			tags = append(tags, Tag{Key: a.key, Value: a.value})
		}
	}
	slices.SortFunc(tags, func(a, b Tag) int { return cmp.Compare(a.Key, b.Key) })
	if err := validateTags(tags); err != nil {
		return SessionSpec{}, fmt.Errorf("resolve user %.64q: %w", id.User, err)
	}
	return SessionSpec{
		RoleARN:        r.roleFor(id),
		SessionName:    name,
		Tags:           tags,
		SourceIdentity: source,
		Duration:       r.cfg.Duration,
	}, nil
}

// sessionName is Resolve's SessionName.
//
// Why it is unique per caller: a templated name is unique per User (see
// nameTemplate.name) and never equals a reserved name (those hit are
// replaced by the hashed form, which holds one '=' while reserved names
// hold none). A reserved name is given to exactly one identity: the
// tenant-only identity TenantOnlyUser(rule.Platform, tenant) of the one
// tenant whose rule names it (names are unique across tenants).
func (r *Resolver) sessionName(id auth.Identity) (string, error) {
	if id.User == "" {
		return "", fmt.Errorf("session name: empty user: %w", ErrInexpressible)
	}
	if rule, ok := r.cfg.Tenants[id.Tenant]; ok && rule.SessionName != "" &&
		IsTenantOnly(id) && id.Platform == rule.Platform {
		return rule.SessionName, nil
	}
	name, err := r.name.name(r.cfg.SessionNamePrefix, id)
	if err != nil {
		return "", err
	}
	if r.reserved[strings.ToLower(name)] {
		// Only a verbatim name, prefix + User, can be hit.
		return hashedName(r.cfg.SessionNamePrefix, id.User, id.User), nil
	}
	return name, nil
}
