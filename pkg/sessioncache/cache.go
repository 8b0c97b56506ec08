// Package sessioncache turns a tenancy.SessionSpec into temporary AWS
// credentials by calling STS AssumeRole, and caches them so that each caller
// costs about one AssumeRole per session lifetime instead of one per request.
//
// The cache is a bounded LRU keyed by an injective encoding of everything
// sent to STS, so two specs that differ in any field (role, session name, any
// tag, source identity, duration) never share credentials. Concurrent misses
// for one spec share a single AssumeRole (singleflight); that call runs on a
// context detached from any one caller, so a caller that gives up does not
// cancel it for the others.
//
// Sessions of active users are renewed in the background before they go
// stale, with jitter so that a wave of first logins does not expire together
// an hour later; idle sessions are left to lapse. Every AssumeRole passes an
// admission budget that keeps the process under the account's STS quota,
// with active users ahead of new ones; STS throttling lowers the budget for
// a while, and refusals (AccessDenied, ValidationError) are remembered
// briefly so that a broken mapping cannot hammer STS. Failures (throttling,
// timeouts, 5xx) are remembered too, for a back-off that grows while they
// last, and when fills fail for session after session a breaker lets only
// one probe at a time reach STS until it answers again; every such refusal
// says when to retry. While STS is unreachable, cached credentials keep
// serving until a minute before they expire.
//
// With a Shared store (a fleet of replicas on Redis), a local miss or
// renewal first looks there, and one replica per session calls STS under a
// fleet-wide lock while the others wait for its session; the local LRU
// stays in front, so a hit costs no Redis call, and a store that fails
// leaves the cache working as it does alone.
//
// Get never returns credentials other than the ones STS issued for exactly
// the requested spec: on any failure it returns an error, never the gateway's
// own credentials and never zero credentials with a nil error.
package sessioncache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// STS is the slice of the STS client the cache needs; *sts.Client satisfies
// it. It is declared here, by its user, so tests can substitute a fake.
type STS interface {
	AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)
}

// Defaults applied by New to zero Config fields.
const (
	// DefaultSize is the default number of cached sessions.
	DefaultSize = 10000
	// DefaultExpiryMargin is how long before STS's Expiration credentials
	// stop being handed out, so that a request signed with them does not
	// reach AWS after they expire.
	DefaultExpiryMargin = 5 * time.Minute
	// DefaultSTSTimeout bounds getting one session from STS, backoff and
	// retries included.
	DefaultSTSTimeout = 10 * time.Second
	// DefaultRate is the default AssumeRole budget, calls per second: well
	// under the 600/s STS allows per account and Region for all STS calls
	// together (IAM User Guide, "STS request quotas").
	DefaultRate = 400
	// DefaultNewSessionShare is the default share of the rate new sessions
	// may use; the rest is kept for refreshes of active users.
	DefaultNewSessionShare = 0.75
	// DefaultAdmissionWait is how long a new session waits for the budget
	// before the caller gets 503.
	DefaultAdmissionWait = 2 * time.Second
	// DefaultRefreshBefore is how long before a session goes stale its
	// background refresh starts, plus up to DefaultRefreshJitter. With
	// one-hour sessions and the 5m margin, renewal comes 45 to 50 minutes
	// after issue: an active user costs 4 AssumeRole calls in 3 hours
	// (at 0, ~48, ~96, ~144 minutes), not 5 as with renewal at ~43, while
	// a renewal still has 5 to 10 minutes (10 to 20 retries, see
	// refreshRetry) before the session goes stale, and STS outages are
	// then bridged until a minute before expiry.
	DefaultRefreshBefore = 5 * time.Minute
	// DefaultRefreshJitter spreads refreshes of sessions created together.
	DefaultRefreshJitter = 5 * time.Minute
	// DefaultNegativeTTL is how long an STS refusal (AccessDenied,
	// ValidationError, ...) is answered from memory.
	DefaultNegativeTTL = 30 * time.Second
	// DefaultThrottleCooldown is how long the admission rate stays halved
	// after STS throttles the gateway.
	DefaultThrottleCooldown = 30 * time.Second
)

// lastResortMargin: while STS cannot be reached, a cached session keeps
// serving past its staleness until this long before it expires, so that no
// signature made with it reaches AWS after expiry.
const lastResortMargin = time.Minute

