package budget

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// Config is the YAML block `budgets:`, a list of rules decoded directly by
// the config loader, so the yaml tags are the schema. The empty Config
// limits nothing, and a Tracker built from it costs a request one atomic
// load.
type Config []Rule

// Rule is one budget: how many dollars the callers it applies to may
// spend per UTC calendar period.
type Rule struct {
	// Name identifies the budget in metrics, logs, Redis keys and the 429
	// message: [a-z0-9_-], 1-64 characters, unique. Required.
	Name string `yaml:"name"`
	// Scope is the Identity field the budget is counted by: user, team,
	// tenant or cost_center. Required.
	Scope Scope `yaml:"scope"`
	// Match is the one subject (a team's name, a user ID...) the budget
	// applies to, or "*" for each subject separately: `scope: team,
	// match: "*"` gives every team a budget of its own of this size, not
	// one budget shared by all teams. Callers whose Scope field is empty
	// match nothing. Required.
	Match string `yaml:"match"`
	// Period is daily or monthly; both are UTC calendar periods, so every
	// replica and the bill agree on when they reset. Required.
	Period Period `yaml:"period"`
	// LimitUSD is the limit in dollars as an exact decimal string
	// ("5000", "12.50"; pricing.ParseMoney), more than 0. An unquoted YAML
	// number works too: it is read as the text written, never as a
	// float. Required.
	LimitUSD string `yaml:"limit_usd"`
	// Mode is hard (a caller who has reached the limit is refused until
	// the period resets) or soft (metrics and log lines only). Required,
	// so that a budget is never weaker or stronger than its author meant.
	Mode Mode `yaml:"mode"`
	// Thresholds are the fractions of the limit at which spend is counted
	// (bedrock_gateway_budget_threshold_crossings_total) and logged, once
	// per period and subject; each in (0, 10], no duplicates. Absent: 0.8
	// and 1.0; an empty list: no alerts.
	Thresholds []float64 `yaml:"thresholds"`
}

// Scope is the Identity field a budget is counted by.
type Scope string

// Scopes.
const (
	ScopeUser       Scope = "user"
	ScopeTeam       Scope = "team"
	ScopeTenant     Scope = "tenant"
	ScopeCostCenter Scope = "cost_center"
)

// of returns id's subject under s: "" when id has none.
func (s Scope) of(id auth.Identity) string {
	switch s {
	case ScopeUser:
		return id.User
	case ScopeTeam:
		return id.Team
	case ScopeTenant:
		return id.Tenant
	case ScopeCostCenter:
		return id.CostCenter
	}
	return ""
}

// Period is how long a budget's spend accumulates before it starts again
// from zero.
type Period string

// Periods, UTC calendar days and months.
const (
	Daily   Period = "daily"
	Monthly Period = "monthly"
)

// Mode says what happens when a budget is spent.
type Mode string

// Modes.
const (
	// Hard refuses the caller's next requests (429) until the period
	// resets. A request in flight when the limit is reached finishes: spend
	// is known only from the usage Bedrock reports at its end.
	Hard Mode = "hard"
	// Soft only counts and logs threshold crossings.
	Soft Mode = "soft"
)

// Each is the Match of a budget that every subject has separately.
const Each = "*"

// defaultThresholds are a rule's Thresholds when it sets none.
var defaultThresholds = []float64{0.8, 1.0}

// Bounds of a rule.
const (
	maxNameLen  = 64
	maxMatchLen = 1024 // a User can be an OIDC issuer and subject
	// maxThreshold catches a percentage written where a fraction is meant
	// (80 for 0.8) while allowing alerts well past the limit of a soft
	// budget.
	maxThreshold = 10
)

