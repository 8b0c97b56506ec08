package fleet

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/internal/logbuf"
	"github.com/bedrock-gateway/gateway/internal/redistest"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/limits"
	"github.com/bedrock-gateway/gateway/pkg/policy"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// limitReplica is one gateway replica's limits: its own Store, local
// fallback, fleet Limiter, Policy, metrics and log.
type limitReplica struct {
	store *Store
	lim   *Limiter
	pol   *policy.Policy
	reg   *prometheus.Registry
	logs  *logbuf.Buffer
}

// startLimitReplicas starts n replicas enforcing cfg through srv. clk is
// the stores' breaker clock (nil: the real one). The scripts run on
// Redis's clock, so these tests take real time.
func startLimitReplicas(tb testing.TB, srv *redistest.Server, clk *fakeclock.Clock, n int, cfg policy.Config) []*limitReplica {
	tb.Helper()
	var reps []*limitReplica
	for range n {
		c := DefaultConfig()
		// Generous for -race; a killed Redis refuses at once anyway.
		c.Redis.URL, c.SessionKeyFile, c.Timeout = srv.URL(), "k", 250*time.Millisecond
		r := &limitReplica{reg: prometheus.NewRegistry(), logs: &logbuf.Buffer{}}
		o := Options{Registerer: r.reg, Logger: slog.New(slog.NewTextHandler(r.logs, nil))}
		if clk != nil {
			o.Now = clk.Now
		}
		var err error
		if r.store, err = Open(c, o); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { r.store.Close() })
		local, err := limits.New(limits.Config{})
		if err != nil {
			tb.Fatal(err)
		}
		if r.lim, err = NewLimiter(r.store, local, r.reg); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(r.lim.Flush) // before the store closes
		if r.pol, err = policy.New(cfg, r.lim); err != nil {
			tb.Fatal(err)
		}
		reps = append(reps, r)
	}
	return reps
}

// decisions sums bedrock_gateway_fleet_limit_decisions_total{mode,
// result} over reps.
func decisions(reps []*limitReplica, mode, result string) int {
	n := 0.0
	for _, r := range reps {
		n += testutil.ToFloat64(r.lim.m.decisions.WithLabelValues(mode, result))
	}
	return int(n)
}

