package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// BudgetConfig configures NewBudget. Its values are the gateway's sts.*
// settings after their defaults, so that a fleet budget admits what one
// gateway's own budget would.
type BudgetConfig struct {
	// Rate is the fleet's AssumeRole budget, calls per second: the
	// replicas together never make more in any one-second window.
	// Required (sts.rate).
	Rate float64
	// NewSessionShare is the share of Rate new sessions may use, in
	// (0,1]; the rest is kept for renewals of active users' sessions.
	// Required (sts.new_session_share).
	NewSessionShare float64
	// AdmissionWait is the longest a new session waits for the budget
	// (sts.admission_wait); zero admits new sessions only at once.
	AdmissionWait time.Duration
	// ThrottleCooldown is how long the whole fleet runs at half Rate after
	// any replica saw STS Throttling (sts.throttle_cooldown); zero never
	// lowers it.
	ThrottleCooldown time.Duration
	// LocalRate is this replica's budget, calls per second, while Redis is
	// unavailable: sts.rate / fleet.expected_replicas, so that a fleet of
	// that many degraded replicas still stays within Rate. Default
	// Rate / DefaultExpectedReplicas.
	LocalRate float64
	// Now is the clock of the local budget; default time.Now. The shared
	// budget runs on Redis's clock (TIME), never on a replica's.
	Now func() time.Time
	// Registerer receives the budget's metrics. Optional.
	Registerer prometheus.Registerer
}

func (c BudgetConfig) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	// Written so that NaN fails too.
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		add("rate: must be more than 0, got %v", c.Rate)
	}
	if !(c.NewSessionShare > 0 && c.NewSessionShare <= 1) {
		add("new_session_share: must be in (0,1], got %v", c.NewSessionShare)
	}
	if c.AdmissionWait < 0 {
		add("admission_wait: must not be negative, got %v", c.AdmissionWait)
	}
	if c.ThrottleCooldown < 0 {
		add("throttle_cooldown: must not be negative, got %v", c.ThrottleCooldown)
	}
	if c.LocalRate != 0 && !(c.LocalRate > 0 && c.LocalRate <= c.Rate) {
		add("local_rate: must be more than 0 and at most rate (%v), got %v", c.Rate, c.LocalRate)
	}
	return errors.Join(errs...)
}

// OverBudgetError: the STS budget could not admit a call within the wait
// its caller allows (BudgetConfig.AdmissionWait for a new session, the
// context's deadline for any call). Nothing was reserved for it.
type OverBudgetError struct {
	// RetryAfter is how long until the budget could admit the call.
	RetryAfter time.Duration
}

func (e *OverBudgetError) Error() string {
	return fmt.Sprintf("fleet sts budget exhausted: retry after %v", e.RetryAfter)
}

// RetryAfterHint is for sessioncache.RetryAfter, which turns the refusal
// into an *sessioncache.OverloadedError.
func (e *OverBudgetError) RetryAfterHint() time.Duration { return e.RetryAfter }

// Budget keeps the AssumeRole calls of all replicas within one STS budget
// (STS allows 600 requests per second per account and Region, IAM User
// Guide, "STS request quotas"): without it, N replicas with sts.rate R
// could make N×R calls a second. It keeps sessioncache's semantics for the
// fleet as a whole: two buckets, every call taking from the whole rate and
// a new session first from its share of it, so renewals of active users
// always find room; after STS Throttling, seen by any replica, the rate is
// halved for every replica for the cool-down.
//
// Each reservation is one Lua script run on Redis (reserveScript),
// atomic and on Redis's clock; a caller told to wait sleeps here, and
// gives its place back if it stops waiting. While Redis is unavailable the
// replica uses a local budget of LocalRate with the same algorithm, and it
// returns to the shared one as soon as the store answers again (the
// store's breaker probes). Budget implements sessioncache.Budget. Safe for
// concurrent use.
type Budget struct {
	store *Store
	// keys: the all and new-session buckets' theoretical arrival times
	// and the Throttling marker. One hash tag puts them in one slot, as
	// Redis Cluster requires of a script's keys.
	keys     []string
	args     []any // the script's bucket parameters: full rate, then lowered
	rate     float64
	maxWait  time.Duration
	cooldown time.Duration
	now      func() time.Time
	local    *localBudget
	calls    *prometheus.CounterVec // class, mode, result

	lowered  atomic.Bool // the latest shared answer: the fleet rate is halved
	degraded atomic.Bool // the latest call used the local budget
}

