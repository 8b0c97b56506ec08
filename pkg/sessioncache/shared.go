package sessioncache

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// Shared is a session store shared by the replicas of a fleet (pkg/fleet's
// *Sessions, on Redis), behind the local LRU: a local hit never touches
// it. On a local miss or a renewal the cache reads it before calling STS,
// and takes its lock so that one replica calls STS per session while the
// others wait for the value to appear. Every method may fail (Redis down);
// the cache then does what it does without a Shared, so a request never
// fails because of it.
//
// spec is the cache's injective encoding of a session spec (every field
// that reaches STS). It carries user names and tags: an implementation
// must not store it in clear, and must bind each value to it, so that a
// value can never be read back under another spec.
type Shared interface {
	// Load returns the credentials stored for spec; ok is false when there
	// are none usable by this replica (absent, or undecryptable).
	Load(ctx context.Context, spec string) (creds aws.Credentials, ok bool, err error)
	// Store shares creds for spec for ttl; after ttl Load must not return
	// them.
	Store(ctx context.Context, spec string, creds aws.Credentials, ttl time.Duration) error
	// Lock tries to take the fleet-wide lock on filling spec; held is false
	// when another replica holds it. The implementation keeps a held lock
	// alive until unlock, and lets it lapse by itself if this process
	// dies.
	Lock(ctx context.Context, spec string) (unlock func(), held bool, err error)
}

// Polling while another replica fills a session: an AssumeRole takes tens
// of milliseconds, so the first look is soon; then it backs off.
const (
	sharedPollMin = 5 * time.Millisecond
	sharedPollMax = 100 * time.Millisecond
)

// Bounded values of the result label of
// bedrock_gateway_fleet_session_lookups_total.
const (
	sharedHit   = "hit"   // the session came from the shared store
	sharedMiss  = "miss"  // none usable there: this replica called STS and shared the result
	sharedError = "error" // the store failed: this replica filled locally, as without one
)

// Bounded values of the outcome label of
// bedrock_gateway_fleet_session_lock_wait_seconds.
const (
	waitShared      = "shared"      // the holder's session appeared
	waitTakeover    = "takeover"    // the lock was released or lapsed: this replica filled
	waitTimeout     = "timeout"     // nothing within STSTimeout: this replica filled
	waitUnavailable = "unavailable" // the store failed while waiting: this replica filled
)

// sharedMetrics are the cache's metrics of the shared store, registered
// only when there is one.
type sharedMetrics struct {
	lookups  *prometheus.CounterVec   // result
	lockWait *prometheus.HistogramVec // outcome
}

func newSharedMetrics() *sharedMetrics {
	m := &sharedMetrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_fleet_session_lookups_total",
			Help: "Local session cache misses and renewals looked up in the fleet's shared store, by result: hit (no AssumeRole needed), miss (this replica called STS and shared the session), error (store unavailable: filled locally).",
		}, []string{"result"}),
		lockWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bedrock_gateway_fleet_session_lock_wait_seconds",
			Help:    "Time a replica waited while another held a session's fill lock, by outcome: shared (its session appeared), takeover (the lock was released or lapsed), timeout, unavailable (store failed); all but shared then filled locally.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
	}
	for _, r := range []string{sharedHit, sharedMiss, sharedError} {
		m.lookups.WithLabelValues(r)
	}
	return m
}

func (m *sharedMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.lookups, m.lockWait}
}

