package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bedrock-gateway/gateway/pkg/limits"
)

// Limiter enforces pkg/limits' rules (request rates, tokens per minute)
// for the whole fleet: every replica's Limiter keeps the buckets in the
// one Redis, so N replicas together admit what one would. It is a
// policy.Limiter, like *limits.Limiter.
//
// Each bucket is one Redis string holding a time on Redis's clock (TIME),
// so replicas' clocks do not matter: for a request bucket, GCRA's
// theoretical arrival time; for a token budget, the time at which it is
// full again. Both answer as pkg/limits' token buckets (x/time/rate) do,
// to the microsecond. A key expires when its bucket is full,
// so idle buckets take no memory (a missing key is a full bucket).
//
// While Redis cannot be used (fleet.ErrUnavailable, or any other error)
// the Limiter answers from the local *limits.Limiter it was given, so no
// request fails because of Redis: each replica then enforces every rule
// alone (N replicas admit up to N times a rule) until Redis answers again,
// which the Store's breaker notices by itself.
type Limiter struct {
	store *Store
	local *limits.Limiter
	m     *limiterMetrics

	onLocal atomic.Bool    // the last call fell back to local; for logging changes only
	spends  sync.WaitGroup // Spends in flight
}

// NewLimiter returns a Limiter keeping its buckets in s, falling back to
// local, which should be the replica's one *limits.Limiter (so that it
// outlives config reloads, like the Limiter itself). reg receives
// bedrock_gateway_fleet_limit_decisions_total; nil registers nothing.
// Flush it before closing s.
func NewLimiter(s *Store, local *limits.Limiter, reg prometheus.Registerer) (*Limiter, error) {
	if s == nil || local == nil {
		return nil, errors.New("fleet: NewLimiter needs a store and a local limiter")
	}
	m, err := newLimiterMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Limiter{store: s, local: local, m: m}, nil
}

// limitsTag is the Redis Cluster hash tag of every limit key: Admit's
// script reads an identity's and its tenant's buckets together, so they
// must live in one slot. Limits then live on one shard; at one short
// script per request that is far below what a shard serves.
const limitsTag = "{limits}"

// limitKeys returns key's request bucket and token budget keys.
func (l *Limiter) limitKeys(key string) (req, tok string) {
	return l.store.Key(limitsTag, "req", key), l.store.Key(limitsTag, "tok", key)
}

// Bounds on the times the scripts store, in microseconds, so that absurd
// rules (a request every century) stay within float64's exact integers
// and Redis's expiry range. A rule beyond them is enforced as if at them.
const (
	maxIntervalMicros = 1e12 // 11.6 days between requests
	maxWindowMicros   = 1e15 // 31.7 years of burst
)

// admitScript is Admit's one round trip. KEYS holds, per check, its
// request bucket then its token budget; ARGV holds, per check, its request
// interval (µs, 0: unlimited), its request window (µs the bucket may run
// ahead of now: (burst-1) intervals) and its token window (µs the budget
// may run ahead of now while at least one token is left: (tpm-1) tokens'
// worth; -1: unlimited).
//
// Like limits.Limiter.Admit: the request buckets take one request all
// together or refuse with the longest wait, taking nothing; then each
// token budget is checked in order. It answers {admitted, index of the
// refusing token budget's check (0: the request buckets), wait in µs}.
var admitScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS / 2
local wait, tats = 0, {}
for i = 1, n do
  local interval = tonumber(ARGV[3*i-2])
  if interval > 0 then
    local tat = math.max(tonumber(redis.call('GET', KEYS[2*i-1])) or 0, now)
    local w = tat - now - tonumber(ARGV[3*i-1])
    if w > 0 then
      wait = math.max(wait, w)
    else
      tats[i] = tat + interval
    end
  end
end
if wait > 0 then
  return {0, 0, math.ceil(wait)}
end
for i, tat in pairs(tats) do
  redis.call('SET', KEYS[2*i-1], string.format('%.17g', tat), 'PX', string.format('%d', math.ceil((tat - now) / 1000)))
end
for i = 1, n do
  local window = tonumber(ARGV[3*i])
  if window >= 0 then
    local full = tonumber(redis.call('GET', KEYS[2*i])) or 0
    local w = full - now - window
    if w > 0 then
      return {0, i, math.ceil(w)}
    end
  end
end
return {1, 0, 0}
`)

// spendScript charges a token budget: KEYS[1] the budget, ARGV[1] the
// tokens' worth in µs, ARGV[2] the most the budget may run ahead of now
// (its capacity plus limits.MaxDebtMinutes of debt).
var spendScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local full = math.max(tonumber(redis.call('GET', KEYS[1])) or 0, now) + tonumber(ARGV[1])
full = math.min(full, now + tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%.17g', full), 'PX', string.format('%d', math.ceil((full - now) / 1000)))
return 0
`)

// maxDebtMicros is how far a token budget's full time may run ahead of
// now: a full minute of budget plus limits.MaxDebtMinutes of debt.
const maxDebtMicros = (1 + limits.MaxDebtMinutes) * 60e6

// microsPerToken is how long rule's budget takes to refill one token.
func microsPerToken(rule limits.LimitRule) float64 { return 60e6 / float64(rule.TokensPerMinute) }

