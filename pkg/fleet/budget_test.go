package fleet

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/internal/redistest"
)

// The shared budget runs on Redis's clock, so the tests that measure it
// use real time; they are kept to a second or two at small rates.

// budgetReplica is one gateway replica's view of the fleet: its own store
// (connection pool and breaker) and budget.
type budgetReplica struct {
	store  *Store
	budget *Budget
	reg    *prometheus.Registry
}

// startBudgetReplicas opens n replicas' stores on srv, each with a budget of
// cfg. storeNow, if set, is the stores' breaker clock.
func startBudgetReplicas(t *testing.T, srv *redistest.Server, n int, cfg BudgetConfig, storeNow func() time.Time) []budgetReplica {
	// A generous timeout: a slow call under -race must not send a replica
	// to its local budget in the middle of a measurement.
	return startBudgetReplicasTimeout(t, srv, n, cfg, storeNow, 500*time.Millisecond)
}

// startBudgetReplicasTimeout is startBudgetReplicas with the stores'
// per-call timeout.
func startBudgetReplicasTimeout(t *testing.T, srv *redistest.Server, n int, cfg BudgetConfig, storeNow func() time.Time, timeout time.Duration) []budgetReplica {
	t.Helper()
	rs := make([]budgetReplica, n)
	for i := range rs {
		c := DefaultConfig()
		c.Redis.URL, c.SessionKeyFile, c.Timeout = srv.URL(), "k", timeout
		s, err := Open(c, Options{Now: storeNow, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		reg := prometheus.NewRegistry()
		bc := cfg
		bc.Registerer = reg
		b, err := NewBudget(s, bc)
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = budgetReplica{store: s, budget: b, reg: reg}
	}
	return rs
}

// budgetDemand is one caller's load: Admit in a loop until ctx ends, for
// renewals or for new sessions. A refused call comes back after the hint
// or 20ms, whichever is sooner, as an impatient client would.
type budgetDemand struct {
	renewal bool
}

// admissions is a thread-safe record of admission times.
type admissions struct {
	mu    sync.Mutex
	times []time.Time
	other []error // errors other than refusals and the end of the test
}

func (a *admissions) add(at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.times = append(a.times, at)
}

// run puts d's load on b until ctx ends, recording admissions in rec.
func (d budgetDemand) run(ctx context.Context, b *Budget, rec *admissions) {
	for ctx.Err() == nil {
		err := b.Admit(ctx, d.renewal)
		var oe *OverBudgetError
		switch {
		case err == nil:
			rec.add(time.Now())
		case errors.As(err, &oe):
			t := time.NewTimer(min(oe.RetryAfter, 20*time.Millisecond))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		default:
			rec.mu.Lock()
			rec.other = append(rec.other, err)
			rec.mu.Unlock()
		}
	}
}

// budgetLoad runs callers callers of each demand on each budget for d,
// and returns every budget's admissions.
func budgetLoad(t *testing.T, d time.Duration, callers int, budgets []*Budget, kinds ...budgetDemand) []*admissions {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	recs := make([]*admissions, len(budgets))
	var wg sync.WaitGroup
	for i, b := range budgets {
		recs[i] = &admissions{}
		for _, k := range kinds {
			for range callers {
				wg.Go(func() { k.run(ctx, b, recs[i]) })
			}
		}
	}
	wg.Wait()
	for i, r := range recs {
		for _, err := range r.other {
			t.Errorf("replica %d: Admit() = %v, want nil or a refusal", i, err)
		}
	}
	return recs
}

// maxInWindow returns the most admissions in any one-second window
// [t, t+1s), over every record together.
func maxInWindow(recs ...*admissions) (most, total int) {
	var ts []time.Time
	for _, r := range recs {
		ts = append(ts, r.times...)
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	j := 0
	for i := range ts {
		for j < len(ts) && ts[j].Sub(ts[i]) < time.Second {
			j++
		}
		most = max(most, j-i)
	}
	return most, len(ts)
}

func budgetCount(b *Budget, class, mode, result string) int {
	return int(testutil.ToFloat64(b.calls.WithLabelValues(class, mode, result)))
}

// TestBudgetFleetWindow: three replicas on one Redis, with renewals and
// new sessions pressing on every one of them, admit at most Rate calls in
// any one-second window together, and use about all of it.
func TestBudgetFleetWindow(t *testing.T) {
	srv := redistest.Start(t)
	const rate = 50
	rs := startBudgetReplicas(t, srv, 3, BudgetConfig{Rate: rate, NewSessionShare: 0.75, AdmissionWait: 500 * time.Millisecond}, nil)
	budgets := []*Budget{rs[0].budget, rs[1].budget, rs[2].budget}

	recs := budgetLoad(t, 2*time.Second, 4, budgets, budgetDemand{renewal: true}, budgetDemand{renewal: false})

	most, total := maxInWindow(recs...)
	t.Logf("3 replicas, rate %d/s, 2s of demand: %d admitted, at most %d in any 1s window (per replica: %d, %d, %d)",
		rate, total, most, len(recs[0].times), len(recs[1].times), len(recs[2].times))
	if most > rate {
		t.Errorf("at most %d admissions in a 1s window across the fleet, want <= %d", most, rate)
	}
	if total < rate*3/2 {
		t.Errorf("%d admissions in 2s at %d/s, want the budget used (>= %d)", total, rate, rate*3/2)
	}
	for i, r := range rs {
		if n := budgetCount(r.budget, budgetActive, budgetLocal, budgetAdmitted) + budgetCount(r.budget, budgetNew, budgetLocal, budgetAdmitted); n != 0 {
			t.Errorf("replica %d admitted %d calls on its local budget with Redis up", i, n)
		}
		if len(recs[i].times) == 0 {
			t.Errorf("replica %d admitted nothing", i)
		}
	}
	if problems, err := testutil.GatherAndLint(rs[0].reg); err != nil || len(problems) > 0 {
		t.Errorf("lint of the budget's metrics = %v, %v; want none", problems, err)
	}
}

// TestBudgetRenewalsAheadOfNew: while new sessions on every replica
// saturate their share of the fleet's rate, renewals of active users are
// admitted without waiting, and new sessions stay within their share.
func TestBudgetRenewalsAheadOfNew(t *testing.T) {
	srv := redistest.Start(t)
	const rate, share = 50, 0.5
	rs := startBudgetReplicas(t, srv, 3, BudgetConfig{Rate: rate, NewSessionShare: share, AdmissionWait: 100 * time.Millisecond}, nil)
	budgets := []*Budget{rs[0].budget, rs[1].budget, rs[2].budget}

	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	var renewals sync.Mutex
	var waits []time.Duration
	var wg sync.WaitGroup
	for _, b := range budgets {
		// One renewal per replica every 200ms: 15/s in all, within the
		// rate the new sessions leave.
		wg.Go(func() {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				start := time.Now()
				if err := b.Admit(ctx, true); err != nil {
					if ctx.Err() == nil {
						t.Errorf("renewal: Admit() = %v, want nil", err)
					}
					return
				}
				renewals.Lock()
				waits = append(waits, time.Since(start))
				renewals.Unlock()
			}
		})
	}
	recs := budgetLoad(t, 1500*time.Millisecond, 6, budgets, budgetDemand{renewal: false})
	wg.Wait()

	slices.Sort(waits)
	most, total := maxInWindow(recs...)
	refused := 0
	for _, b := range budgets {
		refused += budgetCount(b, budgetNew, budgetFleet, budgetRefused)
	}
	t.Logf("new sessions: %d admitted, at most %d in 1s, %d refused; %d renewals, longest took %v",
		total, most, refused, len(waits), waits[len(waits)-1])
	if refused == 0 {
		t.Error("no new session was refused: the share was not saturated")
	}
	if most > rate*share {
		t.Errorf("new sessions: at most %d in a 1s window, want <= %v (their share)", most, rate*share)
	}
	if len(waits) < 15 {
		t.Errorf("%d renewals admitted in 1.5s, want about 21", len(waits))
	}
	// A renewal costs one Redis round trip; it never queues behind new
	// sessions, which wait up to 100ms.
	if longest := waits[len(waits)-1]; longest > 40*time.Millisecond {
		t.Errorf("longest renewal admission took %v, want no wait behind new sessions", longest)
	}
}

// TestBudgetThrottledHalvesFleet: Throttling seen by one replica halves
// the rate the others get, for the cool-down.
func TestBudgetThrottledHalvesFleet(t *testing.T) {
	srv := redistest.Start(t)
	const rate = 50
	rs := startBudgetReplicas(t, srv, 3, BudgetConfig{Rate: rate, NewSessionShare: 1, ThrottleCooldown: time.Minute}, nil)
	if got := rs[1].budget.Rate(); got != rate {
		t.Fatalf("Rate() before throttling = %v, want %v", got, rate)
	}
	rs[0].budget.Throttled()

	others := []*Budget{rs[1].budget, rs[2].budget}
	recs := budgetLoad(t, 1500*time.Millisecond, 4, others, budgetDemand{renewal: true})

	most, total := maxInWindow(recs...)
	t.Logf("after Throttling on replica 0, replicas 1 and 2: %d admitted in 1.5s, at most %d in 1s", total, most)
	if most > rate/2 {
		t.Errorf("at most %d admissions in a 1s window after Throttling, want <= %d (half the rate)", most, rate/2)
	}
	if total < rate/2 {
		t.Errorf("%d admissions in 1.5s at half of %d/s, want the lowered budget used", total, rate)
	}
	for i, b := range others {
		if got := b.Rate(); got != rate/2 {
			t.Errorf("replica %d: Rate() = %v, want %v", i+1, got, rate/2)
		}
	}
	ttl, err := rs[0].store.Client().PTTL(t.Context(), rs[0].budget.keys[2]).Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("Throttling marker PTTL = %v, %v; want within the 1m cool-down", ttl, err)
	}
}

// TestBudgetFallsBackToLocalShare: with Redis killed, every replica keeps
// admitting at its local share, Rate / expected replicas, so the fleet
// stays within Rate; no call fails because of Redis. With Redis back, the
// shared budget resumes by itself once the breaker's back-off has passed.
func TestBudgetFallsBackToLocalShare(t *testing.T) {
	srv := redistest.Start(t)
	const rate, replicas = 60, 3
	clk := fakeclock.New() // the stores' breaker clock
	// The default timeout: a call to a killed Redis costs all of it (the
	// client retries the dial within it) until the breaker opens.
	rs := startBudgetReplicasTimeout(t, srv, replicas, BudgetConfig{Rate: rate, NewSessionShare: 1, LocalRate: rate / replicas}, clk.Now, DefaultTimeout)
	budgets := []*Budget{rs[0].budget, rs[1].budget, rs[2].budget}
	for i, b := range budgets {
		if err := b.Admit(t.Context(), true); err != nil {
			t.Fatalf("replica %d with Redis up: Admit() = %v", i, err)
		}
	}

	srv.Kill()
	recs := budgetLoad(t, 1500*time.Millisecond, 4, budgets, budgetDemand{renewal: true})

	most, total := maxInWindow(recs...)
	t.Logf("Redis down: %d admitted in 1.5s by %d replicas, at most %d in 1s", total, replicas, most)
	if most > rate {
		t.Errorf("fleet: at most %d admissions in a 1s window, want <= %d", most, rate)
	}
	for i, r := range rs {
		m, n := maxInWindow(recs[i])
		if m > rate/replicas {
			t.Errorf("replica %d: at most %d admissions in a 1s window, want <= %d (its local share)", i, m, rate/replicas)
		}
		if n < rate/replicas {
			t.Errorf("replica %d: %d admissions in 1.5s, want its local share used", i, n)
		}
		if !r.store.Degraded() {
			t.Errorf("replica %d: store not degraded with Redis down", i)
		}
		if got := r.budget.Rate(); got != rate/replicas {
			t.Errorf("replica %d: Rate() = %v, want the local share %v", i, got, rate/replicas)
		}
	}

	srv.Restart()
	clk.Advance(maxBreakerBackoff)
	for i, r := range rs {
		before := budgetCount(r.budget, budgetActive, budgetFleet, budgetAdmitted)
		if err := r.budget.Admit(t.Context(), true); err != nil {
			t.Fatalf("replica %d with Redis back: Admit() = %v", i, err)
		}
		if after := budgetCount(r.budget, budgetActive, budgetFleet, budgetAdmitted); after != before+1 || r.store.Degraded() {
			t.Errorf("replica %d with Redis back: shared admissions %d -> %d, degraded %v; want the shared budget", i, before, after, r.store.Degraded())
		}
		if got := r.budget.Rate(); got != rate {
			t.Errorf("replica %d with Redis back: Rate() = %v, want %v", i, got, rate)
		}
	}
	if n, err := rs[0].store.Client().Exists(t.Context(), rs[0].budget.keys[0]).Result(); err != nil || n != 1 {
		t.Errorf("shared bucket key after Restart: exists %d, %v; want 1", n, err)
	}
}

// TestBudgetRefusalAndCancelTakeNothing: a call refused for waiting too
// long reserves nothing, and a caller that stops waiting gives its place
// back, in the shared budget as in the local one.
func TestBudgetRefusalAndCancelTakeNothing(t *testing.T) {
	srv := redistest.Start(t)
	// Rate 5: burst 1 and one call per 250ms.
	rs := startBudgetReplicas(t, srv, 1, BudgetConfig{Rate: 5, NewSessionShare: 1, AdmissionWait: 50 * time.Millisecond}, nil)
	b, rdb := rs[0].budget, rs[0].store.Client()
	tats := func() []string {
		v, err := rdb.MGet(t.Context(), b.keys[0], b.keys[1]).Result()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(v))
		for i, x := range v {
			out[i], _ = x.(string)
		}
		return out
	}

	if err := b.Admit(t.Context(), false); err != nil {
		t.Fatalf("first call: Admit() = %v, want nil", err)
	}
	first := tats()
	if first[0] == "" || first[1] == "" {
		t.Fatalf("bucket keys after a new session = %q, want both set", first)
	}

	var oe *OverBudgetError
	if err := b.Admit(t.Context(), false); !errors.As(err, &oe) || oe.RetryAfter <= 50*time.Millisecond {
		t.Fatalf("second new session within 50ms: Admit() = %v, want *OverBudgetError with RetryAfter > 50ms", err)
	}
	if got := tats(); !slices.Equal(got, first) {
		t.Errorf("after a refusal, TATs = %q, want unchanged %q", got, first)
	}

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	if err := b.Admit(ctx, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled renewal: Admit() = %v, want context.Canceled", err)
	}
	if got := tats(); !slices.Equal(got, first) {
		t.Errorf("after a cancelled wait, TATs = %q, want given back to %q", got, first)
	}

	dl, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if err := b.Admit(dl, true); !errors.As(err, &oe) {
		t.Errorf("renewal whose deadline comes before its turn: Admit() = %v, want *OverBudgetError at once", err)
	}
}

