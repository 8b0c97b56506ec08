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
	minDuration     = 15 * time.Minute
	maxDuration     = time.Hour
	defaultDuration = time.Hour
)

// roleARN matches an IAM role ARN: arn:<partition>:iam::<12-digit
// account>:role/<optional path/><name>, with IAM's path characters
// (U+0021-U+007E) and role name characters ([\w+=,.@-]{1,64}). STS limits
// RoleArn to 20-2048 characters.
var roleARN = regexp.MustCompile(`^arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/(?:[\x21-\x7e]+/)?[A-Za-z0-9_+=,.@-]{1,64}$`)

const maxRoleARN = 2048

// Config says which role every caller's session assumes and how the
// caller's identity is written into it.
type Config struct {
	// RoleARN is the Bedrock invocation role each caller's session
	// assumes, for example arn:aws:iam::123456789012:role/BedrockUser.
	// Required.
	RoleARN string
	// SessionNamePrefix is prepended to every RoleSessionName, for
	// example "gw-". Optional; at most 32 characters of [\w+,.@-] ('=' is
	// reserved, see SessionName).
	SessionNamePrefix string
	// TagKeys names the session tag each identity attribute is sent as.
	// nil means DefaultTagKeys(); a non-nil value is taken literally, so
	// &TagKeys{} sends no tags (for a role whose trust policy does not
	// allow sts:TagSession).
	TagKeys *TagKeys
	// Duration is the requested session lifetime (DurationSeconds): whole
	// seconds in 15m..1h. Zero means 1h.
	Duration time.Duration
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
	Team, Tenant, CostCenter string
	// User sends the caller's user name as a tag as well; off by default,
	// because the RoleSessionName already carries it.
	User string
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
		c.Duration = defaultDuration
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
// errors.Join, each naming the config field. It has no side effects.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	switch {
	case c.RoleARN == "":
		errs = append(errs, errors.New("role_arn: required"))
	case len(c.RoleARN) > maxRoleARN || !roleARN.MatchString(c.RoleARN):
		errs = append(errs, fmt.Errorf("role_arn: %.80q is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)", c.RoleARN))
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
	return errors.Join(errs...)
}

// Resolver turns authenticated identities into STS session specs under one
// validated Config. Safe for concurrent use.
type Resolver struct {
	cfg Config // defaults applied
}

// NewResolver validates cfg and returns a Resolver for it. The error joins
// every problem in cfg.
func NewResolver(cfg Config) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tenancy config: %w", err)
	}
	return &Resolver{cfg: cfg.withDefaults()}, nil
}

// Resolve returns the session spec for id: the configured role and
// duration, SessionName(prefix, id.User), and one tag per configured tag
// key whose attribute is non-empty, sorted by key.
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
	name, err := SessionName(r.cfg.SessionNamePrefix, id.User)
	if err != nil {
		return SessionSpec{}, fmt.Errorf("resolve user %.64q: %w", id.User, err)
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
		RoleARN:     r.cfg.RoleARN,
		SessionName: name,
		Tags:        tags,
		Duration:    r.cfg.Duration,
	}, nil
}