// refreshRetry is how long after a failed background refresh the next hit
// may try again.
const refreshRetry = 30 * time.Second

// activeWindow: a session used within this window counts as active for the
// soonest-expiry metric.
const activeWindow = 15 * time.Minute

// maxAttempts bounds AssumeRole attempts per session fill: the first and,
// if STS throttled or failed, one retry after a jittered backoff, for a
// blip. No more: a request waiting on STS should fail fast and its client
// come back after the Retry-After it is given (the failure back-off keeps
// the session from calling STS again before then); retrying harder inside
// the gateway only multiplies the load on an STS that is already failing.
const maxAttempts = 2

// minSessionDuration is the smallest DurationSeconds STS accepts (900 s,
// AssumeRole API reference). An ExpiryMargin at or above it would make every
// session expired on arrival.
const minSessionDuration = 900 * time.Second

// Source is the aws.Credentials.Source of credentials returned by Get.
const Source = "sessioncache"

// Config configures a Cache. Zero values take the documented defaults.
type Config struct {
	// STS issues the credentials. Required.
	STS STS
	// Size is the maximum number of cached sessions; the least recently
	// used is evicted beyond it. Default 10000.
	Size int
	// Now is the clock used for expiry and call latency. Default time.Now.
	Now func() time.Time
	// ExpiryMargin: credentials are treated as expired this long before the
	// Expiration STS returned. Default 5m; must be below 15m, the shortest
	// session STS issues.
	ExpiryMargin time.Duration
	// STSTimeout bounds getting one session from STS (admission wait,
	// attempts and backoff), independently of any caller's context.
	// Default 10s.
	STSTimeout time.Duration
	// Rate is the process's AssumeRole budget, calls per second; no
	// one-second window sees more. Default 400; more than 1 and at most
	// 600, the STS account quota.
	Rate float64
	// NewSessionShare is the share of Rate new sessions may use, in (0,1];
	// the rest is kept for refreshes of active users. Default 0.75.
	NewSessionShare float64
	// AdmissionWait is the longest a new session waits for the budget;
	// then Get fails with an *OverloadedError. Default 2s.
	AdmissionWait time.Duration
	// RefreshBefore: a session used after (stale time - RefreshBefore -
	// up to RefreshJitter) is renewed in the background; at most half its
	// usable life is spent before that. Defaults 10m and 5m.
	RefreshBefore time.Duration
	RefreshJitter time.Duration
	// NegativeTTL is how long an STS refusal for a spec is remembered.
	// Default 30s.
	NegativeTTL time.Duration
	// ThrottleCooldown is how long the rate stays halved after STS
	// throttling. Default 30s.
	ThrottleCooldown time.Duration
	// Rand returns a number in [0,1) for jitter. Default math/rand/v2.
	Rand func() float64
	// Registerer receives the cache's Prometheus metrics. Optional; nil
	// means no metrics are registered.
	Registerer prometheus.Registerer
	// Shared is the fleet's shared session store (pkg/fleet's Sessions):
	// a local miss or renewal reads it before calling STS, and one
	// replica at a time calls STS per session. Optional; nil means this
	// process assumes its own sessions. Its failures never fail a Get.
	Shared Shared
	// Budget is the fleet's STS budget (pkg/fleet's Budget), which every
	// AssumeRole passes instead of this process's own: Rate,
	// NewSessionShare, AdmissionWait and ThrottleCooldown are then the
	// Budget's business. Optional; nil means this process's own budget.
	Budget Budget
}

// Cache hands out STS credentials per session spec. It is safe for
// concurrent use. The zero value is not usable; call New.
type Cache struct {
	sts           STS
	now           func() time.Time
	rand          func() float64
	margin        time.Duration
	stsTimeout    time.Duration
	refreshBefore time.Duration
	refreshJitter time.Duration
	negativeTTL   time.Duration

	lru      *lru.Cache[string, *entry]
	negative *lru.Cache[string, refusal]
	flights  singleflight.Group
	adm      *admission
	br       *breaker
	m        *metrics
	shared   Shared         // nil without a fleet
	sm       *sharedMetrics // registered only with shared

	// root ends background work at Close.
	root   context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
}

