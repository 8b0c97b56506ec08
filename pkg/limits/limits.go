// Package limits enforces request-rate and tokens-per-minute limits per
// key (an identity or a tenant), answering how long a refused caller should
// wait so the proxy can reply 429 ThrottlingException with Retry-After.
//
// A Limiter is per gateway replica: each replica keeps its own buckets in
// memory, so N replicas together admit up to N times a rule (pkg/fleet's
// Limiter shares the buckets through Redis, and falls back to this one
// while Redis is unreachable). Memory is bounded: buckets live in an LRU
// of configured size, and a key evicted from it starts again with a full
// bucket.
package limits

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// DefaultSize is the number of keys a Limiter tracks when Config.Size is
// zero.
const DefaultSize = 10000

// MaxDebtMinutes bounds how far Spend can push a token budget below zero:
// at most this many minutes of the rule's TokensPerMinute. One enormous
// response then locks its key out for at most about an hour instead of
// for ever, and Spend's work stays bounded. Exported so that pkg/fleet's
// Limiter bounds debt the same way.
const MaxDebtMinutes = 60

// LimitRule is a limit applied to one key. The zero value is unlimited, and
// each dimension is independent: a zero RequestsPerSecond leaves requests
// unlimited, a zero TokensPerMinute leaves tokens unlimited.
type LimitRule struct {
	// RequestsPerSecond is the sustained request rate allowed (a token
	// bucket refilling at this rate). 0 means unlimited. May be
	// fractional: 0.5 is one request every two seconds.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is how many requests may arrive at once (the bucket's
	// capacity). 0 means max(1, ceil(RequestsPerSecond)). Ignored when
	// RequestsPerSecond is 0.
	Burst int `yaml:"burst"`
	// TokensPerMinute is the model-token budget (input plus output tokens,
	// as the proxy reports them to Spend) per minute: a bucket of that
	// capacity refilling continuously at TokensPerMinute/60 per second.
	// 0 means unlimited.
	TokensPerMinute int64 `yaml:"tokens_per_minute"`
}

// IsZero reports whether r limits nothing.
func (r LimitRule) IsZero() bool { return r.RequestsPerSecond == 0 && r.TokensPerMinute == 0 }

// EffectiveBurst is the request bucket's capacity under r: Burst, or
// max(1, ceil(RequestsPerSecond)) when Burst is 0.
func (r LimitRule) EffectiveBurst() int {
	if r.Burst > 0 {
		return r.Burst
	}
	return max(1, int(math.Ceil(r.RequestsPerSecond)))
}

// Validate reports every problem with r, joined, each naming its YAML
// field (requests_per_second, burst, tokens_per_minute) so that a caller
// can prefix its own path.
func (r LimitRule) Validate() error {
	var errs []error
	if math.IsNaN(r.RequestsPerSecond) || math.IsInf(r.RequestsPerSecond, 0) || r.RequestsPerSecond < 0 {
		errs = append(errs, fmt.Errorf("requests_per_second: must be a finite number >= 0, got %v", r.RequestsPerSecond))
	}
	if r.Burst < 0 {
		errs = append(errs, fmt.Errorf("burst: must be >= 0, got %d", r.Burst))
	}
	if r.TokensPerMinute < 0 || r.TokensPerMinute > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("tokens_per_minute: must be 0..%d, got %d", math.MaxInt32, r.TokensPerMinute))
	}
	return errors.Join(errs...)
}

// Config configures a Limiter.
type Config struct {
	// Size is how many keys (identities plus tenants) the Limiter tracks
	// at once; the least recently used key beyond it is forgotten and
	// starts again with full buckets. 0 means DefaultSize. Size it above
	// the number of identities and tenants active within a few minutes:
	// a bucket idle that long is full again anyway, so forgetting it then
	// loses nothing.
	Size int
	// Now returns the current time; nil means time.Now. Tests inject a
	// fake clock.
	Now func() time.Time
}

