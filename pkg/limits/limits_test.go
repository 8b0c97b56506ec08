package limits

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newLimiter(t *testing.T, size int) (*Limiter, *fakeclock.Clock) {
	t.Helper()
	c := fakeclock.New()
	l, err := New(Config{Size: size, Now: c.Now})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return l, c
}

// step is one action in a limiter scenario: advance the clock, then call
// Allow (allow), AllowTokens (allowTok) or else Spend(spend).
type step struct {
	advance   time.Duration
	key       string
	allow     bool
	allowTok  bool
	spend     int64
	wantOK    bool
	wantRetry time.Duration
}

func TestAllow(t *testing.T) {
	tests := []struct {
		name  string
		rule  LimitRule
		steps []step
	}{
		{"zero rule is unlimited", LimitRule{}, []step{
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: true},
		}},
		{"1 rps burst 1", LimitRule{RequestsPerSecond: 1}, []step{
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: false, wantRetry: time.Second},
			{advance: 400 * time.Millisecond, key: "a", allow: true, wantOK: false, wantRetry: 600 * time.Millisecond},
			{advance: 600 * time.Millisecond, key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: false, wantRetry: time.Second},
		}},
		{"burst 3", LimitRule{RequestsPerSecond: 1, Burst: 3}, []step{
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: false, wantRetry: time.Second},
			{advance: 10 * time.Second, key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: false, wantRetry: time.Second},
		}},
		{"default burst is ceil(rps)", LimitRule{RequestsPerSecond: 2.5}, []step{
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: false, wantRetry: 400 * time.Millisecond},
		}},
		{"fractional rate", LimitRule{RequestsPerSecond: 0.5}, []step{
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: false, wantRetry: 2 * time.Second},
		}},
		{"keys are independent", LimitRule{RequestsPerSecond: 1}, []step{
			{key: "id:alice", allow: true, wantOK: true},
			{key: "id:alice", allow: true, wantOK: false, wantRetry: time.Second},
			{key: "id:bob", allow: true, wantOK: true},
			{key: "tenant:alice", allow: true, wantOK: true},
		}},
		{"refusal takes nothing", LimitRule{RequestsPerSecond: 1}, []step{
			{key: "a", allow: true, wantOK: true},
			{key: "a", allow: true, wantOK: false, wantRetry: time.Second},
			{key: "a", allow: true, wantOK: false, wantRetry: time.Second},
			{key: "a", allow: true, wantOK: false, wantRetry: time.Second},
			{advance: time.Second, key: "a", allow: true, wantOK: true},
		}},
		{"tpm: budget checked before, spent after", LimitRule{TokensPerMinute: 600}, []step{
			{key: "a", allowTok: true, wantOK: true},
			{key: "a", spend: 599},
			{key: "a", allowTok: true, wantOK: true}, // one token left
			{key: "a", spend: 1},
			// 600 per minute = 10 per second: one token in 100ms.
			{key: "a", allowTok: true, wantOK: false, wantRetry: 100 * time.Millisecond},
			{advance: 100 * time.Millisecond, key: "a", allowTok: true, wantOK: true},
		}},
		{"tpm: debt is waited out", LimitRule{TokensPerMinute: 600}, []step{
			{key: "a", allowTok: true, wantOK: true},
			{key: "a", spend: 1500}, // 900 over budget: 90s, plus 100ms for one token
			{key: "a", allowTok: true, wantOK: false, wantRetry: 90*time.Second + 100*time.Millisecond},
			{advance: 90 * time.Second, key: "a", allowTok: true, wantOK: false, wantRetry: 100 * time.Millisecond},
			{advance: 100 * time.Millisecond, key: "a", allowTok: true, wantOK: true},
		}},
		{"tpm: debt capped at an hour", LimitRule{TokensPerMinute: 60}, []step{
			{key: "a", spend: math.MaxInt64},
			// The bucket stops at -3600 (60 minutes of 60 tokens): 3601s
			// at one token a second until one token is back.
			{key: "a", allowTok: true, wantOK: false, wantRetry: 3601 * time.Second},
		}},
		{"tpm: refill capped at budget", LimitRule{TokensPerMinute: 60}, []step{
			{advance: time.Hour, key: "a", spend: 60},
			{key: "a", allowTok: true, wantOK: false, wantRetry: time.Second},
		}},
		{"tpm: zero or negative spend records nothing", LimitRule{TokensPerMinute: 60}, []step{
			{key: "a", spend: 0},
			{key: "a", spend: -100},
			{key: "a", allowTok: true, wantOK: true},
		}},
		{"tpm and rps are independent", LimitRule{RequestsPerSecond: 1, TokensPerMinute: 60}, []step{
			{key: "a", spend: 60},
			{key: "a", allow: true, wantOK: true},
			{key: "a", allowTok: true, wantOK: false, wantRetry: time.Second},
		}},
		{"unlimited tokens", LimitRule{RequestsPerSecond: 1}, []step{
			{key: "a", spend: 1 << 40},
			{key: "a", allowTok: true, wantOK: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, c := newLimiter(t, 0)
			for i, s := range tt.steps {
				c.Advance(s.advance)
				var ok bool
				var retry time.Duration
				var call string
				switch {
				case s.allow:
					call = fmt.Sprintf("Allow(%q, %+v)", s.key, tt.rule)
					ok, retry = l.Allow(s.key, tt.rule)
				case s.allowTok:
					call = fmt.Sprintf("AllowTokens(%q, %+v)", s.key, tt.rule)
					ok, retry = l.AllowTokens(s.key, tt.rule)
				default:
					l.Spend(s.key, tt.rule, s.spend)
					continue
				}
				if ok != s.wantOK || !near(retry, s.wantRetry) {
					t.Errorf("step %d: %s = %v, %v; want %v, %v", i, call, ok, retry, s.wantOK, s.wantRetry)
				}
				if !ok && retry <= 0 {
					t.Errorf("step %d: %s refused with retryAfter %v, want > 0", i, call, retry)
				}
			}
		})
	}
}