// entry is one cached session. Its credentials and times never change; a
// renewal stores a new entry under the same key. The atomics coordinate
// background refresh without a lock on the hit path.
type entry struct {
	creds aws.Credentials
	// staleAt is creds.Expires minus the expiry margin: from this instant
	// the entry is handed out only while STS cannot renew it.
	staleAt time.Time
	// lastResortAt is creds.Expires minus lastResortMargin: the entry is
	// never handed out after it.
	lastResortAt time.Time

	refreshAt  atomic.Int64 // unix ns: a hit from then starts a background refresh
	lastUsed   atomic.Int64 // unix ns of the latest hit
	refreshing atomic.Bool
}

// fresh reports whether e may be handed out at now.
func (e *entry) fresh(now time.Time) bool { return now.Before(e.staleAt) }

// refusal is a remembered STS answer for one spec that a new call before
// until would only repeat: a refusal (AccessDenied, ...), answered as it
// was, or a transient failure (ErrThrottled, ErrUnavailable), answered
// with a retry hint.
type refusal struct {
	err   error
	until time.Time
	// failures counts consecutive transient failures (0 for a refusal);
	// the back-off grows with it (backoffAfter).
	failures int
}

// maxRate is the highest Rate accepted: STS allows 600 requests per second
// per account and Region for all STS calls together (IAM User Guide, "STS
// request quotas"), so a larger budget could only be spent by being
// throttled.
const maxRate = 600

// Validate reports every problem in c's settings at once (errors.Join),
// each message starting with the key of the field: size, expiry_margin,
// refresh_before, refresh_jitter, timeout, admission_wait, negative_ttl,
// throttle_cooldown, rate or new_session_share. Zero fields are valid:
// they take the Default* values. It has no side effects. The STS client is
// a dependency, not a setting: New checks it, so a config loader can
// validate settings before any client exists.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Size < 0 {
		add("size: must be at least 1, or 0 for the default %d, got %d", DefaultSize, c.Size)
	}
	if c.ExpiryMargin < 0 || c.ExpiryMargin >= minSessionDuration {
		add("expiry_margin: must be at least 0 and less than %v (the shortest STS session), got %v", minSessionDuration, c.ExpiryMargin)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"refresh_before", c.RefreshBefore}, {"refresh_jitter", c.RefreshJitter}, {"timeout", c.STSTimeout},
		{"admission_wait", c.AdmissionWait}, {"negative_ttl", c.NegativeTTL}, {"throttle_cooldown", c.ThrottleCooldown},
	} {
		if d.v < 0 {
			add("%s: must not be negative, got %v", d.key, d.v)
		}
	}
	// Written so that NaN fails too.
	if c.Rate != 0 && !(c.Rate > 1 && c.Rate <= maxRate) {
		add("rate: must be more than 1 and at most %d (the STS account quota), got %v", maxRate, c.Rate)
	}
	if c.NewSessionShare != 0 && !(c.NewSessionShare > 0 && c.NewSessionShare <= 1) {
		add("new_session_share: must be in (0,1], got %v", c.NewSessionShare)
	}
	return errors.Join(errs...)
}