// admitArgs appends rule's three ARGV values for admitScript.
func admitArgs(args []any, rule limits.LimitRule) []any {
	var interval, window int64
	if rule.RequestsPerSecond > 0 {
		// Whole microseconds keep the script's arithmetic exact: no
		// request is refused for a rounding error at the boundary.
		interval = max(1, int64(math.Round(min(1e6/rule.RequestsPerSecond, maxIntervalMicros))))
		window = int64(min(float64(rule.EffectiveBurst()-1)*float64(interval), maxWindowMicros))
	}
	tokWindow := -1.0
	if rule.TokensPerMinute > 0 {
		tokWindow = float64(rule.TokensPerMinute-1) * microsPerToken(rule)
	}
	return append(args, interval, window, strconv.FormatFloat(tokWindow, 'f', -1, 64))
}

// Admit is limits.Limiter.Admit for the fleet, in one Redis round trip
// (the store's per-call timeout bounds it; policy's Admit has no context
// to pass). When Redis cannot answer, the local Limiter does.
func (l *Limiter) Admit(checks ...limits.Check) limits.Verdict {
	active := make([]limits.Check, 0, len(checks))
	for _, c := range checks {
		if !c.Rule.IsZero() {
			active = append(active, c)
		}
	}
	if len(active) == 0 {
		return limits.Verdict{OK: true}
	}
	keys := make([]string, 0, 2*len(active))
	args := make([]any, 0, 3*len(active))
	for _, c := range active {
		req, tok := l.limitKeys(c.Key)
		keys = append(keys, req, tok)
		args = admitArgs(args, c.Rule)
	}
	var reply []int64
	err := l.store.Do(context.Background(), "limits_admit", func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		reply, err = admitScript.Run(ctx, rdb, keys, args...).Int64Slice()
		return err
	})
	if err == nil && (len(reply) != 3 || reply[1] < 0 || reply[1] > int64(len(active))) {
		err = fmt.Errorf("limits_admit: unexpected reply %v", reply)
	}
	if err != nil {
		l.fellBack(err)
		v := l.local.Admit(checks...)
		l.m.count("local", v)
		return v
	}
	l.shared()
	v := limits.Verdict{OK: reply[0] == 1}
	if !v.OK {
		v.RetryAfter = max(time.Duration(reply[2])*time.Microsecond, time.Microsecond)
		if i := reply[1]; i > 0 {
			v.TokenKey = active[i-1].Key
		}
	}
	l.m.count("fleet", v)
	return v
}

// Spend is limits.Limiter.Spend for the fleet. It returns at once: the
// tokens are charged in the background, within the store's per-call
// timeout, to the local Limiter if Redis cannot take them. Flush waits
// for them.
func (l *Limiter) Spend(key string, rule limits.LimitRule, tokens int64) {
	if rule.TokensPerMinute <= 0 || tokens <= 0 {
		return
	}
	_, tok := l.limitKeys(key)
	// Capped before it leaves float64's exact range: the script caps it
	// again against what the budget already owes.
	worth := strconv.FormatFloat(min(float64(tokens)*microsPerToken(rule), maxDebtMicros), 'f', -1, 64)
	l.spends.Go(func() {
		err := l.store.Do(context.Background(), "limits_spend", func(ctx context.Context, rdb redis.UniversalClient) error {
			return spendScript.Run(ctx, rdb, []string{tok}, worth, int64(maxDebtMicros)).Err()
		})
		if err != nil {
			l.fellBack(err)
			l.local.Spend(key, rule, tokens)
			return
		}
		l.shared()
	})
}

// Flush waits until every Spend made so far has charged Redis or the
// local Limiter. Call it once no more Spends come (at shutdown, or in a
// test before reading the budgets).
func (l *Limiter) Flush() { l.spends.Wait() }

// fellBack notes that a call was answered locally, logging the change
// from shared limits.
func (l *Limiter) fellBack(err error) {
	if !l.onLocal.Swap(true) {
		l.store.log.Warn("fleet limits: Redis unavailable; enforcing limits per replica until it answers", "error", err)
	}
}

// shared notes that Redis answered, logging the change from local limits.
func (l *Limiter) shared() {
	if l.onLocal.Swap(false) {
		l.store.log.Info("fleet limits: shared through Redis again")
	}
}

type limiterMetrics struct {
	decisions *prometheus.CounterVec // mode, result
}

func newLimiterMetrics(reg prometheus.Registerer) (*limiterMetrics, error) {
	m := &limiterMetrics{decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bedrock_gateway_fleet_limit_decisions_total",
		Help: "Requests admitted or throttled by request and token limits in fleet mode, by mode (fleet: shared through Redis; local: this replica alone, Redis unavailable) and result (allowed, throttled).",
	}, []string{"mode", "result"})}
	for _, mode := range []string{"fleet", "local"} {
		for _, result := range []string{"allowed", "throttled"} {
			m.decisions.WithLabelValues(mode, result)
		}
	}
	if reg != nil {
		if err := reg.Register(m.decisions); err != nil {
			return nil, fmt.Errorf("register fleet limit metrics: %w", err)
		}
	}
	return m, nil
}

func (m *limiterMetrics) count(mode string, v limits.Verdict) {
	result := "allowed"
	if !v.OK {
		result = "throttled"
	}
	m.decisions.WithLabelValues(mode, result).Inc()
}