// fillShared is fill when there is a shared store: the shared session if
// it is one done accepts; else, under the fleet-wide lock, a session from
// STS, stored for the other replicas; else, while another replica holds
// the lock, its session once it appears, or the fill itself if the lock is
// released or lapses (the holder failed or died). Coordination is bounded
// by STSTimeout, after which the replica calls STS itself; any store
// failure falls back to the local fill at once.
func (c *Cache) fillShared(ctx context.Context, key string, spec tenancy.SessionSpec, cls class, done func(*entry, time.Time) bool) (*entry, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.stsTimeout)
	defer cancel()
	stop := context.AfterFunc(c.root, cancel)
	defer stop()

	var waitStart time.Time
	waiting := false
	waited := func(outcome string) {
		if waiting {
			c.sm.lockWait.WithLabelValues(outcome).Observe(c.now().Sub(waitStart).Seconds())
		}
	}
	local := func() (*entry, error) {
		c.sm.lookups.WithLabelValues(sharedError).Inc()
		return c.fillFromSTS(ctx, key, spec, cls)
	}
	poll := sharedPollMin
	for {
		e, err := c.loadShared(sctx, key, done)
		if err != nil {
			waited(waitUnavailable)
			return local()
		}
		if e != nil {
			waited(waitShared)
			c.sm.lookups.WithLabelValues(sharedHit).Inc()
			return e, nil
		}
		unlock, held, err := c.shared.Lock(sctx, key)
		if err != nil {
			waited(waitUnavailable)
			return local()
		}
		if held {
			defer unlock()
			// The previous holder may have stored its session between
			// our read and our lock: then the wait was answered by it.
			if e, err := c.loadShared(sctx, key, done); err == nil && e != nil {
				waited(waitShared)
				c.sm.lookups.WithLabelValues(sharedHit).Inc()
				return e, nil
			}
			waited(waitTakeover)
			c.sm.lookups.WithLabelValues(sharedMiss).Inc()
			return c.fillAndShare(ctx, key, spec, cls)
		}
		if !waiting {
			waiting, waitStart = true, c.now()
		}
		t := time.NewTimer(poll)
		select {
		case <-t.C:
		case <-sctx.Done():
			t.Stop()
			if c.root.Err() != nil {
				return c.fillFromSTS(ctx, key, spec, cls) // Close: fails at once, as without a store
			}
			waited(waitTimeout)
			c.sm.lookups.WithLabelValues(sharedMiss).Inc()
			return c.fillAndShare(ctx, key, spec, cls)
		}
		poll = min(2*poll, sharedPollMax)
	}
}

// loadShared returns the shared session for key if done accepts it, and
// caches it locally; nil if there is none such.
func (c *Cache) loadShared(ctx context.Context, key string, done func(*entry, time.Time) bool) (*entry, error) {
	creds, ok, err := c.shared.Load(ctx, key)
	if err != nil || !ok || !creds.HasKeys() || creds.SessionToken == "" {
		return nil, err
	}
	now := c.now()
	e := c.entryFor(creds, now)
	if !done(e, now) {
		return nil, nil
	}
	if c.lru.Add(key, e) {
		c.m.evictions.Inc()
	}
	c.negative.Remove(key)
	return e, nil
}

// fillAndShare gets a session from STS and shares it until it goes stale
// here (the expiry margin), so no replica reads it from the store when
// this one would no longer hand it out. Failing to share costs the other
// replicas an AssumeRole each, nothing else.
func (c *Cache) fillAndShare(ctx context.Context, key string, spec tenancy.SessionSpec, cls class) (*entry, error) {
	e, err := c.fillFromSTS(ctx, key, spec, cls)
	if err != nil {
		return nil, err
	}
	if ttl := e.staleAt.Sub(c.now()); ttl > 0 {
		c.shared.Store(context.WithoutCancel(ctx), key, e.creds, ttl)
	}
	return e, nil
}

// registerShared registers the shared-store metrics on r, all or none.
func (m *sharedMetrics) register(r prometheus.Registerer) error {
	cs := m.collectors()
	for i, col := range cs {
		if err := r.Register(col); err != nil {
			for _, done := range cs[:i] {
				r.Unregister(done)
			}
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

func (m *sharedMetrics) unregister(r prometheus.Registerer) {
	for _, col := range m.collectors() {
		r.Unregister(col)
	}
}
