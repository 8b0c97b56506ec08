package budget

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/logbuf"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// tracker is a single-replica Tracker with its registry and log.
type tracker struct {
	*Tracker
	reg  *prometheus.Registry
	logs *logbuf.Buffer
}

func newTracker(t testing.TB, cfg Config, o Options) *tracker {
	t.Helper()
	tr := &tracker{reg: prometheus.NewRegistry(), logs: &logbuf.Buffer{}}
	o.Registerer, o.Logger = tr.reg, slog.New(slog.NewTextHandler(tr.logs, nil))
	var err error
	if tr.Tracker, err = New(cfg, o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// advanceTo moves a synctest bubble's clock to when.
func advanceTo(t *testing.T, when time.Time) {
	t.Helper()
	d := time.Until(when)
	if d < 0 {
		t.Fatalf("advanceTo(%v): already %v", when, time.Now().UTC())
	}
	time.Sleep(d)
}

var (
	alice = auth.Identity{User: "alice", Team: "data-science", Tenant: "acme", CostCenter: "cc-1"}
	bob   = auth.Identity{User: "bob", Team: "data-science", Tenant: "acme"}
	carol = auth.Identity{User: "carol", Team: "web", Tenant: "acme"}
)

func exceeded(t *testing.T, err error) *ExceededError {
	t.Helper()
	var ee *ExceededError
	if !errors.As(err, &ee) {
		t.Fatalf("Check = %v, want an *ExceededError", err)
	}
	return ee
}

// TestPeriods: a hard budget spent in a period refuses until the UTC
// calendar period ends, with Retry-After the time left, and not a
// nanosecond longer; across a day, the 31st to the 1st, a month, and
// December to January.
func TestPeriods(t *testing.T) {
	plus14 := time.FixedZone("+14", 14*3600)
	tests := []struct {
		name   string
		period Period
		at     time.Time // when the budget is spent
		reset  time.Time
		zone   *time.Location // of the clock; the periods are UTC whatever it is
	}{
		{"day", Daily, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC), nil},
		{"31st to 1st", Daily, time.Date(2026, 1, 31, 8, 0, 0, 0, time.UTC), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), nil},
		{"Dec 31 to Jan 1", Daily, time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"day in +14", Daily, time.Date(2026, 11, 30, 23, 30, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), plus14},
		{"month", Monthly, time.Date(2026, 11, 15, 9, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), nil},
		{"month on its 31st", Monthly, time.Date(2026, 3, 31, 22, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), nil},
		{"December to January", Monthly, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"leap February", Monthly, time.Date(2028, 2, 29, 10, 0, 0, 0, time.UTC), time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC), plus14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := good()
				r.Period, r.LimitUSD = tt.period, "10"
				var o Options
				if tt.zone != nil {
					o.Now = func() time.Time { return time.Now().In(tt.zone) }
				}
				tr := newTracker(t, Config{r}, o)
				ctx := t.Context()
				advanceTo(t, tt.at)
				tr.Spend(alice, usd("10"))
				ee := exceeded(t, tr.Check(ctx, bob)) // bob shares the team's budget
				if !ee.ResetAt.Equal(tt.reset) || ee.RetryAfter != tt.reset.Sub(tt.at) {
					t.Errorf("at %v: ResetAt %v, RetryAfter %v; want %v, %v", tt.at, ee.ResetAt, ee.RetryAfter, tt.reset, tt.reset.Sub(tt.at))
				}
				advanceTo(t, tt.reset.Add(-time.Nanosecond))
				if ee := exceeded(t, tr.Check(ctx, bob)); ee.RetryAfter != time.Nanosecond {
					t.Errorf("a nanosecond before the reset: RetryAfter %v, want 1ns", ee.RetryAfter)
				}
				advanceTo(t, tt.reset)
				if err := tr.Check(ctx, bob); err != nil {
					t.Errorf("at the reset %v: Check = %v, want nil", tt.reset, err)
				}
				if st := tr.Describe(ctx, bob); len(st) != 1 || st[0].Spent != 0 || st[0].Exceeded {
					t.Errorf("after the reset: Describe = %+v, want nothing spent", st)
				}
			})
		})
	}
}

