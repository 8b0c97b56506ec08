package sessioncache

// Tests of the shared session store: three Cache instances on one real
// redis-server (internal/redistest), each with its own fleet.Store and
// fleet.Sessions, stand for three replicas; one fakeSTS counts the
// AssumeRole calls of them all. Session time is a fakeclock; the lock
// protocol runs on Redis's own clock, so what waits on it (a lapsed lock)
// takes real milliseconds, and tests poll for goroutines to finish rather
// than sleep.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/internal/redistest"
	"github.com/bedrock-gateway/gateway/pkg/fleet"
)

var _ Shared = (*fleet.Sessions)(nil)

// countingShared counts the calls a cache makes to its shared store.
type countingShared struct {
	Shared
	loads, stores, locks, lockMisses atomic.Int64
}

func (s *countingShared) Load(ctx context.Context, spec string) (aws.Credentials, bool, error) {
	s.loads.Add(1)
	return s.Shared.Load(ctx, spec)
}

func (s *countingShared) Store(ctx context.Context, spec string, creds aws.Credentials, ttl time.Duration) error {
	s.stores.Add(1)
	return s.Shared.Store(ctx, spec, creds, ttl)
}

func (s *countingShared) Lock(ctx context.Context, spec string) (func(), bool, error) {
	unlock, held, err := s.Shared.Lock(ctx, spec)
	s.locks.Add(1)
	if err == nil && !held {
		s.lockMisses.Add(1)
	}
	return unlock, held, err
}

func (s *countingShared) calls() int64 { return s.loads.Load() + s.stores.Load() + s.locks.Load() }

// sharedReplica is one gateway replica: a cache with its own Redis client
// and registry.
type sharedReplica struct {
	cache  *Cache
	reg    *prometheus.Registry
	shared *countingShared
}

// newKeyFile returns a session_key_file line with a fresh key under id.
func newKeyFile(id string) string {
	k := make([]byte, 32)
	rand.Read(k)
	return id + ":" + base64.StdEncoding.EncodeToString(k) + "\n"
}