// New returns a Cache configured by cfg, or an error if cfg is invalid (see
// Validate) or the metrics cannot be registered.
func New(cfg Config) (*Cache, error) {
	err := cfg.Validate()
	if cfg.STS == nil {
		err = errors.Join(errors.New("sts: required"), err)
	}
	if err != nil {
		return nil, fmt.Errorf("sessioncache: %w", err)
	}

	cfg = cfg.WithDefaults()
	c := &Cache{
		sts:           cfg.STS,
		now:           cfg.Now,
		rand:          cfg.Rand,
		margin:        cfg.ExpiryMargin,
		stsTimeout:    cfg.STSTimeout,
		refreshBefore: cfg.RefreshBefore,
		refreshJitter: cfg.RefreshJitter,
		negativeTTL:   cfg.NegativeTTL,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	size := cfg.Size
	l, err := lru.New[string, *entry](size)
	if err != nil {
		return nil, fmt.Errorf("sessioncache: %w", err)
	}
	c.lru = l
	c.negative, _ = lru.New[string, refusal](max(64, size/10))
	c.adm = newAdmission(cfg.Rate, cfg.NewSessionShare, cfg.AdmissionWait, cfg.ThrottleCooldown, c.now)
	c.root, c.cancel = context.WithCancel(context.Background())
	c.m = newMetrics(l.Len, c.minRemaining)
	c.adm.throttleFn, c.adm.budget = c.m.admissionRate.Set, cfg.Budget
	c.m.admissionRate.Set(c.adm.rate())
	c.br = &breaker{setOpen: func(open bool) {
		if open {
			c.m.breakerOpen.Set(1)
		} else {
			c.m.breakerOpen.Set(0)
		}
	}}
	c.shared, c.sm = cfg.Shared, newSharedMetrics()
	if cfg.Registerer != nil {
		if c.shared != nil {
			if err := c.sm.register(cfg.Registerer); err != nil {
				return nil, fmt.Errorf("sessioncache: %w", err)
			}
		}
		if err := c.m.register(cfg.Registerer); err != nil {
			if c.shared != nil {
				c.sm.unregister(cfg.Registerer)
			}
			return nil, fmt.Errorf("sessioncache: %w", err)
		}
	}
	return c, nil
}

// Get returns credentials for exactly this spec: from the cache while they
// are more than ExpiryMargin from expiring, otherwise from a new AssumeRole.
// A hit on a session due for renewal starts a background refresh and
// returns the current, still valid, credentials at once. Concurrent callers
// for the same spec share one AssumeRole; a caller whose ctx ends stops
// waiting (and gets an error wrapping ctx.Err()) without cancelling the
// call for the others, whose result is still cached.
//
// Failures wrap exactly one of ErrAccessDenied, ErrInvalidSession,
// ErrThrottled, ErrUnavailable or ErrOverloaded, or else the caller's
// context error; RetryAfter gives a hint for every ErrThrottled,
// ErrUnavailable and ErrOverloaded. After an STS failure, Get answers for
// the spec from memory, without calling STS, until the failure back-off
// passes; while the breaker is open, a spec with no usable session fails
// at once unless its fill is the probe. Error texts name the session and
// may quote STS (role ARNs); they never contain credentials.
func (c *Cache) Get(ctx context.Context, spec tenancy.SessionSpec) (aws.Credentials, error) {
	key := specKey(spec)
	now := c.now()
	e, cached := c.lru.Get(key)
	if cached && e.fresh(now) {
		c.m.hits.Inc()
		ns := now.UnixNano()
		e.lastUsed.Store(ns)
		if ns >= e.refreshAt.Load() && e.refreshing.CompareAndSwap(false, true) {
			c.refreshInBackground(key, spec, e)
		}
		return e.creds, nil
	}
	c.m.misses.Inc()

	// A cached but stale session belongs to an active user: renew it with
	// priority, and keep serving it while STS cannot be reached.
	var stale *entry
	cls := classNew
	if cached && now.Before(e.lastResortAt) {
		stale, cls = e, classActive
	}
	traceFrom(ctx).miss(stale != nil)
	if err := c.remembered(key, now); err != nil {
		if stale != nil && transient(err) {
			c.m.staleServed.Inc()
			return stale.creds, nil
		}
		return aws.Credentials{}, err
	}
	if err := checkSpec(spec); err != nil {
		return aws.Credentials{}, fmt.Errorf("assume role for session %q: %w: %w", spec.SessionName, ErrInvalidSession, err)
	}
	if err := ctx.Err(); err != nil {
		// Do not start an STS call nobody is waiting for.
		return aws.Credentials{}, fmt.Errorf("assume role for session %q: %w", spec.SessionName, err)
	}

	ch := c.flights.DoChan(key, func() (any, error) {
		return c.fill(ctx, key, spec, cls, func(e *entry, now time.Time) bool { return e.fresh(now) })
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			if stale != nil && transient(r.Err) && c.now().Before(stale.lastResortAt) {
				c.m.staleServed.Inc()
				return stale.creds, nil
			}
			return aws.Credentials{}, r.Err
		}
		return r.Val.(*entry).creds, nil
	case <-ctx.Done():
		return aws.Credentials{}, fmt.Errorf("assume role for session %q: %w", spec.SessionName, ctx.Err())
	}
}

// transient reports whether err may pass once STS answers again.
func transient(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrThrottled) || errors.Is(err, ErrOverloaded)
}