// TestStreamCrossesTheLine: a request is never refused midway: the one
// that takes spend over the limit is counted whole, and the next request
// is refused with a message naming the budget, its limit and the reset.
func TestStreamCrossesTheLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTracker(t, Config{good()}, Options{})
		ctx := t.Context()
		advanceTo(t, time.Date(2026, 11, 20, 15, 0, 0, 0, time.UTC))
		tr.Spend(alice, usd("4999.99"))
		if err := tr.Check(ctx, alice); err != nil {
			t.Fatalf("Check with $0.01 left = %v, want nil", err)
		}
		tr.Spend(alice, usd("3.5")) // the stream admitted above
		ee := exceeded(t, tr.Check(ctx, bob))
		want := &ExceededError{
			Budget: "ds-monthly", Scope: ScopeTeam, Subject: "data-science", Period: Monthly,
			Limit: usd("5000"), Spent: usd("5003.49"),
			ResetAt:    time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			RetryAfter: 10*24*time.Hour + 9*time.Hour,
		}
		if diff := cmp.Diff(want, ee); diff != "" {
			t.Errorf("ExceededError (-want +got):\n%s", diff)
		}
		const msg = `budget "ds-monthly" is spent: team "data-science" has spent $5003.49 of its $5000 limit this month; it resets at 2026-12-01T00:00:00Z`
		if ee.Error() != msg {
			t.Errorf("Error() = %q, want %q", ee.Error(), msg)
		}
		if err := tr.Check(ctx, carol); err != nil {
			t.Errorf("another team: Check = %v, want nil", err)
		}
		if got := testutil.ToFloat64(tr.m.refusals.WithLabelValues("ds-monthly")); got != 1 {
			t.Errorf("refusals = %v, want 1", got)
		}
	})
}

// TestRefusalNamesLatestReset: of several spent hard budgets, the refusal
// names the one that resets last, so that Retry-After is when a request
// can succeed.
func TestRefusalNamesLatestReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		daily := Rule{Name: "alice-daily", Scope: ScopeUser, Match: "*", Period: Daily, LimitUSD: "1", Mode: Hard}
		monthly := Rule{Name: "acme-monthly", Scope: ScopeTenant, Match: "acme", Period: Monthly, LimitUSD: "2", Mode: Hard}
		tr := newTracker(t, Config{daily, monthly}, Options{})
		advanceTo(t, time.Date(2026, 5, 30, 12, 0, 0, 0, time.UTC))
		tr.Spend(alice, usd("1"))
		if ee := exceeded(t, tr.Check(t.Context(), alice)); ee.Budget != "alice-daily" {
			t.Errorf("refused by %q, want alice-daily", ee.Budget)
		}
		if err := tr.Check(t.Context(), bob); err != nil {
			t.Errorf("bob, each user his own daily budget: Check = %v, want nil", err)
		}
		tr.Spend(bob, usd("1"))
		if ee := exceeded(t, tr.Check(t.Context(), alice)); ee.Budget != "acme-monthly" || ee.RetryAfter != 36*time.Hour {
			t.Errorf("refused by %q for %v, want acme-monthly for 36h", ee.Budget, ee.RetryAfter)
		}
	})
}

// TestSoftThresholds: each threshold of a soft budget is counted and
// logged once per period and subject, however spend reaches it, and a
// soft budget never refuses.
func TestSoftThresholds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := Rule{Name: "team-soft", Scope: ScopeTeam, Match: "*", Period: Daily, LimitUSD: "10", Mode: Soft, Thresholds: []float64{1, 0.5, 0.8}}
		tr := newTracker(t, Config{r}, Options{})
		ctx := t.Context()
		advanceTo(t, time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
		count := func(th string) float64 { return testutil.ToFloat64(tr.m.crossings.WithLabelValues("team-soft", th)) }
		steps := []struct {
			who            auth.Identity
			spend          string
			half, most, at float64 // crossings of 0.5, 0.8, 1 after it
		}{
			{alice, "4.99", 0, 0, 0},
			{bob, "0.01", 1, 0, 0},
			{alice, "1", 1, 0, 0},
			{bob, "5", 1, 1, 1}, // two at once
			{bob, "100", 1, 1, 1},
			{carol, "5", 2, 1, 1}, // another team
		}
		for i, s := range steps {
			tr.Spend(s.who, usd(s.spend))
			if got := [3]float64{count("0.5"), count("0.8"), count("1")}; got != [3]float64{s.half, s.most, s.at} {
				t.Errorf("step %d: crossings of 0.5, 0.8, 1 = %v, want %v", i, got, [3]float64{s.half, s.most, s.at})
			}
			if err := tr.Check(ctx, s.who); err != nil {
				t.Errorf("step %d: soft budget: Check = %v, want nil", i, err)
			}
		}
		advanceTo(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		tr.Spend(alice, usd("5"))
		if got := count("0.5"); got != 3 {
			t.Errorf("next day: crossings of 0.5 = %v, want 3", got)
		}
		logs := tr.logs.String()
		if n := strings.Count(logs, "budget threshold crossed"); n != 5 {
			t.Errorf("%d crossings logged, want 5:\n%s", n, logs)
		}
		for _, want := range []string{
			`budget=team-soft mode=soft scope=team subject=data-science period=2026-11-30 threshold=0.5 spent_usd=5 limit_usd=10`,
			`subject=data-science period=2026-11-30 threshold=1 spent_usd=11`,
			`subject=web period=2026-11-30 threshold=0.5 spent_usd=5`,
			`subject=data-science period=2026-12-01 threshold=0.5 spent_usd=5`,
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %q:\n%s", want, logs)
			}
		}
	})
}