// load keeps callers per replica calling Admit for ident, every pace,
// and counts what each phase admitted. Phases are switched by the test
// (next); a decision counts in the phase it started in.
type load struct {
	phase    atomic.Int32
	admitted [8]atomic.Int64
	other    atomic.Int64 // outcomes that are neither nil nor *ThrottledError
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(reps []*limitReplica, callers int, pace time.Duration, ident func(replica, caller int) auth.Identity) *load {
	l := &load{stop: make(chan struct{})}
	for i, r := range reps {
		for c := range callers {
			id := ident(i, c)
			l.wg.Go(func() {
				tick := time.NewTicker(pace)
				defer tick.Stop()
				for {
					p := l.phase.Load()
					var te *policy.ThrottledError
					switch err := r.pol.Admit(id, "Converse", ""); {
					case err == nil:
						l.admitted[p].Add(1)
					case !errors.As(err, &te) || te.RetryAfter <= 0:
						l.other.Add(1)
					}
					select {
					case <-l.stop:
						return
					case <-tick.C:
					}
				}
			})
		}
	}
	return l
}

// run lets phase p (0..7) last d of real time (the limits are on Redis's
// clock), then moves on to phase p+1, and returns what p admitted.
func (l *load) run(p int, d time.Duration) int {
	<-time.After(d)
	l.phase.Store(int32(p + 1))
	return int(l.admitted[p].Load())
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

// within reports whether got is within frac of want.
func within(got, want, frac float64) bool { return math.Abs(got-want) <= frac*want }

// TestFleetLimitRate: one user's limit of 10 requests per second (burst
// 10, the default), driven for 3s through three replicas by four callers
// each (far more than 10 requests per second), admits 10 per second
// across the fleet beyond the burst, not 30.
func TestFleetLimitRate(t *testing.T) {
	srv := redistest.Start(t)
	const rps, d = 10, 3 * time.Second
	rule := limits.LimitRule{RequestsPerSecond: rps}
	reps := startLimitReplicas(t, srv, nil, 3, policy.Config{Limits: rule})
	start := time.Now()
	l := startLoad(reps, 4, 5*time.Millisecond, func(int, int) auth.Identity { return auth.Identity{User: "alice"} })
	l.run(0, d)
	elapsed := time.Since(start)
	l.finish()
	// Read once every caller has stopped: a call that began before the
	// end of the phase may still have been admitted after it.
	admitted := int(l.admitted[0].Load())
	rate := float64(admitted-rule.EffectiveBurst()) / elapsed.Seconds()
	t.Logf("admitted %d in %v through 3 replicas: %.2f requests/s beyond the burst of %d (limit %d/s)", admitted, elapsed.Round(time.Millisecond), rate, rule.EffectiveBurst(), rps)
	if !within(rate, rps, 0.10) {
		t.Errorf("fleet admitted %.2f requests/s beyond the burst, want %d ± 10%%", rate, rps)
	}
	if n := l.other.Load(); n > 0 {
		t.Errorf("%d Admit calls returned something other than nil or a *ThrottledError with a Retry-After", n)
	}
	// The decision counters also hold calls admitted after the phase
	// ended, before the callers stopped (phase 1).
	all := admitted + int(l.admitted[1].Load())
	if got, local := decisions(reps, "fleet", "allowed"), decisions(reps, "local", "allowed")+decisions(reps, "local", "throttled"); got != all || local != 0 {
		t.Errorf("decisions: fleet allowed %d, local %d; want %d, 0", got, local, all)
	}
}

// TestFleetTenantLimit: a tenant's limit is shared by its users on every
// replica; a request the tenant refuses takes nothing from its user's own
// limit; another tenant is not affected.
func TestFleetTenantLimit(t *testing.T) {
	srv := redistest.Start(t)
	slow := func(burst int) limits.LimitRule { return limits.LimitRule{RequestsPerSecond: 0.01, Burst: burst} }
	reps := startLimitReplicas(t, srv, nil, 3, policy.Config{Limits: slow(1), TenantLimits: slow(5)})
	user := func(name, tenant string) auth.Identity { return auth.Identity{User: name, Tenant: tenant} }
	var got []string
	for i, name := range []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6"} {
		got = append(got, outcome(reps[i%3].pol.Admit(user(name, "acme"), "Converse", "")))
	}
	// u5 and u6, refused by acme, still have their own request: as
	// callers of another tenant they pass.
	got = append(got, outcome(reps[0].pol.Admit(user("u5", "globex"), "Converse", "")))
	got = append(got, outcome(reps[1].pol.Admit(user("u6", "globex"), "Converse", "")))
	want := []string{"ok", "ok", "ok", "ok", "ok", "throttled(identity or tenant, ~1m40s)", "throttled(identity or tenant, ~1m40s)", "ok", "ok"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Admit outcomes = %v, want %v", got, want)
	}
}

// TestFleetTokensShared: tokens spent through one replica refuse on the
// others, for the caller's own budget and for its tenant's.
func TestFleetTokensShared(t *testing.T) {
	srv := redistest.Start(t)
	reps := startLimitReplicas(t, srv, nil, 3, policy.Config{
		Limits:       limits.LimitRule{TokensPerMinute: 600},
		TenantLimits: limits.LimitRule{TokensPerMinute: 60},
	})
	alice, bob, carol := auth.Identity{User: "alice", Tenant: "acme"}, auth.Identity{User: "bob", Tenant: "acme"}, auth.Identity{User: "carol", Tenant: "acme"}
	if err := reps[0].pol.Admit(alice, "Converse", ""); err != nil {
		t.Fatalf("Admit(alice) on replica 0 = %v", err)
	}
	// 1200 tokens: 600 of debt, a minute to refill plus 100ms for one
	// token.
	reps[0].lim.Spend("id:alice", limits.LimitRule{TokensPerMinute: 600}, 1200)
	reps[0].lim.Flush()
	for _, r := range reps[1:] {
		if got := outcome(r.pol.Admit(alice, "Converse", "")); got != "throttled(identity, ~1m0.1s)" {
			t.Errorf("Admit(alice) on another replica = %s, want throttled(identity, ~1m0.1s)", got)
		}
	}
	if got := outcome(reps[1].pol.Admit(bob, "Converse", "")); got != "ok" {
		t.Errorf("Admit(bob) = %s, want ok (budgets are per caller)", got)
	}
	// The tenant's budget, through policy's Spent of bob's tokens on
	// replica 2: one token over, refused for carol on replica 1 for 2s.
	reps[2].pol.Spent(bob, usage.Tokens{Input: 60, Output: 1})
	reps[2].lim.Flush()
	if got := outcome(reps[1].pol.Admit(carol, "Converse", "")); got != "throttled(tenant, ~2s)" {
		t.Errorf("Admit(carol) after her tenant's budget was spent = %s, want throttled(tenant, ~2s)", got)
	}
}

// TestFleetRetryAfter: Retry-After comes from the script's answer and is
// what the in-memory Limiter would say, less the little time that passed.
func TestFleetRetryAfter(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct {
		name  string
		rule  limits.LimitRule
		spend int64
		want  time.Duration
	}{
		{"one request per 100s", limits.LimitRule{RequestsPerSecond: 0.01, Burst: 1}, 0, 100 * time.Second},
		{"2 rps", limits.LimitRule{RequestsPerSecond: 2, Burst: 1}, 0, 500 * time.Millisecond},
		{"one token over 60 tpm", limits.LimitRule{TokensPerMinute: 60}, 61, 2 * time.Second},
		{"debt capped at an hour", limits.LimitRule{TokensPerMinute: 60}, math.MaxInt64, 3601 * time.Second},
		{"7 tpm", limits.LimitRule{TokensPerMinute: 7}, 7, 60 * time.Second / 7},
	}
	reps := startLimitReplicas(t, srv, nil, 2, policy.Config{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "id:retry" + string(rune('a'+i))
			if v := reps[0].lim.Admit(limits.Check{Key: key, Rule: tt.rule}); !v.OK {
				t.Fatalf("first Admit = %+v, want OK", v)
			}
			reps[0].lim.Spend(key, tt.rule, tt.spend)
			reps[0].lim.Flush()
			v := reps[1].lim.Admit(limits.Check{Key: key, Rule: tt.rule})
			if v.OK || v.RetryAfter > tt.want || v.RetryAfter < tt.want-250*time.Millisecond {
				t.Errorf("Admit on another replica = %+v, want refused with RetryAfter in (%v, %v]", v, tt.want-250*time.Millisecond, tt.want)
			}
		})
	}
	if got := decisions(reps, "local", "allowed") + decisions(reps, "local", "throttled"); got != 0 {
		t.Errorf("%d decisions fell back to local, want 0", got)
	}
}