// near reports whether got is within a microsecond of want (float
// arithmetic in x/time/rate).
func near(got, want time.Duration) bool {
	d := got - want
	return d > -time.Microsecond && d < time.Microsecond
}

func TestAllowAll(t *testing.T) {
	l, c := newLimiter(t, 0)
	id := LimitRule{RequestsPerSecond: 1, Burst: 2}
	tenant := LimitRule{RequestsPerSecond: 1}
	checks := []Check{{"id:alice", id}, {"tenant:acme", tenant}}

	if ok, retry := l.AllowAll(checks...); !ok {
		t.Fatalf("AllowAll(%v) = false, %v; want true", checks, retry)
	}
	// The tenant bucket is empty: refused, and the identity keeps its
	// second token.
	if ok, retry := l.AllowAll(checks...); ok || !near(retry, time.Second) {
		t.Fatalf("AllowAll(%v) = %v, %v; want false, 1s", checks, ok, retry)
	}
	other := []Check{{"id:alice", id}, {"tenant:globex", tenant}}
	if ok, retry := l.AllowAll(other...); !ok {
		t.Fatalf("AllowAll(%v) = false, %v; want true (identity budget untouched by the refusal)", other, retry)
	}
	// Both empty now: the longest wait wins.
	c.Advance(500 * time.Millisecond)
	if ok, retry := l.AllowAll(checks...); ok || !near(retry, 500*time.Millisecond) {
		t.Fatalf("AllowAll(%v) = %v, %v; want false, 500ms", checks, ok, retry)
	}
	if ok, _ := l.AllowAll(); !ok {
		t.Errorf("AllowAll() = false, want true")
	}
}

// TestAdmit: Admit answers as AllowAll followed by AllowTokens for each
// check, and names the token budget that refused.
func TestAdmit(t *testing.T) {
	l, c := newLimiter(t, 0)
	id := LimitRule{RequestsPerSecond: 1, Burst: 3, TokensPerMinute: 600}
	tenant := LimitRule{RequestsPerSecond: 1, Burst: 2, TokensPerMinute: 60}
	checks := []Check{{"id:alice", id}, {"tenant:acme", tenant}}
	if v := l.Admit(checks...); v != (Verdict{OK: true}) {
		t.Fatalf("Admit() = %+v, want OK", v)
	}
	// The tenant's budget in debt: refused by it, after the request was
	// taken from both request buckets.
	l.Spend("tenant:acme", tenant, 61)
	if v := l.Admit(checks...); v.OK || v.TokenKey != "tenant:acme" || !near(v.RetryAfter, 2*time.Second) {
		t.Errorf("Admit() with the tenant's budget in debt = %+v, want refused by tenant:acme, 2s", v)
	}
	l.Spend("id:alice", id, 600)
	if v := l.Admit(Check{"id:alice", id}); v.OK || v.TokenKey != "id:alice" || !near(v.RetryAfter, 100*time.Millisecond) {
		t.Errorf("Admit(id) with its budget spent = %+v, want refused by id:alice, 100ms", v)
	}
	// Three requests taken from alice's burst of 3: the request buckets
	// refuse first, naming no budget.
	if v := l.Admit(checks...); v.OK || v.TokenKey != "" || !near(v.RetryAfter, time.Second) {
		t.Errorf("Admit() with alice's requests used up = %+v, want refused by the request buckets, 1s", v)
	}
	c.Advance(2 * time.Second)
	if v := l.Admit(checks...); !v.OK {
		t.Errorf("Admit() 2s later = %+v, want OK", v)
	}
	if v := l.Admit(); !v.OK {
		t.Errorf("Admit() of no checks = %+v, want OK", v)
	}
}