// TestMetrics: the gauges follow the current period (0 after a reset with
// no spend), and a budget for each user is one series, not one per user.
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{
			good(),
			{Name: "each-user", Scope: ScopeUser, Match: "*", Period: Daily, LimitUSD: "2", Mode: Soft, Thresholds: []float64{}},
		}
		tr := newTracker(t, cfg, Options{})
		advanceTo(t, time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
		tr.Spend(alice, usd("1.25"))
		tr.Spend(bob, usd("0.5"))
		tr.Spend(carol, usd("0.75"))
		tr.Spend(bob, usd("1"))
		tr.Check(t.Context(), alice)
		const want = `
# HELP bedrock_gateway_budget_limit_usd A budget's limit per subject and period, in dollars.
# TYPE bedrock_gateway_budget_limit_usd gauge
bedrock_gateway_budget_limit_usd{budget="ds-monthly",subject="data-science"} 5000
bedrock_gateway_budget_limit_usd{budget="each-user",subject=""} 2
# HELP bedrock_gateway_budget_refusals_total Requests refused because a hard budget was spent, by the budget named in the refusal.
# TYPE bedrock_gateway_budget_refusals_total counter
bedrock_gateway_budget_refusals_total{budget="ds-monthly"} 0
# HELP bedrock_gateway_budget_spend_usd Spend in the current period as this replica knows it (fleet-wide in fleet mode: take max over replicas); for a budget of each subject (subject=""), the most any one subject spent.
# TYPE bedrock_gateway_budget_spend_usd gauge
bedrock_gateway_budget_spend_usd{budget="ds-monthly",subject="data-science"} 2.75
bedrock_gateway_budget_spend_usd{budget="each-user",subject=""} 1.5
# HELP bedrock_gateway_budget_threshold_crossings_total Times a subject's spend reached a budget's threshold (a fraction of its limit), each at most once per subject and period; fleet-wide once while Redis is reachable.
# TYPE bedrock_gateway_budget_threshold_crossings_total counter
bedrock_gateway_budget_threshold_crossings_total{budget="ds-monthly",threshold="0.8"} 0
bedrock_gateway_budget_threshold_crossings_total{budget="ds-monthly",threshold="1"} 0
`
		if err := testutil.GatherAndCompare(tr.reg, strings.NewReader(want)); err != nil {
			t.Error(err)
		}
		advanceTo(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		const after = `
# HELP bedrock_gateway_budget_spend_usd Spend in the current period as this replica knows it (fleet-wide in fleet mode: take max over replicas); for a budget of each subject (subject=""), the most any one subject spent.
# TYPE bedrock_gateway_budget_spend_usd gauge
bedrock_gateway_budget_spend_usd{budget="ds-monthly",subject="data-science"} 0
bedrock_gateway_budget_spend_usd{budget="each-user",subject=""} 0
`
		if err := testutil.GatherAndCompare(tr.reg, strings.NewReader(after), "bedrock_gateway_budget_spend_usd"); err != nil {
			t.Errorf("after the reset: %v", err)
		}
	})
}

// TestDescribe: whoami's view, in config order, as JSON.
func TestDescribe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{
			good(),
			{Name: "web-monthly", Scope: ScopeTeam, Match: "web", Period: Monthly, LimitUSD: "1", Mode: Hard},
			{Name: "each-user", Scope: ScopeUser, Match: "*", Period: Daily, LimitUSD: "0.5", Mode: Soft},
		}
		tr := newTracker(t, cfg, Options{})
		advanceTo(t, time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
		tr.Spend(alice, usd("0.123456789012"))
		tr.Spend(alice, usd("0.5"))
		b, err := json.Marshal(tr.Describe(t.Context(), alice))
		if err != nil {
			t.Fatal(err)
		}
		const want = `[{"budget":"ds-monthly","scope":"team","subject":"data-science","period":"monthly","mode":"hard","limit_usd":5000,"spent_usd":0.623456789012,"exceeded":false,"resets_at":"2026-12-01T00:00:00Z"},` +
			`{"budget":"each-user","scope":"user","subject":"alice","period":"daily","mode":"soft","limit_usd":0.5,"spent_usd":0.623456789012,"exceeded":true,"resets_at":"2026-12-01T00:00:00Z"}]`
		if string(b) != want {
			t.Errorf("Describe = %s\nwant       %s", b, want)
		}
		if st := tr.Describe(t.Context(), auth.Identity{}); len(st) != 0 {
			t.Errorf("Describe(no identity) = %+v, want none", st)
		}
	})
}