// TestFleetLimitKeys: buckets are namespaced keys that expire when they
// are full again, so an idle one takes no memory; unlimited checks touch
// nothing.
func TestFleetLimitKeys(t *testing.T) {
	srv := redistest.Start(t)
	r := startLimitReplicas(t, srv, nil, 1, policy.Config{})[0]
	ctx := context.Background()
	rdb := r.store.Client()
	if v := r.lim.Admit(limits.Check{Key: "id:nobody"}); !v.OK {
		t.Fatalf("Admit(unlimited) = %+v, want OK", v)
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("after an unlimited Admit: %d keys (%v), want none", n, err)
	}
	rule := limits.LimitRule{RequestsPerSecond: 2, Burst: 4, TokensPerMinute: 600}
	r.lim.Admit(limits.Check{Key: "id:alice", Rule: rule})
	r.lim.Spend("id:alice", rule, 300)
	r.lim.Flush()
	tests := []struct {
		key     string
		maxTTL  time.Duration // time until the bucket is full
		minTTL  time.Duration
		explain string
	}{
		{"bedrock-gateway:{limits}:req:id:alice", 500 * time.Millisecond, 400 * time.Millisecond, "one request at 2/s"},
		{"bedrock-gateway:{limits}:tok:id:alice", 30 * time.Second, 29 * time.Second, "300 tokens at 600/min"},
	}
	for _, tt := range tests {
		ttl, err := rdb.PTTL(ctx, tt.key).Result()
		if err != nil || ttl > tt.maxTTL || ttl < tt.minTTL {
			t.Errorf("PTTL(%s) = %v, %v; want %v..%v (%s)", tt.key, ttl, err, tt.minTTL, tt.maxTTL, tt.explain)
		}
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 2 {
		t.Errorf("%d keys (%v), want the 2 above", n, err)
	}
}

// TestFleetLimitRedisDown: Redis killed while three replicas serve one
// user: no Admit fails, each replica enforces the limit alone (about three
// times the rate across the fleet) and says so, and once Redis is back the
// fleet shares the limit again by itself.
func TestFleetLimitRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.Following()
	const rps, d = 10, 2 * time.Second
	rule := limits.LimitRule{RequestsPerSecond: rps}
	burst := rule.EffectiveBurst()
	reps := startLimitReplicas(t, srv, clk, 3, policy.Config{Limits: rule})
	l := startLoad(reps, 3, 5*time.Millisecond, func(int, int) auth.Identity { return auth.Identity{User: "alice"} })
	shared := l.run(0, d)
	srv.Kill()
	alone := l.run(1, d)
	degraded := 0
	for _, r := range reps {
		if r.store.Degraded() {
			degraded++
		}
	}
	srv.Restart() // empty: every bucket full again
	clk.Advance(maxBreakerBackoff)
	l.run(2, 0) // the restart itself, counted nowhere
	resumed := l.run(3, d)
	l.finish()

	// Each phase starts with full buckets: the fleet's one, then each
	// replica's own, then the restarted Redis's.
	perSecond := func(n, bursts int) float64 { return float64(n-bursts*burst) / d.Seconds() }
	t.Logf("admitted per second beyond the bursts: shared %.1f, Redis down %.1f (3 replicas alone), resumed %.1f; limit %d/s (raw counts %d, %d, %d in %v each)",
		perSecond(shared, 1), perSecond(alone, 3), perSecond(resumed, 1), rps, shared, alone, resumed, d)
	if n := l.other.Load(); n > 0 {
		t.Errorf("%d Admit calls returned something other than nil or a *ThrottledError with a Retry-After", n)
	}
	if got := perSecond(shared, 1); !within(got, rps, 0.10) {
		t.Errorf("shared: %.1f requests/s, want %d ± 10%%", got, rps)
	}
	if got := perSecond(alone, 3); got < 2*rps || got > 3*rps*1.1 {
		t.Errorf("Redis down: %.1f requests/s, want per-replica limits: 20..33", got)
	}
	if got := perSecond(resumed, 1); !within(got, rps, 0.15) {
		t.Errorf("resumed: %.1f requests/s, want %d ± 15%%", got, rps)
	}
	if degraded != 3 {
		t.Errorf("%d of 3 replicas degraded while Redis was down", degraded)
	}
	for i, r := range reps {
		if r.store.Degraded() {
			t.Errorf("replica %d still degraded after Redis came back", i)
		}
		logs := r.logs.String()
		if !strings.Contains(logs, "enforcing limits per replica") || !strings.Contains(logs, "shared through Redis again") {
			t.Errorf("replica %d logged %q, want the fall back and the resumption", i, logs)
		}
	}
	if decisions(reps, "local", "allowed") == 0 || decisions(reps, "local", "throttled") == 0 {
		t.Errorf("no local decisions counted while Redis was down")
	}
}