// Limiter holds the request and token buckets of many keys. Keys are
// chosen by the caller, for example "id:<user>" and "tenant:<tenant>"; the
// caller must keep the namespaces apart. Safe for concurrent use.
type Limiter struct {
	now func() time.Time

	mu   sync.Mutex // guards keys and every bucket in it
	keys *simplelru.LRU[string, *buckets]
}

// buckets are one key's limiters, created on first use, with the rule
// values they were last configured for.
type buckets struct {
	req      *rate.Limiter
	reqRate  float64
	reqBurst int
	tok      *rate.Limiter
	tpm      int64
}

// New returns a Limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	if cfg.Size < 0 {
		return nil, fmt.Errorf("limits: size must be >= 0, got %d", cfg.Size)
	}
	if cfg.Size == 0 {
		cfg.Size = DefaultSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	keys, err := simplelru.NewLRU[string, *buckets](cfg.Size, nil)
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	return &Limiter{now: cfg.Now, keys: keys}, nil
}

// Len returns how many keys the Limiter currently tracks (at most
// Config.Size).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys.Len()
}

// entry returns key's buckets, creating them. l.mu must be held.
func (l *Limiter) entry(key string) *buckets {
	b, ok := l.keys.Get(key)
	if !ok {
		b = &buckets{}
		l.keys.Add(key, b)
	}
	return b
}

// reqBucket returns key's request bucket configured for rule (which limits
// requests). A changed rule is applied in place, keeping the tokens
// already taken. l.mu must be held.
func (l *Limiter) reqBucket(now time.Time, key string, rule LimitRule) *rate.Limiter {
	b := l.entry(key)
	r, burst := rule.RequestsPerSecond, rule.EffectiveBurst()
	switch {
	case b.req == nil:
		b.req = rate.NewLimiter(rate.Limit(r), burst)
	case b.reqRate != r || b.reqBurst != burst:
		b.req.SetLimitAt(now, rate.Limit(r))
		b.req.SetBurstAt(now, burst)
	}
	b.reqRate, b.reqBurst = r, burst
	return b.req
}

// tokBucket is reqBucket for the token budget (rule.TokensPerMinute > 0).
func (l *Limiter) tokBucket(now time.Time, key string, rule LimitRule) *rate.Limiter {
	b := l.entry(key)
	tpm := rule.TokensPerMinute
	perSecond := rate.Limit(float64(tpm) / 60)
	switch {
	case b.tok == nil:
		b.tok = rate.NewLimiter(perSecond, int(tpm))
	case b.tpm != tpm:
		b.tok.SetLimitAt(now, perSecond)
		b.tok.SetBurstAt(now, int(tpm))
	}
	b.tpm = tpm
	return b.tok
}

// wait is how long until lim holds at least one token at now (0 if it
// already does).
func wait(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	d := time.Duration(missing / float64(lim.Limit()) * float64(time.Second))
	return max(d, time.Nanosecond) // refused: always a positive wait
}

// Check is one key and the rule to apply to it, for AllowAll.
type Check struct {
	Key  string
	Rule LimitRule
}

// Allow takes one request from key's request bucket under rule. If the
// bucket is empty it takes nothing and returns false with the time until
// a request would be allowed (> 0; round it up to whole seconds for
// Retry-After). A rule with RequestsPerSecond 0 always allows.
func (l *Limiter) Allow(key string, rule LimitRule) (ok bool, retryAfter time.Duration) {
	return l.AllowAll(Check{key, rule})
}

// AllowAll takes one request from every check's bucket, or from none: if
// any bucket is empty nothing is taken and retryAfter is the longest wait
// among the empty ones. The proxy checks an identity and its tenant
// together so that a request refused by the tenant limit does not use up
// the identity's budget (or the other way round).
func (l *Limiter) AllowAll(checks ...Check) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.allowAll(l.now(), checks)
}

