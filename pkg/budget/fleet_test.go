package budget

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/internal/redistest"
	"github.com/bedrock-gateway/gateway/pkg/fleet"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// replica is one gateway replica's budgets: its own fleet store and
// Tracker.
type replica struct {
	*tracker
	store *fleet.Store
}

// startReplicas starts n replicas sharing srv. breaker is the stores'
// clock, now the Trackers' (which decides periods and key expiry).
func startReplicas(t *testing.T, srv *redistest.Server, breaker *fakeclock.Clock, now func() time.Time, n int, cfg Config) []*replica {
	t.Helper()
	var reps []*replica
	for range n {
		c := fleet.DefaultConfig()
		// Generous for -race; a killed Redis refuses at once anyway.
		c.Redis.URL, c.SessionKeyFile, c.Timeout = srv.URL(), "k", 250*time.Millisecond
		s, err := fleet.Open(c, fleet.Options{Now: breaker.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() }) // after the Tracker's Close (cleanups run last first)
		reps = append(reps, &replica{tracker: newTracker(t, cfg, Options{Fleet: s, Now: now}), store: s})
	}
	return reps
}

func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func flush(t *testing.T, reps ...*replica) {
	t.Helper()
	for i, r := range reps {
		if err := r.Flush(t.Context()); err != nil {
			t.Fatalf("replica %d: Flush = %v", i, err)
		}
	}
}