// BenchmarkAdmit: the latency a fleet-limited Admit adds over the
// in-memory one: one script call to a loopback Redis per request, with an
// identity and a tenant limit.
func BenchmarkAdmit(b *testing.B) {
	srv := redistest.Start(b)
	cfg := policy.Config{
		Limits:       limits.LimitRule{RequestsPerSecond: 1e9, Burst: 1e9, TokensPerMinute: 1e9},
		TenantLimits: limits.LimitRule{RequestsPerSecond: 1e9, Burst: 1e9, TokensPerMinute: 1e9},
	}
	local, err := limits.New(limits.Config{})
	if err != nil {
		b.Fatal(err)
	}
	inMemory, err := policy.New(cfg, local)
	if err != nil {
		b.Fatal(err)
	}
	fleet := startLimitReplicas(b, srv, nil, 1, cfg)[0]
	id := auth.Identity{User: "alice", Tenant: "acme"}
	for _, bm := range []struct {
		name string
		pol  *policy.Policy
	}{{"memory", inMemory}, {"fleet", fleet.pol}} {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				if err := bm.pol.Admit(id, "Converse", ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// For scale: the bare round trip, a PING through the same store.
	b.Run("ping", func(b *testing.B) {
		for b.Loop() {
			err := fleet.store.Do(context.Background(), "ping", func(ctx context.Context, rdb redis.UniversalClient) error {
				return rdb.Ping(ctx).Err()
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	if n := decisions([]*limitReplica{fleet}, "local", "allowed"); n > 0 {
		b.Errorf("%d fleet decisions fell back to local", n)
	}
}

// outcome renders Admit's result as "ok" or "throttled(<scope>, ~<retry
// after>)", the Retry-After rounded up to the next 100ms, 10ms below a
// second (Redis's clock moves between calls), for compact expectations.
func outcome(err error) string {
	var te *policy.ThrottledError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &te):
		unit := 100 * time.Millisecond
		if te.RetryAfter < time.Second {
			unit = 10 * time.Millisecond
		}
		return "throttled(" + te.Scope + ", ~" + (te.RetryAfter + unit - 1).Truncate(unit).String() + ")"
	default:
		return "error: " + err.Error()
	}
}