// Bounded label values of bedrock_gateway_fleet_sts_budget_total.
const (
	budgetNew      = "new"
	budgetActive   = "active"
	budgetFleet    = "fleet"
	budgetLocal    = "local"
	budgetAdmitted = "admitted"
	budgetRefused  = "refused"
)

// budgetCallTimeout is how long a budget decision waits on Redis. Longer
// than other fleet calls: it precedes an STS call that costs far more, and
// giving up on a Redis slowed by a login storm would make this replica
// admit on its local share on top of the fleet's budget.
const budgetCallTimeout = 500 * time.Millisecond

// NewBudget returns the fleet STS budget kept in s.
func NewBudget(s *Store, cfg BudgetConfig) (*Budget, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("fleet budget: %w", err)
	}
	if cfg.LocalRate == 0 {
		cfg.LocalRate = cfg.Rate / DefaultExpectedReplicas
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	full, low := bucketsAt(cfg.Rate, cfg.NewSessionShare, 1), bucketsAt(cfg.Rate, cfg.NewSessionShare, 0.5)
	b := &Budget{
		store:    s,
		keys:     []string{s.Key("{sts-budget}", "all"), s.Key("{sts-budget}", "new"), s.Key("{sts-budget}", "throttled")},
		args:     append(full.args(), low.args()...),
		rate:     cfg.Rate,
		maxWait:  cfg.AdmissionWait,
		cooldown: cfg.ThrottleCooldown,
		now:      cfg.Now,
		local: &localBudget{
			rate: cfg.LocalRate, cooldown: cfg.ThrottleCooldown,
			full: bucketsAt(cfg.LocalRate, cfg.NewSessionShare, 1),
			low:  bucketsAt(cfg.LocalRate, cfg.NewSessionShare, 0.5),
		},
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_fleet_sts_budget_total",
			Help: "AssumeRole calls put to the fleet STS budget, by class (new or active session), mode (fleet: shared through Redis; local: this replica's share while Redis is unavailable) and result (admitted or refused).",
		}, []string{"class", "mode", "result"}),
	}
	for _, c := range []string{budgetNew, budgetActive} {
		for _, m := range []string{budgetFleet, budgetLocal} {
			for _, r := range []string{budgetAdmitted, budgetRefused} {
				b.calls.WithLabelValues(c, m, r)
			}
		}
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(b.calls); err != nil {
			return nil, fmt.Errorf("register fleet budget metrics: %w", err)
		}
	}
	return b, nil
}

// Admit returns nil once one AssumeRole call may go to STS, having waited
// for its turn. renewal marks an active user's session: it takes only
// from the whole rate and waits as long as ctx allows. A new session first
// takes from its share, then from the whole rate, waiting at most
// AdmissionWait for both; while it waits for its share it holds nothing
// of the whole rate, so renewals never queue behind new sessions (as in
// sessioncache's own admission). A call that could not be admitted in
// time gets an *OverBudgetError at once, without waiting first; a caller
// whose ctx ends while waiting gets ctx's error and its place is given
// back. Redis being unavailable is never an error: the call goes to the
// local budget instead.
func (b *Budget) Admit(ctx context.Context, renewal bool) error {
	class, maxWait := budgetNew, b.maxWait
	if renewal {
		class, maxWait = budgetActive, -1 // any
	}
	if dl, ok := ctx.Deadline(); ok {
		if left := max(0, time.Until(dl)); maxWait < 0 || left < maxWait {
			maxWait = left
		}
	}
	start := time.Now()
	share := !renewal
	for {
		r, mode, err := b.reserve(ctx, share, maxWait)
		if err != nil {
			return err
		}
		if !r.ok {
			b.calls.WithLabelValues(class, mode, budgetRefused).Inc()
			return &OverBudgetError{RetryAfter: r.wait}
		}
		if r.wait > 0 {
			t := time.NewTimer(r.wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				r.cancel(ctx)
				return ctx.Err()
			}
		}
		if !r.pending {
			b.calls.WithLabelValues(class, mode, budgetAdmitted).Inc()
			return nil
		}
		// The share is ours; now the whole rate, within what is left of
		// the wait.
		share = false
		if maxWait >= 0 {
			maxWait = max(0, maxWait-time.Since(start))
		}
	}
}