// TestLocalBudget checks the local twin of the script on a fake clock: the
// burst, the waits, new sessions queueing in their share without holding
// the whole rate, renewals past them, refusals and cancellations that take
// nothing, and the halved rate.
func TestLocalBudget(t *testing.T) {
	clk := fakeclock.New()
	// Rate 20: burst 2, refill 18/s; new sessions 10/s: burst 1, refill
	// 9/s. Lowered: refill 8/s and 4/s, same bursts.
	l := &localBudget{rate: 20, cooldown: time.Minute, full: bucketsAt(20, 0.5, 1), low: bucketsAt(20, 0.5, 0.5)}
	allEvery, newEvery := l.full.all.interval, l.full.fresh.interval
	if allEvery != 55556*time.Microsecond || newEvery != 111112*time.Microsecond {
		t.Fatalf("intervals = %v, %v; want 1/18s and 1/9s rounded up to the µs", allEvery, newEvery)
	}
	if l.low.all.interval != 125*time.Millisecond || l.low.fresh.interval != 250*time.Millisecond {
		t.Fatalf("lowered intervals = %v, %v; want 1/8s and 1/4s", l.low.all.interval, l.low.fresh.interval)
	}
	for _, s := range []struct {
		name     string
		share    bool
		maxWait  time.Duration
		ok       bool
		wait     time.Duration
		pending  bool
		cancel   bool
		throttle bool
		advance  time.Duration // after the step
	}{
		{name: "new session at once, from both buckets", share: true, maxWait: time.Second, ok: true},
		{name: "second new session waits in its share only", share: true, maxWait: time.Second, ok: true, wait: newEvery, pending: true},
		{name: "renewal does not queue behind it", maxWait: -1, ok: true},
		{name: "new session beyond its wait is refused", share: true, maxWait: newEvery, wait: 2 * newEvery},
		{name: "the refusal took nothing", share: true, maxWait: 2 * newEvery, ok: true, wait: 2 * newEvery, pending: true, cancel: true},
		{name: "the cancelled place is given back", share: true, maxWait: 2 * newEvery, ok: true, wait: 2 * newEvery, pending: true, advance: time.Second},
		{name: "throttled", maxWait: -1, ok: true, throttle: true, advance: time.Second},
		{name: "lowered: burst of two, one", maxWait: -1, ok: true},
		{name: "lowered: burst of two, two", maxWait: -1, ok: true},
		{name: "lowered: then one per 125ms", maxWait: -1, ok: true, wait: 125 * time.Millisecond},
		{name: "new session with its share free waits for the whole rate", share: true, maxWait: time.Second, ok: true, wait: 250 * time.Millisecond},
	} {
		r := l.reserve(clk.Now(), s.share, s.maxWait)
		if r.ok != s.ok || r.wait != s.wait || r.pending != s.pending {
			t.Errorf("%s: reserve() = ok %v, wait %v, pending %v; want ok %v, wait %v, pending %v",
				s.name, r.ok, r.wait, r.pending, s.ok, s.wait, s.pending)
		}
		if s.cancel {
			r.cancel(t.Context())
		}
		if s.throttle {
			l.throttled(clk.Now())
			if got := l.currentRate(clk.Now()); got != 10 {
				t.Errorf("%s: rate after throttling = %v, want 10", s.name, got)
			}
		}
		clk.Advance(s.advance)
	}
}

