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
// Get never returns credentials other than the ones STS issued for exactly
// the requested spec: on any failure it returns an error, never the gateway's
// own credentials and never zero credentials with a nil error.
package sessioncache

import (
	"context"
	"errors"
	"fmt"
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
	// DefaultSTSTimeout bounds one AssumeRole call, SDK retries included.
	DefaultSTSTimeout = 10 * time.Second
)

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
	// STSTimeout bounds each AssumeRole call (including SDK retries),
	// independently of any caller's context. Default 10s.
	STSTimeout time.Duration
	// Registerer receives the cache's Prometheus metrics. Optional; nil
	// means no metrics are registered.
	Registerer prometheus.Registerer
}

// Cache hands out STS credentials per session spec. It is safe for
// concurrent use. The zero value is not usable; call New.
type Cache struct {
	sts        STS
	now        func() time.Time
	margin     time.Duration
	stsTimeout time.Duration

	lru     *lru.Cache[string, *entry]
	flights singleflight.Group
	m       *metrics
}

// entry is one cached session. Entries are immutable once stored; a renewal
// stores a new entry under the same key, so readers need no lock.
type entry struct {
	creds aws.Credentials
	// staleAt is creds.Expires minus the expiry margin: from this instant
	// the entry is no longer handed out.
	staleAt time.Time
}

// fresh reports whether e may still be handed out at now.
func (e *entry) fresh(now time.Time) bool { return now.Before(e.staleAt) }

// New returns a Cache configured by cfg, or an error if cfg is invalid or
// the metrics cannot be registered.
func New(cfg Config) (*Cache, error) {
	var errs []error
	if cfg.STS == nil {
		errs = append(errs, errors.New("sts: required"))
	}
	if cfg.Size < 0 {
		errs = append(errs, fmt.Errorf("size: must not be negative, got %d", cfg.Size))
	}
	if cfg.ExpiryMargin < 0 || cfg.ExpiryMargin >= minSessionDuration {
		errs = append(errs, fmt.Errorf("expiry margin: must be 0..%v, got %v", minSessionDuration, cfg.ExpiryMargin))
	}
	if cfg.STSTimeout < 0 {
		errs = append(errs, fmt.Errorf("sts timeout: must not be negative, got %v", cfg.STSTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("sessioncache: %w", err)
	}

	c := &Cache{
		sts:        cfg.STS,
		now:        cfg.Now,
		margin:     cfg.ExpiryMargin,
		stsTimeout: cfg.STSTimeout,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.margin == 0 {
		c.margin = DefaultExpiryMargin
	}
	if c.stsTimeout == 0 {
		c.stsTimeout = DefaultSTSTimeout
	}
	size := cfg.Size
	if size == 0 {
		size = DefaultSize
	}
	l, err := lru.New[string, *entry](size)
	if err != nil {
		return nil, fmt.Errorf("sessioncache: %w", err)
	}
	c.lru = l
	c.m = newMetrics(l.Len)
	if cfg.Registerer != nil {
		if err := c.m.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("sessioncache: %w", err)
		}
	}
	return c, nil
}

// Get returns credentials for exactly this spec: from the cache while they
// are more than ExpiryMargin from expiring, otherwise from a new AssumeRole.
// Concurrent callers for the same spec share one AssumeRole; a caller whose
// ctx ends stops waiting (and gets an error wrapping ctx.Err()) without
// cancelling the call for the others, whose result is still cached.
//
// Failures wrap exactly one of ErrAccessDenied, ErrInvalidSession,
// ErrThrottled or ErrUnavailable, or else the caller's context error. Error
// texts name the session and may quote STS (role ARNs); they never contain
// credentials.
func (c *Cache) Get(ctx context.Context, spec tenancy.SessionSpec) (aws.Credentials, error) {
	key := specKey(spec)
	if e, ok := c.lru.Get(key); ok && e.fresh(c.now()) {
		c.m.hits.Inc()
		return e.creds, nil
	}
	c.m.misses.Inc()

	if err := checkSpec(spec); err != nil {
		return aws.Credentials{}, fmt.Errorf("assume role for session %q: %w: %w", spec.SessionName, ErrInvalidSession, err)
	}
	if err := ctx.Err(); err != nil {
		// Do not start an STS call nobody is waiting for.
		return aws.Credentials{}, fmt.Errorf("assume role for session %q: %w", spec.SessionName, err)
	}

	ch := c.flights.DoChan(key, func() (any, error) {
		return c.fill(ctx, key, spec)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return aws.Credentials{}, r.Err
		}
		return r.Val.(*entry).creds, nil
	case <-ctx.Done():
		return aws.Credentials{}, fmt.Errorf("assume role for session %q: %w", spec.SessionName, ctx.Err())
	}
}

// Len returns the number of cached sessions, including expired ones not yet
// replaced or evicted.
func (c *Cache) Len() int { return c.lru.Len() }

// fill runs inside the flight for key: it re-checks the cache (another flight
// may have filled it since the caller's miss), then calls STS on a context
// that keeps ctx's values but not its cancellation, and stores the result.
func (c *Cache) fill(ctx context.Context, key string, spec tenancy.SessionSpec) (*entry, error) {
	if e, ok := c.lru.Peek(key); ok && e.fresh(c.now()) {
		return e, nil
	}
	e, err := c.assumeRole(ctx, spec)
	if err != nil {
		return nil, err
	}
	if c.lru.Add(key, e) {
		c.m.evictions.Inc()
	}
	return e, nil
}

// assumeRole performs one AssumeRole call for spec and validates the answer.
func (c *Cache) assumeRole(ctx context.Context, spec tenancy.SessionSpec) (*entry, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.stsTimeout)
	defer cancel()

	start := c.now()
	out, err := c.sts.AssumeRole(ctx, assumeRoleInput(spec))
	c.m.latency.Observe(c.now().Sub(start).Seconds())
	if err != nil {
		sentinel, outcome := classify(err)
		c.m.calls.WithLabelValues(outcome).Inc()
		return nil, fmt.Errorf("assume role for session %q: %w: %w", spec.SessionName, sentinel, err)
	}
	e, err := newEntry(out, c.now(), c.margin)
	if err != nil {
		c.m.calls.WithLabelValues(outcomeError).Inc()
		return nil, fmt.Errorf("assume role for session %q: %w: %w", spec.SessionName, ErrUnavailable, err)
	}
	c.m.calls.WithLabelValues(outcomeSuccess).Inc()
	return e, nil
}

// newEntry builds a cache entry from an AssumeRole answer, refusing one
// without complete credentials or whose credentials are already within
// margin of expiring at now. Its errors never include credential values.
func newEntry(out *sts.AssumeRoleOutput, now time.Time, margin time.Duration) (*entry, error) {
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
	staleAt := cr.Expiration.Add(-margin)
	if !now.Before(staleAt) {
		return nil, fmt.Errorf("response credentials expire at %v, within %v of now (%v)",
			cr.Expiration.UTC().Format(time.RFC3339), margin, now.UTC().Format(time.RFC3339))
	}
	return &entry{
		creds: aws.Credentials{
			AccessKeyID:     *cr.AccessKeyId,
			SecretAccessKey: *cr.SecretAccessKey,
			SessionToken:    *cr.SessionToken,
			Source:          Source,
			CanExpire:       true,
			Expires:         *cr.Expiration,
		},
		staleAt: staleAt,
	}, nil
}