// TestFleetShared: two replicas enforce one budget together, and each
// threshold crossing is counted once for the fleet however many spends
// race to it.
func TestFleetShared(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.At(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
	r := good()
	r.Period, r.LimitUSD, r.Thresholds = Daily, "10", []float64{0.5, 1}
	reps := startReplicas(t, srv, fakeclock.Following(), clk.Now, 2, Config{r})
	a, b := reps[0], reps[1]
	ctx := t.Context()

	var wg sync.WaitGroup
	for i := range 8 {
		rep := reps[i%2]
		wg.Go(func() {
			for range 124 {
				rep.Spend(alice, usd("0.01"))
			}
		})
	}
	wg.Wait()
	flush(t, a, b)
	if err := b.Check(ctx, bob); err != nil {
		t.Fatalf("at $9.92 of $10: Check = %v, want nil", err)
	}
	a.Spend(alice, usd("0.08"))
	// a knows at once, before its flusher has told Redis.
	if ee := exceeded(t, a.Check(ctx, alice)); ee.Spent != usd("10") {
		t.Errorf("replica a: refused at $%v, want $10", ee.Spent)
	}
	flush(t, a)
	// b read bob's team's spend moments ago: it trusts that reading for
	// FleetReadInterval, and no longer.
	clk.Advance(FleetReadInterval - time.Millisecond)
	if err := b.Check(ctx, bob); err != nil {
		t.Fatalf("replica b within FleetReadInterval of its last read: Check = %v, want nil (its reading of $9.92)", err)
	}
	clk.Advance(time.Millisecond)
	ee := exceeded(t, b.Check(ctx, bob))
	if ee.Spent != usd("10") || ee.RetryAfter != 14*time.Hour-FleetReadInterval {
		t.Errorf("replica b: refused at $%v for %v, want $10 for 14h less FleetReadInterval", ee.Spent, ee.RetryAfter)
	}
	if st := b.Describe(ctx, bob); len(st) != 1 || st[0].Spent != usd("10") || st[0].Local || !st[0].Exceeded {
		t.Errorf("replica b: Describe = %+v, want $10 spent, from Redis", st)
	}
	for _, th := range []string{"0.5", "1"} {
		n := 0.0
		for _, rep := range reps {
			n += testutil.ToFloat64(rep.m.crossings.WithLabelValues("ds-monthly", th))
		}
		if n != 1 {
			t.Errorf("threshold %s crossed %v times across the fleet, want 1", th, n)
		}
	}
	if n := strings.Count(a.logs.String()+b.logs.String(), "budget threshold crossed"); n != 2 {
		t.Errorf("%d crossings logged across the fleet, want 2", n)
	}
}

// TestFleetKeys: one counter per budget, subject and period, named as
// documented at keyTag, holding exact picodollars (also past 2^53, where a
// Lua number would round), and expiring keyGrace after its period.
func TestFleetKeys(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.At(time.Date(2026, 11, 15, 23, 0, 0, 0, time.UTC))
	daily := good()
	daily.Name, daily.Period = "ds-daily", Daily
	each := Rule{Name: "each-user-monthly", Scope: ScopeUser, Match: "*", Period: Monthly, LimitUSD: "100000", Mode: Soft}
	reps := startReplicas(t, srv, fakeclock.Following(), clk.Now, 1, Config{daily, each})
	const big = "9007.199254740993" // 2^53+1 picodollars
	reps[0].Spend(alice, usd(big))
	flush(t, reps...)

	rdb := rawClient(t, srv)
	ctx := t.Context()
	tests := []struct {
		key string
		ttl time.Duration
	}{
		{"bedrock-gateway:{budget}:ds-daily:team:data-science:2026-11-15", time.Hour + keyGrace},
		{"bedrock-gateway:{budget}:each-user-monthly:user:alice:2026-11", 15*24*time.Hour + time.Hour + keyGrace},
	}
	for _, tt := range tests {
		if v, err := rdb.Get(ctx, tt.key).Result(); err != nil || v != "9007199254740993" {
			t.Errorf("GET %s = %q, %v; want 9007199254740993", tt.key, v, err)
		}
		if ttl, err := rdb.PTTL(ctx, tt.key).Result(); err != nil || ttl > tt.ttl || ttl < tt.ttl-time.Minute {
			t.Errorf("PTTL %s = %v, %v; want about %v", tt.key, ttl, err, tt.ttl)
		}
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 2 {
		t.Errorf("%d keys (%v), want the 2 above", n, err)
	}
	if st := reps[0].Describe(ctx, alice); st[1].Spent != usd(big) {
		t.Errorf("read back $%v, want $%s", st[1].Spent, big)
	}

	// The next day reads and writes the next day's key; the old one
	// lives out its grace.
	clk.Advance(time.Hour)
	if err := reps[0].Check(ctx, alice); err != nil {
		t.Errorf("next day: Check = %v, want nil", err)
	}
	reps[0].Spend(alice, usd("1"))
	flush(t, reps...)
	if v, err := rdb.Get(ctx, "bedrock-gateway:{budget}:ds-daily:team:data-science:2026-11-16").Result(); err != nil || v != strconv.FormatInt(int64(usd("1")), 10) {
		t.Errorf("next day's key = %q, %v; want $1", v, err)
	}
}

// TestFleetRedisDown: with Redis gone, no call fails and each replica
// enforces the budget on its own view (the fleet's spend it last saw plus
// its own since); what they spent meanwhile reaches Redis when it is back,
// and the fleet shares the budget again.
func TestFleetRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	breaker := fakeclock.Following()
	clk := fakeclock.At(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
	r := good()
	r.Period, r.LimitUSD = Daily, "10"
	reps := startReplicas(t, srv, breaker, clk.Now, 2, Config{r})
	a, b := reps[0], reps[1]
	ctx := t.Context()

	a.Spend(alice, usd("3"))
	flush(t, a)
	if err := b.Check(ctx, bob); err != nil { // b sees the $3
		t.Fatal(err)
	}
	srv.Kill()
	a.Spend(alice, usd("5"))
	b.Spend(bob, usd("5"))
	for i, rep := range reps {
		if err := rep.Check(ctx, alice); err != nil {
			t.Errorf("replica %d at $8 of its own view: Check = %v, want nil", i, err)
		}
		if err := rep.Flush(ctx); !errors.Is(err, fleet.ErrUnavailable) {
			t.Errorf("replica %d: Flush with Redis down = %v, want ErrUnavailable", i, err)
		}
	}
	a.Spend(alice, usd("2"))
	if ee := exceeded(t, a.Check(ctx, alice)); ee.Spent != usd("10") {
		t.Errorf("replica a alone: refused at $%v, want $10 (3 seen + 7 its own)", ee.Spent)
	}
	if err := b.Check(ctx, bob); err != nil {
		t.Errorf("replica b alone at $8: Check = %v, want nil (the fleet overruns while Redis is down)", err)
	}
	if st := b.Describe(ctx, bob); len(st) != 1 || !st[0].Local || st[0].Spent != usd("8") {
		t.Errorf("replica b: Describe = %+v, want $8, local", st)
	}

	srv.Restart() // empty: the $3 written before is gone with it
	for i, rep := range reps {
		var err error
		for try := 0; try < 5; try++ {
			breaker.Advance(time.Minute) // past any breaker back-off
			if err = rep.Flush(ctx); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("replica %d: Flush with Redis back = %v", i, err)
		}
	}
	rdb := rawClient(t, srv)
	if v, err := rdb.Get(ctx, "bedrock-gateway:{budget}:ds-monthly:team:data-science:2026-11-30").Int64(); err != nil || pricing.Money(v) != usd("12") {
		t.Errorf("Redis holds $%v (%v), want the $12 spent during the outage", pricing.Money(v), err)
	}
	for i, rep := range reps {
		if ee := exceeded(t, rep.Check(ctx, bob)); ee.Spent != usd("12") {
			t.Errorf("replica %d: refused at $%v, want the fleet's $12", i, ee.Spent)
		}
		logs := rep.logs.String()
		if !strings.Contains(logs, "Redis unavailable; each replica enforces budgets on its own view") || !strings.Contains(logs, "shared through Redis again") {
			t.Errorf("replica %d logged %q, want the fall back and the resumption", i, logs)
		}
	}
}

// TestFleetCloseReportsUnsent: spend Redis never took is reported by
// Close, not lost silently.
func TestFleetCloseReportsUnsent(t *testing.T) {
	srv := redistest.Start(t)
	c := fleet.DefaultConfig()
	c.Redis.URL, c.SessionKeyFile = srv.URL(), "k"
	s, err := fleet.Open(c, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr, err := New(Config{good()}, Options{Fleet: s})
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	tr.Spend(alice, usd("1.5"))
	if err := tr.Close(); !errors.Is(err, fleet.ErrUnavailable) || !strings.Contains(err.Error(), "$1.5 of spend") {
		t.Errorf("Close = %v, want $1.5 unsent", err)
	}
	if err := tr.Close(); err == nil {
		t.Errorf("second Close = nil, want the same report")
	}
	if err := tr.Check(context.Background(), alice); err != nil {
		t.Errorf("Check after Close = %v", err)
	}
}

// BenchmarkCheckFleet: what a request with a fleet-wide hard budget pays:
// an MGET to a loopback Redis at most once per FleetReadInterval, and a
// Spend handed to the flusher.
func BenchmarkCheckFleet(b *testing.B) {
	srv := redistest.Start(b)
	c := fleet.DefaultConfig()
	c.Redis.URL, c.SessionKeyFile = srv.URL(), "k"
	s, err := fleet.Open(c, fleet.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tr, err := New(Config{good()}, Options{Fleet: s})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.Check(ctx, alice); err != nil {
			b.Fatal(err)
		}
		tr.Spend(alice, 1)
	}
}