// TestBucketsAt: burst plus refill per second equal the rate, as in
// sessioncache's own admission, so that no one-second window holds more.
func TestBucketsAt(t *testing.T) {
	for _, tc := range []struct {
		rate         float64
		burst, every time.Duration
	}{
		{rate: 400, burst: 40, every: 2778 * time.Microsecond},
		{rate: 50, burst: 5, every: 22223 * time.Microsecond},
		{rate: 5, burst: 1, every: 250 * time.Millisecond},
	} {
		g := gcraAt(tc.rate, 1)
		if burst := g.tolerance/g.interval + 1; g.interval != tc.every || burst != tc.burst {
			t.Errorf("gcraAt(%v) = interval %v, burst %v; want %v, %v", tc.rate, g.interval, burst, tc.every, tc.burst)
		}
	}
}

// TestNewBudgetValidates: a budget cannot be made from a config that
// would let it admit nothing or more than the fleet's rate.
func TestNewBudgetValidates(t *testing.T) {
	bad := BudgetConfig{Rate: -1, NewSessionShare: 2, AdmissionWait: -1, ThrottleCooldown: -1, LocalRate: 5}
	configtest.Problems(t, bad.validate(), []string{"rate: ", "new_session_share: ", "admission_wait: ", "throttle_cooldown: ", "local_rate: "})
	configtest.Problems(t, BudgetConfig{Rate: 100, NewSessionShare: 1, LocalRate: 101}.validate(), []string{"local_rate: "})

	c := DefaultConfig()
	c.Redis.URL, c.SessionKeyFile = "redis://127.0.0.1:1/0", "k" // never called
	s, err := Open(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := NewBudget(s, bad); err == nil {
		t.Error("NewBudget(bad config) = nil error")
	}
	b, err := NewBudget(s, BudgetConfig{Rate: 100, NewSessionShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	if b.local.rate != 100/DefaultExpectedReplicas {
		t.Errorf("default local rate = %v, want %v", b.local.rate, 100/DefaultExpectedReplicas)
	}
}