// TestRuleChange: a changed rule applies to an existing key at once,
// without handing out a fresh bucket.
func TestRuleChange(t *testing.T) {
	l, _ := newLimiter(t, 0)
	slow := LimitRule{RequestsPerSecond: 1}
	if ok, _ := l.Allow("a", slow); !ok {
		t.Fatal("first Allow refused")
	}
	fast := LimitRule{RequestsPerSecond: 10, Burst: 10}
	// The bucket stays empty after the change, and refills at the new rate.
	if ok, retry := l.Allow("a", fast); ok || !near(retry, 100*time.Millisecond) {
		t.Errorf("Allow(a, %+v) after change = %v, %v; want false, 100ms", fast, ok, retry)
	}
	l.Spend("b", LimitRule{TokensPerMinute: 60}, 60)
	if ok, retry := l.AllowTokens("b", LimitRule{TokensPerMinute: 600}); ok || !near(retry, 100*time.Millisecond) {
		t.Errorf("AllowTokens(b, 600 tpm) after change = %v, %v; want false, 100ms", ok, retry)
	}
}

func TestBoundedMemory(t *testing.T) {
	l, _ := newLimiter(t, 2)
	rule := LimitRule{RequestsPerSecond: 1}
	l.Allow("a", rule)
	if ok, _ := l.Allow("a", rule); ok {
		t.Fatal("Allow(a) twice in one instant = true, want false")
	}
	for i := range 100 {
		l.Allow(fmt.Sprintf("k%d", i), rule)
		if n := l.Len(); n > 2 {
			t.Fatalf("Len() = %d after %d keys, want <= 2", n, i+2)
		}
	}
	// "a" was evicted: it starts again with a full bucket.
	if ok, _ := l.Allow("a", rule); !ok {
		t.Errorf("Allow(a) after eviction = false, want true")
	}
	// Unlimited rules track nothing.
	l2, _ := newLimiter(t, 2)
	for i := range 10 {
		l2.Allow(fmt.Sprintf("k%d", i), LimitRule{})
		l2.AllowTokens(fmt.Sprintf("k%d", i), LimitRule{})
		l2.Spend(fmt.Sprintf("k%d", i), LimitRule{}, 10)
	}
	if n := l2.Len(); n != 0 {
		t.Errorf("Len() = %d after unlimited calls, want 0", n)
	}
}

// TestLRUKeepsRecent: a key in use is not the one evicted.
func TestLRUKeepsRecent(t *testing.T) {
	l, _ := newLimiter(t, 2)
	rule := LimitRule{RequestsPerSecond: 1}
	l.Allow("hot", rule)
	l.Allow("x", rule)
	l.AllowTokens("hot", LimitRule{TokensPerMinute: 10}) // touch
	l.Allow("y", rule)                                   // evicts x, not hot
	if ok, _ := l.Allow("hot", rule); ok {
		t.Errorf("Allow(hot) = true, want false (hot should still be tracked)")
	}
}

func TestConcurrent(t *testing.T) {
	l, _ := newLimiter(t, 0)
	rule := LimitRule{RequestsPerSecond: 1, Burst: 50, TokensPerMinute: 1000}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if ok, _ := l.AllowAll(Check{"id:a", rule}, Check{"tenant:t", rule}); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
				l.AllowTokens("id:a", rule)
				l.Spend("id:a", rule, 3)
			}
		})
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("%d of 160 concurrent requests allowed at one instant, want exactly the burst, 50", allowed)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		rule    LimitRule
		wantErr bool
	}{
		{LimitRule{}, false},
		{LimitRule{RequestsPerSecond: 0.1, Burst: 5, TokensPerMinute: 100000}, false},
		{LimitRule{RequestsPerSecond: -1}, true},
		{LimitRule{RequestsPerSecond: math.NaN()}, true},
		{LimitRule{RequestsPerSecond: math.Inf(1)}, true},
		{LimitRule{Burst: -1}, true},
		{LimitRule{TokensPerMinute: -1}, true},
		{LimitRule{TokensPerMinute: math.MaxInt32 + 1}, true},
	}
	for _, tt := range tests {
		if err := tt.rule.Validate(); (err != nil) != tt.wantErr {
			t.Errorf("%+v.Validate() = %v, want error %v", tt.rule, err, tt.wantErr)
		}
	}
	if _, err := New(Config{Size: -1}); err == nil {
		t.Errorf("New(Config{Size: -1}) error = nil, want an error")
	}
}