// Validate reports every problem at once (errors.Join), each named by its
// YAML path ("budgets[1].limit_usd: ..."). It has no side effects.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]int{}
	for i, r := range c {
		p := fmt.Sprintf("budgets[%d]", i)
		add := func(field, format string, a ...any) {
			errs = append(errs, fmt.Errorf("%s.%s: %s", p, field, fmt.Sprintf(format, a...)))
		}
		switch {
		case r.Name == "":
			add("name", "required")
		case len(r.Name) > maxNameLen || strings.IndexFunc(r.Name, notNameChar) >= 0:
			add("name", "must be 1-%d characters of [a-z0-9_-], got %.80q", maxNameLen, r.Name)
		default:
			if j, dup := seen[r.Name]; dup {
				add("name", "%q is also the name of budgets[%d]", r.Name, j)
			} else {
				seen[r.Name] = i
			}
		}
		switch r.Scope {
		case ScopeUser, ScopeTeam, ScopeTenant, ScopeCostCenter:
		case "":
			add("scope", "required: user, team, tenant or cost_center")
		default:
			add("scope", "must be user, team, tenant or cost_center, got %.80q", r.Scope)
		}
		if err := checkMatch(r.Scope, r.Match); err != nil {
			add("match", "%v", err)
		}
		switch r.Period {
		case Daily, Monthly:
		case "":
			add("period", "required: daily or monthly")
		default:
			add("period", "must be daily or monthly, got %.80q", r.Period)
		}
		if r.LimitUSD == "" {
			add("limit_usd", "required: a decimal number of dollars such as \"5000\"")
		} else if m, err := pricing.ParseMoney(r.LimitUSD); err != nil {
			add("limit_usd", "%v", err)
		} else if m <= 0 {
			add("limit_usd", "must be more than 0, got %s", r.LimitUSD)
		}
		switch r.Mode {
		case Hard, Soft:
		case "":
			add("mode", "required: hard or soft")
		default:
			add("mode", "must be hard or soft, got %.80q", r.Mode)
		}
		for j, f := range r.Thresholds {
			// Written so that NaN fails too.
			if !(f > 0 && f <= maxThreshold) {
				errs = append(errs, fmt.Errorf("%s.thresholds[%d]: must be a fraction of the limit in (0, %d], got %v", p, j, maxThreshold, f))
			} else if k := slices.Index(r.Thresholds, f); k < j {
				errs = append(errs, fmt.Errorf("%s.thresholds[%d]: %v is also thresholds[%d]", p, j, f, k))
			}
		}
	}
	return errors.Join(errs...)
}

func notNameChar(c rune) bool {
	return (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-'
}

// checkMatch reports whether m can be the Match of a rule of scope s.
// Teams, tenants and cost centers are session tag values, so a subject
// that is not one can never match (pkg/tenancy refuses such identities).
func checkMatch(s Scope, m string) error {
	switch {
	case m == "":
		return errors.New(`required: a subject, or "*" for each subject separately`)
	case m == Each:
		return nil
	case s == ScopeTeam || s == ScopeTenant || s == ScopeCostCenter:
		return tenancy.CheckRuleKey(m)
	case len(m) > maxMatchLen:
		return fmt.Errorf("must be at most %d characters, got %d", maxMatchLen, len(m))
	case strings.TrimSpace(m) != m || strings.IndexFunc(m, unicode.IsControl) >= 0:
		return fmt.Errorf("%.80q: must have no surrounding space or control characters", m)
	}
	return nil
}

// rule is a validated Rule, ready for the hot path.
type rule struct {
	Rule
	id         *ident // set by Tracker.install
	each       bool
	limit      pricing.Money
	thresholds []threshold // ascending

	refusals  prometheus.Counter   // hard budgets only
	crossings []prometheus.Counter // one per threshold
}

// threshold is one alert level of a rule.
type threshold struct {
	at    pricing.Money // spend at or above which it is crossed
	label string        // the fraction as configured, for metrics and logs
}

// compile turns a valid Config into rules.
func compile(c Config) []*rule {
	rules := make([]*rule, 0, len(c))
	for _, r := range c {
		limit, _ := pricing.ParseMoney(r.LimitUSD) // validated
		fr := &rule{Rule: r, each: r.Match == Each, limit: limit}
		fracs := r.Thresholds
		if fracs == nil {
			fracs = defaultThresholds
		}
		fracs = slices.Sorted(slices.Values(fracs))
		for _, f := range fracs {
			fr.thresholds = append(fr.thresholds, threshold{at: fraction(limit, f), label: strconv.FormatFloat(f, 'f', -1, 64)})
		}
		rules = append(rules, fr)
	}
	return rules
}

// fraction returns f of limit, rounded up to the picodollar. f is taken as
// the decimal it is written as (0.8 is 4/5, not the float nearest it), so
// that 0.8 of $5000 is exactly $4000.
func fraction(limit pricing.Money, f float64) pricing.Money {
	q, ok := new(big.Rat).SetString(strconv.FormatFloat(f, 'f', -1, 64))
	if !ok {
		return limit
	}
	q.Mul(q, new(big.Rat).SetInt64(int64(limit)))
	n, r := new(big.Int).QuoRem(q.Num(), q.Denom(), new(big.Int))
	if r.Sign() > 0 {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return math.MaxInt64
	}
	return pricing.Money(n.Int64())
}

// subject returns id's subject under r, and whether r applies to id.
func (r *rule) subject(id auth.Identity) (string, bool) {
	s := r.Scope.of(id)
	if s == "" || !r.each && s != r.Match {
		return "", false
	}
	return s, true
}