// refreshInBackground renews old's session off the request path. On
// failure the entry keeps serving and the next hit after refreshRetry tries
// again.
func (c *Cache) refreshInBackground(key string, spec tenancy.SessionSpec, old *entry) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		old.refreshing.Store(false)
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer old.refreshing.Store(false)
		ch := c.flights.DoChan(key, func() (any, error) {
			// Done if someone else already replaced old: a flight here,
			// or another replica (the shared store), whose session is
			// then newer than old, not old itself read back.
			return c.fill(c.root, key, spec, classActive, func(e *entry, now time.Time) bool {
				return e != old && e.creds.Expires.After(old.creds.Expires) && e.fresh(now)
			})
		})
		select {
		case r := <-ch:
			if r.Err != nil {
				c.m.refreshes.WithLabelValues(outcomeError).Inc()
				old.refreshAt.Store(c.now().Add(refreshRetry).UnixNano())
				return
			}
			c.m.refreshes.WithLabelValues(outcomeSuccess).Inc()
		case <-c.root.Done():
		}
	}()
}

// Close stops background refreshes and waits for them. Get keeps working
// afterwards, without background refresh.
func (c *Cache) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// Len returns the number of cached sessions, including expired ones not yet
// replaced or evicted.
func (c *Cache) Len() int { return c.lru.Len() }

// fill runs inside the flight for key: it re-checks the cache and the
// remembered answers (another flight may have ended since), then gets the
// session from the shared store if there is one (fillShared), else from
// STS (fillFromSTS). done says whether an entry found on the way is the
// one this fill is for.
func (c *Cache) fill(ctx context.Context, key string, spec tenancy.SessionSpec, cls class, done func(*entry, time.Time) bool) (*entry, error) {
	now := c.now()
	if e, ok := c.lru.Peek(key); ok && done(e, now) {
		return e, nil
	}
	if err := c.remembered(key, now); err != nil {
		return nil, err
	}
	if c.shared != nil {
		return c.fillShared(ctx, key, spec, cls, done)
	}
	return c.fillFromSTS(ctx, key, spec, cls)
}

// fillFromSTS asks the breaker, then calls STS and caches the result. A
// refusal STS will repeat (AccessDenied, ValidationError) is remembered
// for NegativeTTL; a transient failure for its back-off. Both kinds of
// answer tell the breaker whether STS is answering.
func (c *Cache) fillFromSTS(ctx context.Context, key string, spec tenancy.SessionSpec, cls class) (*entry, error) {
	now := c.now()
	ok, probe, wait := c.br.admit(now)
	if !ok {
		c.m.breakerSkips.Inc()
		return nil, withRetryAfter(fmt.Errorf("assume role for session %q: %w: %w", spec.SessionName, ErrUnavailable, errBreakerOpen), wait)
	}
	attempts := maxAttempts
	if probe {
		attempts = 1 // a probe is one AssumeRole
	}
	e, err := c.assumeRole(ctx, spec, cls, attempts)
	now = c.now()
	switch {
	case err == nil:
		c.br.done(now, probe, stsAnswered)
		if c.lru.Add(key, e) {
			c.m.evictions.Inc()
		}
		c.negative.Remove(key)
		return e, nil
	case errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrInvalidSession):
		c.br.done(now, probe, stsAnswered)
		c.negative.Add(key, refusal{err: err, until: now.Add(c.negativeTTL)})
		return nil, err
	case errors.Is(err, ErrOverloaded) || c.root.Err() != nil:
		// STS was not asked (admission), or not heard out (Close): there
		// is nothing to remember about it.
		c.br.done(now, probe, stsNotCalled)
		if !errors.Is(err, ErrOverloaded) { // it carries its own hint
			err = withRetryAfter(err, time.Second)
		}
		return nil, err
	default: // ErrThrottled or ErrUnavailable from STS
		c.br.done(now, probe, stsFailed)
		return nil, withRetryAfter(err, c.backOff(key, err, now))
	}
}