// reserve takes one call's place from the shared buckets, or from the
// local ones while the store is degraded (its breaker open: Redis is
// down); mode says which. share asks for the new-session share first. Its
// only error is ctx's.
//
// A single failed call while the store is not degraded (Redis slow under
// a login storm, or the first moments of an outage) is refused with a
// short retry rather than admitted on the local share: the other replicas
// are still spending the shared budget, and both together could exceed
// the account's STS quota. Once the breaker opens every replica is on its
// local share, which together stay within the rate.
func (b *Budget) reserve(ctx context.Context, share bool, maxWait time.Duration) (reservation, string, error) {
	r, err := b.reserveShared(ctx, share, maxWait)
	if err == nil {
		b.degraded.Store(false)
		return r, budgetFleet, nil
	}
	if ctx.Err() != nil {
		return reservation{}, "", ctx.Err()
	}
	if !b.store.Degraded() {
		return reservation{wait: unsureRetry}, budgetFleet, nil
	}
	b.degraded.Store(true)
	return b.local.reserve(b.now(), share, maxWait), budgetLocal, nil
}

// unsureRetry is the Retry-After of a call refused because the shared
// budget could not be asked and Redis is not known to be down.
const unsureRetry = time.Second

// Throttled reports that STS answered Throttling: every replica's budget
// is halved for ThrottleCooldown from now (extended by further
// Throttling), and so is this replica's local budget, in case Redis goes
// away meanwhile.
func (b *Budget) Throttled() {
	b.local.throttled(b.now())
	if b.cooldown <= 0 {
		return
	}
	err := b.store.Do(context.Background(), "sts_budget_throttled", func(ctx context.Context, rdb redis.UniversalClient) error {
		return rdb.Set(ctx, b.keys[2], "1", b.cooldown).Err()
	})
	if err == nil {
		b.lowered.Store(true)
	}
}

// Rate is the current budget in calls per second, as of the latest call:
// the fleet's (halved while the fleet is throttled), or the local share
// while Redis is unavailable.
func (b *Budget) Rate() float64 {
	if b.degraded.Load() {
		return b.local.currentRate(b.now())
	}
	if b.lowered.Load() {
		return b.rate / 2
	}
	return b.rate
}

// reservation is one call's place in a budget: admitted after wait, or,
// if !ok, refused, wait being how long until it could have been. pending:
// only the new-session share was taken, the whole rate's place is still
// to be reserved once wait has passed.
type reservation struct {
	ok      bool
	wait    time.Duration
	pending bool
	cancel  func(ctx context.Context) // gives the place back
}

// reserveShared runs reserveScript for one call.
func (b *Budget) reserveShared(ctx context.Context, share bool, maxWait time.Duration) (reservation, error) {
	shareArg, waitArg := "0", int64(-1)
	if share {
		shareArg = "1"
	}
	if maxWait >= 0 {
		waitArg = maxWait.Microseconds()
	}
	var res []any
	err := b.store.DoWithin(ctx, "sts_budget", budgetCallTimeout, func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		res, err = reserveScript.Run(ctx, rdb, b.keys, append([]any{shareArg, waitArg}, b.args...)...).Slice()
		return err
	})
	if err != nil {
		return reservation{}, err
	}
	// {admitted, wait, lowered, pending} and, when admitted, four TATs.
	if len(res) != 4 && len(res) != 8 {
		return reservation{}, fmt.Errorf("sts budget script answered %d values", len(res))
	}
	ints, tats := make([]int64, 4), make([]any, len(res)-4)
	for i, v := range res {
		var ok bool
		if i < 4 {
			ints[i], ok = v.(int64)
		} else {
			tats[i-4], ok = v.(string)
		}
		if !ok {
			return reservation{}, fmt.Errorf("sts budget script answered %T at %d", v, i)
		}
	}
	r := reservation{ok: ints[0] == 1, wait: time.Duration(ints[1]) * time.Microsecond, pending: ints[3] == 1}
	if r.ok != (len(res) == 8) {
		return reservation{}, fmt.Errorf("sts budget script answered %d values for admitted %v", len(res), r.ok)
	}
	b.lowered.Store(ints[2] == 1)
	if r.ok {
		r.cancel = func(ctx context.Context) {
			// Best effort: if Redis cannot be reached the place stays
			// taken, which errs on the side of the quota.
			_ = b.store.Do(context.WithoutCancel(ctx), "sts_budget_refund", func(ctx context.Context, rdb redis.UniversalClient) error {
				return refundScript.Run(ctx, rdb, b.keys[:2], tats...).Err()
			})
		}
	}
	return r, nil
}