// TestReload: spend survives a reload for budgets that keep their name,
// scope and period; a new limit applies at once; a removed budget's
// series go.
func TestReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		soft := Rule{Name: "each-team", Scope: ScopeTeam, Match: "*", Period: Monthly, LimitUSD: "100", Mode: Soft}
		tr := newTracker(t, Config{good(), soft}, Options{})
		advanceTo(t, time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
		tr.Spend(alice, usd("90"))
		lower := good()
		lower.LimitUSD = "50"
		if err := tr.Reload(Config{lower, {Name: "bad"}}); err == nil {
			t.Fatal("Reload(invalid) = nil")
		}
		if err := tr.Check(t.Context(), alice); err != nil {
			t.Fatalf("after a refused reload: Check = %v", err)
		}
		if err := tr.Reload(Config{lower}); err != nil {
			t.Fatal(err)
		}
		if ee := exceeded(t, tr.Check(t.Context(), alice)); ee.Spent != usd("90") || ee.Limit != usd("50") {
			t.Errorf("after lowering the limit: spent %v of %v, want 90 of 50", ee.Spent, ee.Limit)
		}
		// Crossed under the new limit already: not reported as news.
		tr.Spend(alice, usd("1"))
		if got := testutil.CollectAndCount(tr.m.crossings); got != 2 {
			t.Errorf("%d crossing series, want ds-monthly's 2 (each-team's removed)", got)
		}
		if got := testutil.ToFloat64(tr.m.crossings.WithLabelValues("ds-monthly", "1")); got != 0 {
			t.Errorf("crossings reported for spend counted before the reload: %v", got)
		}
		daily := lower
		daily.Period = Daily
		if err := tr.Reload(Config{daily}); err != nil {
			t.Fatal(err)
		}
		if err := tr.Check(t.Context(), alice); err != nil {
			t.Errorf("a budget whose period changed starts afresh: Check = %v", err)
		}
	})
}

// TestNoBudgets: a nil Tracker and one without budgets do nothing.
func TestNoBudgets(t *testing.T) {
	var nilTracker *Tracker
	tr := newTracker(t, nil, Options{})
	for _, tr := range []*Tracker{nilTracker, tr.Tracker} {
		tr.Spend(alice, usd("1000"))
		if err := tr.Check(context.Background(), alice); err != nil {
			t.Errorf("Check = %v", err)
		}
		if st := tr.Describe(context.Background(), alice); len(st) != 0 {
			t.Errorf("Describe = %v", st)
		}
		tr.Rebuild(nil)
		if err := tr.RebuildFromLedger("/nonexistent"); err != nil {
			t.Errorf("RebuildFromLedger = %v", err)
		}
		if err := tr.Flush(context.Background()); err != nil {
			t.Errorf("Flush = %v", err)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	}
}

// TestHotPathAllocs: without budgets Check and Spend allocate nothing;
// with local budgets, nothing once the subjects have entries.
func TestHotPathAllocs(t *testing.T) {
	none := newTracker(t, nil, Options{})
	some := newTracker(t, Config{
		good(),
		{Name: "each-user", Scope: ScopeUser, Match: "*", Period: Daily, LimitUSD: "1000", Mode: Hard},
		{Name: "acme", Scope: ScopeTenant, Match: "acme", Period: Monthly, LimitUSD: "1000", Mode: Soft},
	}, Options{})
	some.Spend(alice, 1)
	ctx := context.Background()
	for name, tr := range map[string]*Tracker{"none": none.Tracker, "nil": nil, "local": some.Tracker} {
		if n := testing.AllocsPerRun(100, func() { tr.Check(ctx, alice) }); n != 0 {
			t.Errorf("%s: Check allocates %v times", name, n)
		}
		if n := testing.AllocsPerRun(100, func() { tr.Spend(alice, 1) }); n != 0 {
			t.Errorf("%s: Spend allocates %v times", name, n)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"none", nil},
		{"three-local", Config{
			good(),
			{Name: "each-user", Scope: ScopeUser, Match: "*", Period: Daily, LimitUSD: "1000", Mode: Hard},
			{Name: "acme", Scope: ScopeTenant, Match: "acme", Period: Monthly, LimitUSD: "1000", Mode: Soft},
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := newTracker(b, bc.cfg, Options{})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				tr.Check(ctx, alice)
				tr.Spend(alice, 1)
			}
		})
	}
}