// startSharedReplicas starts one replica per key file on srv, all calling
// f, all on the clock now, jitter fixed at half.
func startSharedReplicas(t testing.TB, srv *redistest.Server, f STS, now func() time.Time, keyFiles ...string) []*sharedReplica {
	t.Helper()
	var rs []*sharedReplica
	for _, kf := range keyFiles {
		keys, err := fleet.ParseSessionKeys([]byte(kf))
		if err != nil {
			t.Fatal(err)
		}
		fc := fleet.DefaultConfig()
		// A generous per-call timeout: under -race a slow Redis answer
		// would count as Redis down and cost an extra AssumeRole.
		fc.Redis.URL, fc.SessionKeyFile, fc.Timeout = srv.URL(), "unused", time.Second
		reg := prometheus.NewRegistry()
		st, err := fleet.Open(fc, fleet.Options{Now: now, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		sessions, err := fleet.NewSessions(st, keys, fleet.SessionsOptions{Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		r := &sharedReplica{reg: reg, shared: &countingShared{Shared: sessions}}
		r.cache = mustNew(t, Config{STS: f, Now: now, Rand: func() float64 { return 0.5 }, Registerer: reg, Shared: r.shared})
		t.Cleanup(r.cache.Close)
		rs = append(rs, r)
	}
	return rs
}

// eventually polls cond until it holds, for a goroutine to get somewhere.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// settle waits until the background refreshes c has started have ended.
// Call it only while no Get on c runs.
func settle(t testing.TB, c *Cache) {
	t.Helper()
	c.wg.Wait()
}

// histCount returns the sample count of the histogram series name{label=value}.
func histCount(t *testing.T, reg *prometheus.Registry, name, label, value string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func lookups(t *testing.T, r *sharedReplica, result string) float64 {
	t.Helper()
	return metricValue(t, r.reg, "bedrock_gateway_fleet_session_lookups_total", "result", result)
}

// TestSharedColdUserOneAssumeRole: 100 concurrent first requests of one
// user through three replicas make exactly one AssumeRole: one replica
// takes the lock and calls STS (held here until the other two are
// waiting on the lock), the other two read its session from Redis.
func TestSharedColdUserOneAssumeRole(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	release := make(chan struct{})
	f := &fakeSTS{now: clk.Now, block: release}
	kf := newKeyFile("k1")
	rs := startSharedReplicas(t, srv, f, clk.Now, kf, kf, kf)
	spec := testSpec("alice@example.com")

	const n = 100
	creds := make([]aws.Credentials, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { creds[i], errs[i] = rs[i%3].cache.Get(t.Context(), spec) })
	}
	eventually(t, "one replica in STS and two waiting on its lock", func() bool {
		return f.Calls() == 1 && rs[0].shared.lockMisses.Load()+rs[1].shared.lockMisses.Load()+rs[2].shared.lockMisses.Load() >= 2
	})
	close(release)
	wg.Wait()

	if got := f.Calls(); got != 1 {
		t.Errorf("AssumeRole calls = %d, want 1", got)
	}
	for i := range n {
		if errs[i] != nil || creds[i].AccessKeyID != "AKID1" {
			t.Fatalf("Get() #%d on replica %d = %q, %v, want AKID1", i, i%3, creds[i].AccessKeyID, errs[i])
		}
	}
	var hits, misses float64
	var waits uint64
	for _, r := range rs {
		hits += lookups(t, r, sharedHit)
		misses += lookups(t, r, sharedMiss)
		waits += histCount(t, r.reg, "bedrock_gateway_fleet_session_lock_wait_seconds", "outcome", waitShared)
	}
	if hits != 2 || misses != 1 || waits != 2 {
		t.Errorf("shared lookups: %v hits, %v misses, %d lock waits answered by the holder; want 2, 1, 2", hits, misses, waits)
	}
}

// TestSharedHolderDies: a replica takes the lock and then loses Redis (it
// crashed, or was cut off) without storing a session. The others wait for
// its lock to lapse, then exactly one of them calls STS and the rest read
// its session.
func TestSharedHolderDies(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	f := &fakeSTS{now: clk.Now}
	kf := newKeyFile("k1")
	spec := testSpec("alice@example.com")

	// The dying replica: its lock lapses 300ms after its last renewal.
	keys, _ := fleet.ParseSessionKeys([]byte(kf))
	fc := fleet.DefaultConfig()
	fc.Redis.URL, fc.SessionKeyFile = srv.URL(), "unused"
	st, err := fleet.Open(fc, fleet.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	dying, _ := fleet.NewSessions(st, keys, fleet.SessionsOptions{LockTTL: 300 * time.Millisecond})
	unlock, held, err := dying.Lock(t.Context(), specKey(spec))
	if err != nil || !held {
		t.Fatalf("Lock() = %v, %v, want held", held, err)
	}
	st.Close() // renewals now fail; unlock cannot reach Redis either
	defer unlock()

	rs := startSharedReplicas(t, srv, f, clk.Now, kf, kf, kf)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			if c, err := rs[i%3].cache.Get(t.Context(), spec); err != nil || c.AccessKeyID != "AKID1" {
				t.Errorf("Get() = %q, %v, want AKID1", c.AccessKeyID, err)
			}
		})
	}
	wg.Wait()
	if got := f.Calls(); got != 1 {
		t.Errorf("AssumeRole calls = %d, want 1", got)
	}
	var takeovers, shared uint64
	for _, r := range rs {
		takeovers += histCount(t, r.reg, "bedrock_gateway_fleet_session_lock_wait_seconds", "outcome", waitTakeover)
		shared += histCount(t, r.reg, "bedrock_gateway_fleet_session_lock_wait_seconds", "outcome", waitShared)
	}
	if takeovers != 1 || shared != 2 {
		t.Errorf("lock waits: %d takeovers, %d answered by the new holder; want 1, 2", takeovers, shared)
	}
	t.Logf("served after the dead holder's lock lapsed: %v", time.Since(start).Round(time.Millisecond))
}

// TestSharedWaitBoundedBySTSTimeout: a replica holds the lock, alive (it
// keeps renewing) but never storing a session. Another replica waits for
// it no longer than its STSTimeout, then calls STS itself.
func TestSharedWaitBoundedBySTSTimeout(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	f := &fakeSTS{now: clk.Now}
	kf := newKeyFile("k1")
	spec := testSpec("alice@example.com")
	keys, _ := fleet.ParseSessionKeys([]byte(kf))
	fc := fleet.DefaultConfig()
	fc.Redis.URL, fc.SessionKeyFile = srv.URL(), "unused"
	st, err := fleet.Open(fc, fleet.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stuck, _ := fleet.NewSessions(st, keys, fleet.SessionsOptions{LockTTL: 60 * time.Millisecond})
	unlock, held, err := stuck.Lock(t.Context(), specKey(spec))
	if err != nil || !held {
		t.Fatalf("Lock() = %v, %v, want held", held, err)
	}
	defer unlock()

	sessions, _ := fleet.NewSessions(st, keys, fleet.SessionsOptions{})
	reg := prometheus.NewRegistry()
	const timeout = 300 * time.Millisecond
	c := mustNew(t, Config{STS: f, Now: clk.Now, STSTimeout: timeout, Registerer: reg, Shared: sessions})
	defer c.Close()
	start := time.Now()
	if got, err := c.Get(t.Context(), spec); err != nil || got.AccessKeyID != "AKID1" {
		t.Fatalf("Get() = %q, %v, want AKID1 from its own AssumeRole", got.AccessKeyID, err)
	}
	if waited := time.Since(start); waited < timeout {
		t.Errorf("gave up waiting after %v, want %v (STSTimeout)", waited, timeout)
	}
	if got := histCount(t, reg, "bedrock_gateway_fleet_session_lock_wait_seconds", "outcome", waitTimeout); got != 1 {
		t.Errorf("lock waits ended by timeout = %d, want 1", got)
	}
	if got := f.Calls(); got != 1 {
		t.Errorf("AssumeRole calls = %d, want 1", got)
	}
}

// TestSharedHitCostsNoRedisCall: the local LRU stays in front: once a
// replica has the session, its requests make no Redis call; a replica
// that does not have it reads it from Redis once, without STS.
func TestSharedHitCostsNoRedisCall(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	f := &fakeSTS{now: clk.Now}
	kf := newKeyFile("k1")
	rs := startSharedReplicas(t, srv, f, clk.Now, kf, kf)
	spec := testSpec("alice@example.com")
	get := func(r *sharedReplica) {
		t.Helper()
		if c, err := r.cache.Get(t.Context(), spec); err != nil || c.AccessKeyID != "AKID1" {
			t.Fatalf("Get() = %q, %v, want AKID1", c.AccessKeyID, err)
		}
	}
	get(rs[0])
	before := rs[0].shared.calls()
	for range 1000 {
		get(rs[0])
	}
	if n := rs[0].shared.calls() - before; n != 0 {
		t.Errorf("1000 local hits made %d shared store calls, want 0", n)
	}
	get(rs[1])
	if n, locks := rs[1].shared.loads.Load(), rs[1].shared.locks.Load(); n != 1 || locks != 0 {
		t.Errorf("a local miss with the session in Redis: %d loads, %d locks; want 1, 0", n, locks)
	}
	for range 1000 {
		get(rs[1])
	}
	if n := rs[1].shared.calls(); n != 1 {
		t.Errorf("second replica's shared store calls = %d, want 1", n)
	}
	if got := f.Calls(); got != 1 {
		t.Errorf("AssumeRole calls = %d, want 1", got)
	}
}

// sessionKeys returns the Redis keys of shared sessions (not locks).
func sessionKeys(t *testing.T, rdb *redis.Client) []string {
	t.Helper()
	keys, err := rdb.Keys(t.Context(), fleet.DefaultKeyPrefix+"session:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestSharedTTLEndsAtExpiryMargin: a shared session lives in Redis until
// the expiry margin begins, and even while Redis still holds it (its TTL
// runs on Redis's clock) a replica does not take it once its own rule
// would not hand it out: at 55 minutes of a one-hour session, less a
// nanosecond, another replica reads it; at 55 minutes it calls STS.
func TestSharedTTLEndsAtExpiryMargin(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	f := &fakeSTS{now: clk.Now}
	kf := newKeyFile("k1")
	rs := startSharedReplicas(t, srv, f, clk.Now, kf, kf, kf)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	spec := testSpec("alice@example.com")

	if _, err := rs[0].cache.Get(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	keys := sessionKeys(t, rdb)
	if len(keys) != 1 {
		t.Fatalf("session keys in Redis = %q, want 1", keys)
	}
	want := time.Hour - DefaultExpiryMargin
	if ttl := rdb.PTTL(t.Context(), keys[0]).Val(); ttl > want || ttl < want-5*time.Second {
		t.Errorf("PTTL = %v, want %v: Expiration minus ExpiryMargin", ttl, want)
	}

	clk.Advance(want - time.Nanosecond)
	if c, err := rs[1].cache.Get(t.Context(), spec); err != nil || c.AccessKeyID != "AKID1" {
		t.Fatalf("a nanosecond before the margin: Get() = %q, %v, want AKID1 from Redis", c.AccessKeyID, err)
	}
	clk.Advance(time.Nanosecond)
	c, err := rs[2].cache.Get(t.Context(), spec)
	if err != nil || c.AccessKeyID != "AKID2" {
		t.Fatalf("at the margin: Get() = %q, %v, want AKID2 from STS, not AKID1 from Redis", c.AccessKeyID, err)
	}
	if !clk.Now().Before(c.Expires.Add(-DefaultExpiryMargin)) {
		t.Errorf("served credentials expiring at %v at %v", c.Expires, clk.Now())
	}
	// The first replica's own copy is stale too: it renews from Redis.
	if c, err := rs[0].cache.Get(t.Context(), spec); err != nil || c.AccessKeyID != "AKID2" {
		t.Errorf("first replica at the margin: Get() = %q, %v, want AKID2 from Redis", c.AccessKeyID, err)
	}
	if got := f.Calls(); got != 2 {
		t.Errorf("AssumeRole calls = %d, want 2", got)
	}
}

// TestSharedRefreshByOneReplica: all three replicas find the session due
// for renewal; one takes the lock and calls STS, the other two, losing the
// race, wait and take its renewed session instead of calling STS.
func TestSharedRefreshByOneReplica(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	f, o := newOutageSTS()
	f.now = clk.Now
	kf := newKeyFile("k1")
	rs := startSharedReplicas(t, srv, f, clk.Now, kf, kf, kf)
	spec := testSpec("alice@example.com")
	for _, r := range rs {
		if _, err := r.cache.Get(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(48 * time.Minute) // renewal due at 47.5m
	hold := make(chan struct{})
	o.set(nil, hold)
	for i, r := range rs {
		if c, err := r.cache.Get(t.Context(), spec); err != nil || c.AccessKeyID != "AKID1" {
			t.Fatalf("replica %d: Get() = %q, %v, want AKID1 while it renews", i, c.AccessKeyID, err)
		}
	}
	eventually(t, "one replica renewing and two waiting on its lock", func() bool {
		return f.Calls() == 2 && rs[0].shared.lockMisses.Load()+rs[1].shared.lockMisses.Load()+rs[2].shared.lockMisses.Load() >= 2
	})
	close(hold)
	for i, r := range rs {
		settle(t, r.cache)
		if c, err := r.cache.Get(t.Context(), spec); err != nil || c.AccessKeyID != "AKID2" {
			t.Errorf("replica %d after renewal: Get() = %q, %v, want AKID2", i, c.AccessKeyID, err)
		}
		if got := metricValue(t, r.reg, "bedrock_gateway_session_refreshes_total", "outcome", outcomeSuccess); got != 1 {
			t.Errorf("replica %d: successful refreshes = %v, want 1", i, got)
		}
	}
	if got := f.Calls(); got != 2 {
		t.Errorf("AssumeRole calls = %d, want 2: the first session and one renewal", got)
	}
}

// TestSharedActiveUserThreeHours: a user making a request every minute
// for three hours, each to the next of three replicas, costs the fleet 4
// AssumeRole calls, as one replica alone (TestWireActiveUserThreeHours):
// at 0, 48, 96 and 144 minutes; no credentials are served within the
// expiry margin, and each session is used at least 45 minutes.
func TestSharedActiveUserThreeHours(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	var mu sync.Mutex
	var at []int
	f := &fakeSTS{now: clk.Now}
	f.respond = func(_ context.Context, n int, _ *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
		mu.Lock()
		at = append(at, int(clk.Now().Sub(fakeclock.Start).Minutes()))
		mu.Unlock()
		return f.output(n), nil
	}
	kf := newKeyFile("k1")
	rs := startSharedReplicas(t, srv, f, clk.Now, kf, kf, kf)
	spec := testSpec("alice@example.com")
	for minute := range 180 {
		r := rs[minute%3]
		c, err := r.cache.Get(t.Context(), spec)
		if err != nil {
			t.Fatalf("minute %d: %v", minute, err)
		}
		if !clk.Now().Before(c.Expires.Add(-DefaultExpiryMargin)) {
			t.Fatalf("minute %d: served credentials expiring at %v", minute, c.Expires)
		}
		settle(t, r.cache)
		clk.Advance(time.Minute)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{0, 48, 96, 144}; !slices.Equal(at, want) {
		t.Errorf("AssumeRole at minutes %v, want %v", at, want)
	}
	for i := 1; i < len(at); i++ {
		if used := at[i] - at[i-1]; used < 45 {
			t.Errorf("session %d used for %d minutes, want at least 45", i, used)
		}
	}
}

// TestSharedDecryptFailure: a value a replica cannot decrypt (sealed with
// a key it lacks, a different key under the same id, or tampered with) is
// a miss and a counted failure, never an error and never used: that
// replica assumes its own session and shares it in place of the value it
// could not read (the last writer wins).
func TestSharedDecryptFailure(t *testing.T) {
	tests := []struct {
		name    string
		other   func(kf string) string // the second replica's key file
		tamper  bool
		reason  string
		rewrite bool // the first replica can read what the second shares
	}{
		{"key id unknown", func(string) string { return newKeyFile("k2") }, false, "unknown_key", false},
		{"other key, same id", func(string) string { return newKeyFile("k1") }, false, "invalid", false},
		{"tampered", func(kf string) string { return kf }, true, "invalid", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			clk := fakeclock.New()
			f := &fakeSTS{now: clk.Now}
			kf := newKeyFile("k1")
			rs := startSharedReplicas(t, srv, f, clk.Now, kf, tt.other(kf), kf)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			defer rdb.Close()
			spec := testSpec("alice@example.com")
			if c, err := rs[0].cache.Get(t.Context(), spec); err != nil || c.AccessKeyID != "AKID1" {
				t.Fatalf("first replica: Get() = %q, %v", c.AccessKeyID, err)
			}
			if tt.tamper {
				key := sessionKeys(t, rdb)[0]
				v, _ := rdb.Get(t.Context(), key).Bytes()
				v[len(v)-1] ^= 1
				rdb.Set(t.Context(), key, v, time.Hour)
			}
			c, err := rs[1].cache.Get(t.Context(), spec)
			if err != nil || c.AccessKeyID != "AKID2" {
				t.Fatalf("second replica: Get() = %q, %v, want its own session AKID2", c.AccessKeyID, err)
			}
			if got := metricValue(t, rs[1].reg, "bedrock_gateway_fleet_session_decrypt_failures_total", "reason", tt.reason); got < 1 {
				t.Errorf("decrypt failures{reason=%q} = %v, want at least 1", tt.reason, got)
			}
			// The third replica, with the first's keys, reads what the
			// second shared if it can, else assumes its own too.
			c, err = rs[2].cache.Get(t.Context(), spec)
			want := "AKID3"
			if tt.rewrite {
				want = "AKID2"
			}
			if err != nil || c.AccessKeyID != want {
				t.Errorf("third replica: Get() = %q, %v, want %s", c.AccessKeyID, err, want)
			}
		})
	}
}

// TestSharedRedisDown: with Redis gone, every replica falls back to its
// own session (one AssumeRole per replica, concurrent requests still
// sharing it) and no request fails; cached sessions keep serving. Once
// Redis is back (and each replica's breaker has let a probe through) the
// fleet shares sessions again.
func TestSharedRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	f := &fakeSTS{now: clk.Now}
	kf := newKeyFile("k1")
	rs := startSharedReplicas(t, srv, f, clk.Now, kf, kf, kf)
	ctx := t.Context()
	if _, err := rs[0].cache.Get(ctx, testSpec("alice")); err != nil {
		t.Fatal(err)
	}
	srv.Kill()

	var wg sync.WaitGroup
	for i := range 90 {
		wg.Go(func() {
			if _, err := rs[i%3].cache.Get(ctx, testSpec("bob")); err != nil {
				t.Errorf("Get() with Redis down: %v", err)
			}
		})
	}
	wg.Wait()
	if _, err := rs[0].cache.Get(ctx, testSpec("alice")); err != nil {
		t.Errorf("cached session with Redis down: %v", err)
	}
	if got := f.Calls(); got != 1+3 {
		t.Errorf("AssumeRole calls = %d, want 4: alice's, and bob's on each replica", got)
	}
	for i, r := range rs {
		if got := lookups(t, r, sharedError); got != 1 {
			t.Errorf("replica %d: lookups{result=error} = %v, want 1", i, got)
		}
	}

	srv.Restart()
	clk.Advance(time.Minute) // past every breaker's back-off
	for _, r := range rs {   // one request each lets its probe through
		if _, err := r.cache.Get(ctx, testSpec("carol")); err != nil {
			t.Fatal(err)
		}
	}
	before := f.Calls()
	for i := range 90 {
		wg.Go(func() {
			if _, err := rs[i%3].cache.Get(ctx, testSpec("dave")); err != nil {
				t.Errorf("Get() with Redis back: %v", err)
			}
		})
	}
	wg.Wait()
	if got := f.Calls() - before; got != 1 {
		t.Errorf("AssumeRole calls for a new user with Redis back = %d, want 1", got)
	}
	if got := f.Calls(); got != 1+3+1+1 {
		t.Errorf("AssumeRole calls = %d, want 6 (carol's shared too)", got)
	}
}

// TestSharedNothingSecretInRedis: after sessions for 30 users were
// assumed, shared and renewed through three replicas, no key or value in
// Redis holds a secret access key, session token, access key id, or any
// part of a spec.
func TestSharedNothingSecretInRedis(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	var mu sync.Mutex
	var secrets []string
	f := &fakeSTS{now: clk.Now}
	f.respond = func(context.Context, int, *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
		b := make([]byte, 60)
		rand.Read(b)
		akid, secret, token := "ASIA"+strings.ToUpper(hex.EncodeToString(b[:8])), base64.StdEncoding.EncodeToString(b[8:38]), base64.StdEncoding.EncodeToString(b[38:])
		mu.Lock()
		secrets = append(secrets, akid, secret, token)
		mu.Unlock()
		return &sts.AssumeRoleOutput{Credentials: &types.Credentials{AccessKeyId: aws.String(akid),
			SecretAccessKey: aws.String(secret), SessionToken: aws.String(token), Expiration: aws.Time(clk.Now().Add(time.Hour))}}, nil
	}
	kf := newKeyFile("k1")
	rs := startSharedReplicas(t, srv, f, clk.Now, kf, kf, kf)
	const users = 30
	for round := range 2 {
		for u := range users {
			for i, r := range rs {
				if _, err := r.cache.Get(t.Context(), testSpec(fmt.Sprintf("user-%02d@example.com", u))); err != nil {
					t.Fatalf("round %d, user %d, replica %d: %v", round, u, i, err)
				}
			}
		}
		for _, r := range rs {
			settle(t, r.cache)
		}
		clk.Advance(48 * time.Minute) // the second round renews every session
	}
	mu.Lock()
	defer mu.Unlock()
	if len(secrets) != 3*2*users {
		t.Fatalf("issued %d secrets, want %d: one session and one renewal per user", len(secrets), 3*2*users)
	}

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	scanned := 0
	iter := rdb.Scan(t.Context(), 0, "*", 100).Iterator()
	for iter.Next(t.Context()) {
		key := iter.Val()
		v, err := rdb.Get(t.Context(), key).Bytes()
		if err != nil {
			t.Fatalf("GET %q: %v", key, err)
		}
		scanned++
		for _, s := range append(slices.Clone(secrets), "user-", "example.com", "BedrockUser", "123456789012", "cc-42", "acme") {
			if strings.Contains(key, s) || bytes.Contains(v, []byte(s)) {
				t.Fatalf("key %q or its value holds %.12q... in clear", key, s)
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if scanned != users {
		t.Errorf("scanned %d keys, want %d: one session per user", scanned, users)
	}
}