// reserveScript takes one call's place from the fleet's buckets, by GCRA
// (the generic cell rate algorithm) on Redis's clock: a bucket's key holds
// its theoretical arrival time (TAT) in microseconds; a call conforms once
// TAT minus the bucket's tolerance has passed, and moves TAT one interval
// on. A call that would have to wait longer than the caller allows takes
// nothing. With ARGV[1] "1" (a new session) it takes from the new-session
// bucket first: if that means waiting, it takes only that, and the caller
// comes back for the all bucket when its wait is over (pending), as
// sessioncache's admission waits for one bucket and then the other; if
// not, it takes from both at once. It is localBudget.reserve in Lua:
// change both together.
//
// KEYS: the all bucket, the new-session bucket, the Throttling marker.
// ARGV[1] "1" to take from the new-session share first, "0" for the all
// bucket only; ARGV[2] the longest wait the caller accepts, µs, or -1 for
// any; ARGV[3..6] interval and tolerance of the all bucket, then of the
// new-session bucket, µs, at the full rate; ARGV[7..10] the same while the
// marker exists (lowered). Returns {admitted 0|1, wait µs, lowered 0|1,
// pending 0|1} and, when admitted, each bucket's TAT as set and as it was
// before ("" where untouched), for refundScript.
var reserveScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lowered = redis.call('EXISTS', KEYS[3])
local p = 3 + 4 * lowered
local maxWait = tonumber(ARGV[2])
local function tat(key)
  local v = tonumber(redis.call('GET', key))
  if v == nil or v < now then return now end
  return v
end
local function take(key, from, at, interval)
  local v = math.max(from, at) + interval
  local s = string.format('%d', v)
  redis.call('SET', key, s, 'PX', string.format('%d', math.ceil((v - now) / 1000)))
  return s
end
local setNew, newBefore = '', ''
local new, newAt
if ARGV[1] == '1' then
  new = tat(KEYS[2])
  newAt = math.max(new - tonumber(ARGV[p + 3]), now)
  if newAt > now then
    local wait = newAt - now
    if maxWait >= 0 and wait > maxWait then return {0, wait, lowered, 0} end
    setNew = take(KEYS[2], new, newAt, tonumber(ARGV[p + 2]))
    return {1, wait, lowered, 1, '', '', setNew, string.format('%d', new)}
  end
end
local all = tat(KEYS[1])
local at = math.max(all - tonumber(ARGV[p + 1]), now)
local wait = at - now
if maxWait >= 0 and wait > maxWait then return {0, wait, lowered, 0} end
if new then
  setNew = take(KEYS[2], new, now, tonumber(ARGV[p + 2]))
  newBefore = string.format('%d', new)
end
local setAll = take(KEYS[1], all, at, tonumber(ARGV[p]))
return {1, wait, lowered, 0, setAll, string.format('%d', all), setNew, newBefore}
`)

// refundScript gives a reservation's place back: in each bucket it took
// from, TAT returns to what it was before, but only if no call has
// reserved after it (TAT is still what the reservation set); otherwise the
// place stays taken, which only ever errs on the side of the quota.
//
// KEYS: the all and new-session buckets. ARGV: for each, the TAT the
// reservation set ("" if none) and the one before it.
var refundScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local set, before = ARGV[2 * i - 1], ARGV[2 * i]
  if set ~= '' and redis.call('GET', KEYS[i]) == set then
    local b = tonumber(before)
    if b > now then
      redis.call('SET', KEYS[i], before, 'PX', string.format('%d', math.ceil((b - now) / 1000)))
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return 1
`)