// allowAll is AllowAll at now. l.mu must be held.
func (l *Limiter) allowAll(now time.Time, checks []Check) (ok bool, retryAfter time.Duration) {
	lims := make([]*rate.Limiter, 0, len(checks))
	for _, c := range checks {
		if c.Rule.RequestsPerSecond <= 0 {
			continue
		}
		lim := l.reqBucket(now, c.Key, c.Rule)
		retryAfter = max(retryAfter, wait(lim, now))
		lims = append(lims, lim)
	}
	if retryAfter > 0 {
		return false, retryAfter
	}
	for _, lim := range lims {
		lim.AllowN(now, 1) // cannot fail: each holds >= 1 token, under l.mu
	}
	return true, 0
}

// Verdict is Admit's answer.
type Verdict struct {
	// OK reports that the request is admitted.
	OK bool
	// RetryAfter is, when refused, how long until the refusing limit
	// would admit the request (> 0; round it up to whole seconds for
	// Retry-After).
	RetryAfter time.Duration
	// TokenKey is the key whose token budget refused the request; ""
	// when the request buckets refused it (they answer together, see
	// AllowAll) or when it is admitted.
	TokenKey string
}

// Admit is what a gateway asks before each request, in one step (one
// Redis round trip for pkg/fleet's Limiter): AllowAll(checks...), then,
// if that admitted, AllowTokens for each check in order, the first
// exhausted budget refusing. A refusal by the request buckets takes
// nothing from any of them; a refusal by a token budget keeps the request
// taken from them, as when AllowAll and AllowTokens are called one after
// the other.
func (l *Limiter) Admit(checks ...Check) Verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if ok, retryAfter := l.allowAll(now, checks); !ok {
		return Verdict{RetryAfter: retryAfter}
	}
	for _, c := range checks {
		if c.Rule.TokensPerMinute <= 0 {
			continue
		}
		if d := wait(l.tokBucket(now, c.Key, c.Rule), now); d > 0 {
			return Verdict{RetryAfter: d, TokenKey: c.Key}
		}
	}
	return Verdict{OK: true}
}

// AllowTokens reports whether key's token budget under rule is not
// exhausted, before a request is sent: it takes nothing, because the
// request's token count is known only from its response (see Spend). If
// the budget is below one token it returns false and the time until it
// refills to one token. A rule with TokensPerMinute 0 always allows.
//
// A request that passes may use more tokens than remain: Spend records
// that as debt, which later requests wait out.
func (l *Limiter) AllowTokens(key string, rule LimitRule) (ok bool, retryAfter time.Duration) {
	if rule.TokensPerMinute <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if d := wait(l.tokBucket(now, key, rule), now); d > 0 {
		return false, d
	}
	return true, 0
}

// Spend records tokens used by a request of key (from its usage record,
// after the response) against key's budget under rule. Spending never
// fails: unlike rate.Limiter.AllowN it goes into debt, as
// rate.Limiter.ReserveN does (the budget goes negative and refills at
// TokensPerMinute/60 per second), because the tokens are already used.
// Debt is capped at 60 minutes of budget. A rule with TokensPerMinute 0,
// or tokens <= 0, records nothing.
func (l *Limiter) Spend(key string, rule LimitRule, tokens int64) {
	if rule.TokensPerMinute <= 0 || tokens <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	lim := l.tokBucket(now, key, rule)
	// ReserveN refuses n above the burst, so spend in burst-sized
	// chunks, each of which succeeds and may take the bucket negative.
	floor := -float64(MaxDebtMinutes) * float64(rule.TokensPerMinute)
	for tokens > 0 {
		n := min(tokens, rule.TokensPerMinute)
		if lim.TokensAt(now)-float64(n) < floor {
			n = int64(math.Floor(lim.TokensAt(now) - floor))
			tokens = n // last chunk
			if n <= 0 {
				return
			}
		}
		lim.ReserveN(now, int(n))
		tokens -= n
	}
}