// remembered returns the remembered answer for key at now, or nil: a
// refusal as STS gave it, or a transient failure with the rest of its
// back-off as the retry hint. It counts the AssumeRole call this saves.
func (c *Cache) remembered(key string, now time.Time) error {
	r, ok := c.negative.Get(key)
	if !ok || !now.Before(r.until) {
		return nil
	}
	if r.failures == 0 {
		c.m.suppressed.Inc()
		return r.err
	}
	c.m.backedOff.Inc()
	return withRetryAfter(r.err, r.until.Sub(now))
}

// backOff remembers a transient STS failure for key, through the same
// memory as refusals, and returns how long it is answered from there: the
// back-off grows with consecutive failures, which count as consecutive
// while each comes within maxFailureBackoff of the last back-off's end.
func (c *Cache) backOff(key string, err error, now time.Time) time.Duration {
	n := 1
	if prev, ok := c.negative.Peek(key); ok && prev.failures > 0 && now.Before(prev.until.Add(maxFailureBackoff)) {
		n = prev.failures + 1
	}
	d := backoffAfter(n)
	c.negative.Add(key, refusal{err: err, until: now.Add(d), failures: n})
	return d
}

// minRemaining is the time left on the soonest-expiring credentials of the
// sessions used within activeWindow, in seconds; NaN if there are none.
func (c *Cache) minRemaining() float64 {
	now := c.now()
	since := now.Add(-activeWindow).UnixNano()
	least := math.NaN()
	for _, e := range c.lru.Values() {
		if e.lastUsed.Load() < since {
			continue
		}
		if left := e.creds.Expires.Sub(now).Seconds(); math.IsNaN(least) || left < least {
			least = left
		}
	}
	return least
}