// gcra is one bucket of the generic cell rate algorithm: a call conforms
// at t if t >= TAT - tolerance, and moves TAT to max(TAT, t) + interval.
// It admits burst calls at once and one per interval after, like a token
// bucket of that burst and refill.
type gcra struct {
	interval  time.Duration // 1/refill, rounded up to the microsecond
	tolerance time.Duration // (burst-1) intervals
}

// buckets are a budget's two buckets at one rate: every call takes from
// all, a new session also from fresh.
type buckets struct{ all, fresh gcra }

// bucketsAt returns the buckets for perSecond with new sessions limited to
// share of it, at factor of their rate (0.5 after Throttling).
func bucketsAt(perSecond, share, factor float64) buckets {
	return buckets{all: gcraAt(perSecond, factor), fresh: gcraAt(perSecond*share, factor)}
}

// gcraAt sizes a bucket as sessioncache's own admission does: burst plus
// refill per second equal perSecond, so that no one-second window holds
// more calls than perSecond; at a lowered factor the burst stays and the
// refill drops (never to zero, so a lowered budget still moves).
func gcraAt(perSecond, factor float64) gcra {
	burst := math.Max(1, math.Floor(perSecond/10))
	refill := math.Max(perSecond*factor-burst, perSecond*factor/20)
	interval := time.Duration(math.Ceil(1e6/refill)) * time.Microsecond
	return gcra{interval: interval, tolerance: time.Duration(burst-1) * interval}
}

// args are bs as reserveScript takes them, in microseconds.
func (bs buckets) args() []any {
	return []any{bs.all.interval.Microseconds(), bs.all.tolerance.Microseconds(),
		bs.fresh.interval.Microseconds(), bs.fresh.tolerance.Microseconds()}
}

// localBudget is reserveScript's twin in memory, on the replica's clock:
// this replica's own share while Redis is unavailable.
type localBudget struct {
	rate      float64
	cooldown  time.Duration
	full, low buckets

	mu         sync.Mutex
	all, fresh time.Time // theoretical arrival times
	lowUntil   time.Time
}

// reserve is reserveScript for the local buckets at now. maxWait < 0
// means any wait.
func (l *localBudget) reserve(now time.Time, share bool, maxWait time.Duration) reservation {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.full
	if now.Before(l.lowUntil) {
		p = l.low
	}
	var fresh, setFresh time.Time
	if share {
		fresh = later(l.fresh, now)
		if at := fresh.Add(-p.fresh.tolerance); at.After(now) {
			wait := at.Sub(now)
			if maxWait >= 0 && wait > maxWait {
				return reservation{wait: wait}
			}
			setFresh = later(fresh, at).Add(p.fresh.interval)
			l.fresh = setFresh
			return reservation{ok: true, wait: wait, pending: true, cancel: l.undo(time.Time{}, time.Time{}, setFresh, fresh)}
		}
	}
	all := later(l.all, now)
	at := later(all.Add(-p.all.tolerance), now)
	wait := at.Sub(now)
	if maxWait >= 0 && wait > maxWait {
		return reservation{wait: wait}
	}
	if share {
		setFresh = fresh.Add(p.fresh.interval)
		l.fresh = setFresh
	}
	setAll := later(all, at).Add(p.all.interval)
	l.all = setAll
	return reservation{ok: true, wait: wait, cancel: l.undo(setAll, all, setFresh, fresh)}
}

// undo returns a reservation's cancel: each bucket's TAT goes back to
// before unless another reservation has moved it since (as refundScript).
// A zero set means the bucket was not taken from.
func (l *localBudget) undo(setAll, allBefore, setFresh, freshBefore time.Time) func(context.Context) {
	return func(context.Context) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if !setAll.IsZero() && l.all.Equal(setAll) {
			l.all = allBefore
		}
		if !setFresh.IsZero() && l.fresh.Equal(setFresh) {
			l.fresh = freshBefore
		}
	}
}

// throttled halves the local rate for the cool-down from now.
func (l *localBudget) throttled(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lowUntil = now.Add(l.cooldown)
}

func (l *localBudget) currentRate(now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.lowUntil) {
		return l.rate / 2
	}
	return l.rate
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
