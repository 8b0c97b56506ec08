package sessioncache

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/internal/redistest"
	"github.com/bedrock-gateway/gateway/pkg/fleet"
)

var _ Budget = (*fleet.Budget)(nil)

// fakeBudget is a Budget that records what it is asked. It refuses every
// call with refuse as the hint when refuse is set, the way fleet.Budget
// refuses, and halves its rate when throttled.
type fakeBudget struct {
	mu        sync.Mutex
	renewals  []bool // Admit's renewal argument, call by call
	throttles int
	refuse    time.Duration
	rate      float64
}

func (f *fakeBudget) Admit(ctx context.Context, renewal bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renewals = append(f.renewals, renewal)
	if f.refuse > 0 {
		return &fleet.OverBudgetError{RetryAfter: f.refuse}
	}
	return ctx.Err()
}

func (f *fakeBudget) Throttled() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttles++
	f.rate /= 2
}

func (f *fakeBudget) Rate() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rate
}

func (f *fakeBudget) calls() ([]bool, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.renewals), f.throttles
}

// TestGetUsesBudget: with Config.Budget, every AssumeRole passes it, as a
// new session or a renewal; its refusal is an *OverloadedError with its
// hint, STS Throttling is reported to it, and the admission metrics follow
// it as they follow the process's own budget.
func TestGetUsesBudget(t *testing.T) {
	t.Run("new session, then renewal", func(t *testing.T) {
		clock := fakeclock.New()
		b := &fakeBudget{rate: 123}
		reg := prometheus.NewRegistry()
		f := &fakeSTS{now: clock.Now}
		c := mustNew(t, Config{STS: f, Now: clock.Now, Budget: b, Registerer: reg})
		if got := testutil.ToFloat64(c.m.admissionRate); got != 123 {
			t.Errorf("admission rate gauge = %v, want the budget's 123", got)
		}
		if _, err := c.Get(t.Context(), testSpec("alice")); err != nil {
			t.Fatalf("Get() error = %v", err)
		}
		clock.Advance(56 * time.Minute) // past the 5m expiry margin of 1h credentials
		if _, err := c.Get(t.Context(), testSpec("alice")); err != nil {
			t.Fatalf("Get() of a stale session error = %v", err)
		}
		renewals, _ := b.calls()
		if want := []bool{false, true}; !slices.Equal(renewals, want) {
			t.Errorf("Budget.Admit renewal arguments = %v, want %v", renewals, want)
		}
		if f.Calls() != 2 {
			t.Errorf("STS calls = %d, want 2", f.Calls())
		}
		if n := testutil.CollectAndCount(c.m.admissionWait); n != 2 {
			t.Errorf("admission wait series = %d, want one per class", n)
		}
	})

	t.Run("refusal", func(t *testing.T) {
		b := &fakeBudget{rate: 100, refuse: 3 * time.Second}
		f := &fakeSTS{}
		c := mustNew(t, Config{STS: f, Budget: b})
		_, err := c.Get(t.Context(), testSpec("alice"))
		var oe *OverloadedError
		if !errors.As(err, &oe) || oe.RetryAfter != 3*time.Second {
			t.Fatalf("Get() refused by the budget = %v, want *OverloadedError with RetryAfter 3s", err)
		}
		if d, ok := RetryAfter(err); !ok || d != 3*time.Second {
			t.Errorf("RetryAfter(err) = %v, %v; want 3s", d, ok)
		}
		if f.Calls() != 0 {
			t.Errorf("STS calls = %d, want none", f.Calls())
		}
		if got := testutil.ToFloat64(c.m.rejections.WithLabelValues("new")); got != 1 {
			t.Errorf("rejections{class=new} = %v, want 1", got)
		}
	})

	t.Run("throttling", func(t *testing.T) {
		b := &fakeBudget{rate: 100}
		f := &fakeSTS{}
		f.respond = func(_ context.Context, n int, _ *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
			if n == 1 {
				return nil, &smithy.GenericAPIError{Code: "Throttling"}
			}
			return f.output(n), nil
		}
		c := mustNew(t, Config{STS: f, Budget: b, Rand: func() float64 { return 0 }})
		if _, err := c.Get(t.Context(), testSpec("alice")); err != nil {
			t.Fatalf("Get() error = %v, want the retry's credentials", err)
		}
		renewals, throttles := b.calls()
		if len(renewals) != 2 || throttles != 1 {
			t.Errorf("budget saw %d admissions and %d throttlings, want 2 (call and retry) and 1", len(renewals), throttles)
		}
		if got := testutil.ToFloat64(c.m.admissionRate); got != 50 {
			t.Errorf("admission rate gauge = %v, want the budget's lowered 50", got)
		}
		// The process's own buckets were not used, nor lowered.
		if c.adm.lowered {
			t.Error("the local admission was lowered; Throttling should go to the budget")
		}
	})
}

// TestGetWithFleetBudget: the cache on a real fleet.Budget (Redis) passes
// its calls through the shared buckets.
func TestGetWithFleetBudget(t *testing.T) {
	srv := redistest.Start(t)
	fc := fleet.DefaultConfig()
	fc.Redis.URL, fc.SessionKeyFile, fc.Timeout = srv.URL(), "unused", 500*time.Millisecond
	st, err := fleet.Open(fc, fleet.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	b, err := fleet.NewBudget(st, fleet.BudgetConfig{Rate: 50, NewSessionShare: 0.5, AdmissionWait: time.Second, LocalRate: 25, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	c := mustNew(t, Config{STS: &fakeSTS{}, Budget: b, Registerer: reg})
	for _, user := range []string{"alice", "bob", "carol"} {
		if _, err := c.Get(t.Context(), testSpec(user)); err != nil {
			t.Fatalf("Get(%s) error = %v", user, err)
		}
	}
	want := `
# HELP bedrock_gateway_fleet_sts_budget_total AssumeRole calls put to the fleet STS budget, by class (new or active session), mode (fleet: shared through Redis; local: this replica's share while Redis is unavailable) and result (admitted or refused).
# TYPE bedrock_gateway_fleet_sts_budget_total counter
bedrock_gateway_fleet_sts_budget_total{class="active",mode="fleet",result="admitted"} 0
bedrock_gateway_fleet_sts_budget_total{class="active",mode="fleet",result="refused"} 0
bedrock_gateway_fleet_sts_budget_total{class="active",mode="local",result="admitted"} 0
bedrock_gateway_fleet_sts_budget_total{class="active",mode="local",result="refused"} 0
bedrock_gateway_fleet_sts_budget_total{class="new",mode="fleet",result="admitted"} 3
bedrock_gateway_fleet_sts_budget_total{class="new",mode="fleet",result="refused"} 0
bedrock_gateway_fleet_sts_budget_total{class="new",mode="local",result="admitted"} 0
bedrock_gateway_fleet_sts_budget_total{class="new",mode="local",result="refused"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "bedrock_gateway_fleet_sts_budget_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(c.m.admissionRate); got != 50 {
		t.Errorf("admission rate gauge = %v, want the fleet's 50", got)
	}
}