// WithDefaults returns c with every zero setting replaced by its Default*
// value: what New runs with, and what a caller that shares the settings
// with another component (the fleet's STS budget) must use too.
func (c Config) WithDefaults() Config {
	c.Size = orDefault(c.Size, DefaultSize)
	c.ExpiryMargin = orDefault(c.ExpiryMargin, DefaultExpiryMargin)
	c.STSTimeout = orDefault(c.STSTimeout, DefaultSTSTimeout)
	c.Rate = orDefault(c.Rate, DefaultRate)
	c.NewSessionShare = orDefault(c.NewSessionShare, DefaultNewSessionShare)
	c.AdmissionWait = orDefault(c.AdmissionWait, DefaultAdmissionWait)
	c.RefreshBefore = orDefault(c.RefreshBefore, DefaultRefreshBefore)
	c.RefreshJitter = orDefault(c.RefreshJitter, DefaultRefreshJitter)
	c.NegativeTTL = orDefault(c.NegativeTTL, DefaultNegativeTTL)
	c.ThrottleCooldown = orDefault(c.ThrottleCooldown, DefaultThrottleCooldown)
	return c
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// assumeRole gets one session from STS for spec in at most attempts
// AssumeRole calls: each attempt passes admission; Throttling lowers the
// admission rate and, like an unreachable STS, is retried with jittered
// backoff within STSTimeout. The SDK's own retries are off so that every
// attempt is counted by admission. The call is detached from the caller's
// cancellation but not from Close.
func (c *Cache) assumeRole(ctx context.Context, spec tenancy.SessionSpec, cls class, attempts int) (*entry, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.stsTimeout)
	defer cancel()
	stop := context.AfterFunc(c.root, cancel)
	defer stop()

	in := assumeRoleInput(spec)
	tr := traceFrom(ctx)
	var stsErr error // the previous attempt's failure
	for attempt := 0; ; attempt++ {
		tr.assumeRoleStart(attempt, cls)
		waitStart := c.now()
		if err := c.adm.wait(ctx, cls); err != nil {
			tr.admitted(c.now().Sub(waitStart), err)
			c.m.admissionWait.WithLabelValues(cls.String()).Observe(c.now().Sub(waitStart).Seconds())
			c.m.rejections.WithLabelValues(cls.String()).Inc()
			if stsErr != nil {
				return nil, stsErr // the retry was not admitted: STS's failure is the news
			}
			if !errors.Is(err, ErrOverloaded) {
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			return nil, fmt.Errorf("assume role for session %q: %w", spec.SessionName, err)
		}
		c.m.admissionWait.WithLabelValues(cls.String()).Observe(c.now().Sub(waitStart).Seconds())
		tr.admitted(c.now().Sub(waitStart), nil)

		start := c.now()
		out, err := c.sts.AssumeRole(ctx, in, noSDKRetries)
		c.m.latency.Observe(c.now().Sub(start).Seconds())
		if err == nil {
			e, err := c.newEntry(out)
			if err != nil {
				c.m.calls.WithLabelValues(outcomeError).Inc()
				err = fmt.Errorf("assume role for session %q: %w: %w", spec.SessionName, ErrUnavailable, err)
				tr.assumeRoleDone(err)
				return nil, err
			}
			c.m.calls.WithLabelValues(outcomeSuccess).Inc()
			tr.assumeRoleDone(nil)
			return e, nil
		}
		sentinel, outcome := classify(err)
		c.m.calls.WithLabelValues(outcome).Inc()
		if sentinel == ErrThrottled {
			c.adm.throttled()
		}
		err = fmt.Errorf("assume role for session %q: %w: %w", spec.SessionName, sentinel, err)
		tr.assumeRoleDone(err)
		if (sentinel != ErrThrottled && sentinel != ErrUnavailable) || attempt+1 >= attempts || ctx.Err() != nil {
			return nil, err
		}
		stsErr = err
		// Full jitter on 100ms, doubling per attempt: replicas that were
		// throttled together do not come back together.
		backoff := time.Duration(c.rand() * float64(100*time.Millisecond<<attempt))
		if dl, ok := ctx.Deadline(); ok && c.now().Add(backoff).After(dl) {
			return nil, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

// noSDKRetries turns off the SDK's retries for one call: the cache retries
// itself, through admission.
func noSDKRetries(o *sts.Options) { o.RetryMaxAttempts = 1 }

// newEntry builds a cache entry from an AssumeRole answer, refusing one
// without complete credentials or whose credentials are already within
// the margin of expiring. Its errors never include credential values.
func (c *Cache) newEntry(out *sts.AssumeRoleOutput) (*entry, error) {
	now, margin := c.now(), c.margin
	if out == nil || out.Credentials == nil {
		return nil, errors.New("response has no credentials")
	}
	cr := out.Credentials
	var missing []string
	if aws.ToString(cr.AccessKeyId) == "" {
		missing = append(missing, "AccessKeyId")
	}
	if aws.ToString(cr.SecretAccessKey) == "" {
		missing = append(missing, "SecretAccessKey")
	}
	if aws.ToString(cr.SessionToken) == "" {
		missing = append(missing, "SessionToken")
	}
	if cr.Expiration == nil {
		missing = append(missing, "Expiration")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("response credentials lack %v", missing)
	}
	if staleAt := cr.Expiration.Add(-margin); !now.Before(staleAt) {
		return nil, fmt.Errorf("response credentials expire at %v, within %v of now (%v)",
			cr.Expiration.UTC().Format(time.RFC3339), margin, now.UTC().Format(time.RFC3339))
	}
	return c.entryFor(aws.Credentials{
		AccessKeyID:     *cr.AccessKeyId,
		SecretAccessKey: *cr.SecretAccessKey,
		SessionToken:    *cr.SessionToken,
		Expires:         *cr.Expiration,
	}, now), nil
}

// entryFor builds the cache entry of creds received at now, from STS or
// from the shared store: its times derive from creds.Expires alone.
func (c *Cache) entryFor(creds aws.Credentials, now time.Time) *entry {
	creds.Source, creds.CanExpire = Source, true
	staleAt := creds.Expires.Add(-c.margin)
	e := &entry{
		creds:        creds,
		staleAt:      staleAt,
		lastResortAt: creds.Expires.Add(-min(lastResortMargin, c.margin)),
	}
	// Refresh RefreshBefore plus jitter ahead of staleness, but never in
	// the first half of the usable life left (STS may issue short
	// sessions).
	lead := c.refreshBefore + time.Duration(c.rand()*float64(c.refreshJitter))
	if half := staleAt.Sub(now) / 2; lead > half {
		lead = half
	}
	e.refreshAt.Store(staleAt.Add(-lead).UnixNano())
	e.lastUsed.Store(now.UnixNano())
	return e
}
