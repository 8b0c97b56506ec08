package sessioncache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// class is who an AssumeRole is for. Sessions of active users (a
// background refresh, or a renewal of a session that is still in the cache)
// go ahead of new users when STS tokens are short: a new user can wait a
// second, an active user's requests should never wait on STS at all.
type class int

const (
	classNew    class = iota // no usable session cached: a first call or a lapsed user
	classActive              // a refresh or renewal of a cached session
)

func (c class) String() string {
	if c == classActive {
		return "active"
	}
	return "new"
}

var classes = []class{classNew, classActive}

// ErrOverloaded: the gateway's own STS budget could not admit a new session
// within Config.AdmissionWait. Errors wrapping it are *OverloadedError,
// which says when to retry.
var ErrOverloaded = errors.New("sts admission budget exhausted")

// OverloadedError is returned when a new session could not be admitted in
// time. The proxy answers 503 with Retry-After.
type OverloadedError struct {
	// RetryAfter is how long until the budget could admit the call.
	RetryAfter time.Duration
}

func (e *OverloadedError) Error() string {
	return fmt.Sprintf("%v: retry after %v", ErrOverloaded, e.RetryAfter)
}

// Is makes errors.Is(err, ErrOverloaded) true.
func (e *OverloadedError) Is(target error) bool { return target == ErrOverloaded }

// RetryAfterHint is for RetryAfter.
func (e *OverloadedError) RetryAfterHint() time.Duration { return e.RetryAfter }

// admission keeps the process's AssumeRole calls within the STS quota: 600
// requests per second per account and Region, shared by every STS call of
// the account (IAM User Guide, "STS request quotas"), so the gateway must
// leave room for everyone else.
//
// Two token buckets: every call takes a token from all, whose refill rate
// plus burst equal the configured rate, so no one-second window ever holds
// more calls than the rate; new sessions also take one from fresh, which
// holds a share of the rate, so the rest is always available to active
// users' refreshes. Waits are FIFO reservations, not polling.
type admission struct {
	now     func() time.Time
	maxWait time.Duration // longest a new session waits for tokens

	mu         sync.Mutex
	all        *rate.Limiter
	fresh      *rate.Limiter
	allRate    float64 // configured calls per second, burst included
	freshRate  float64
	cooldown   time.Duration
	lowered    bool
	restoreAt  time.Time
	throttleFn func(perSecond float64) // reports the current budget, for metrics

	// budget, if set (Config.Budget), admits every call instead of the
	// buckets above: the fleet's budget, shared by all replicas.
	budget Budget
}

// bucket returns refill rate and burst whose sum is perSecond: a bucket
// full at the start of a window admits burst at once and refill per second
// after, so burst + refill is the most any one-second window can see.
func bucket(perSecond float64) (rate.Limit, int) {
	burst := int(math.Max(1, math.Floor(perSecond/10)))
	return refill(perSecond, burst), burst
}

// refill is the refill rate that, with burst, admits perSecond in any
// one-second window; never zero, so a lowered budget still moves.
func refill(perSecond float64, burst int) rate.Limit {
	return rate.Limit(math.Max(perSecond-float64(burst), perSecond/20))
}

func newAdmission(perSecond, newShare float64, maxWait, cooldown time.Duration, now func() time.Time) *admission {
	allRefill, allBurst := bucket(perSecond)
	freshRefill, freshBurst := bucket(perSecond * newShare)
	return &admission{
		now:       now,
		maxWait:   maxWait,
		all:       rate.NewLimiter(allRefill, allBurst),
		fresh:     rate.NewLimiter(freshRefill, freshBurst),
		allRate:   perSecond,
		freshRate: perSecond * newShare,
		cooldown:  cooldown,
	}
}

// wait blocks until the call may go to STS, ctx ends, or (for a new
// session) maxWait would be exceeded, in which case it returns an
// *OverloadedError at once rather than sleeping first.
func (a *admission) wait(ctx context.Context, c class) error {
	if a.budget != nil {
		return a.waitBudget(ctx, c)
	}
	start := a.now()
	a.restoreIfDue(start)
	deadline := time.Time{}
	if c == classNew {
		deadline = start.Add(a.maxWait)
		if err := a.reserve(ctx, a.fresh, deadline); err != nil {
			return err
		}
	}
	return a.reserve(ctx, a.all, deadline)
}

// reserve takes one token from lim, sleeping for it if needed. A zero
// deadline means only ctx bounds the wait.
func (a *admission) reserve(ctx context.Context, lim *rate.Limiter, deadline time.Time) error {
	now := a.now()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return &OverloadedError{RetryAfter: time.Second}
	}
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	if !deadline.IsZero() && now.Add(d).After(deadline) {
		r.CancelAt(now)
		return &OverloadedError{RetryAfter: d}
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
		r.CancelAt(now)
		return &OverloadedError{RetryAfter: d}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.CancelAt(a.now())
		return ctx.Err()
	}
}

// throttled halves the admission rate for the cooldown after STS answered
// Throttling: the quota is shared with other replicas and other STS users
// of the account, and all of them must back off together. Further
// throttling during the cooldown extends it.
func (a *admission) throttled() {
	if a.budget != nil {
		a.throttledBudget()
		return
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.restoreAt = now.Add(a.cooldown)
	if a.lowered {
		return
	}
	a.lowered = true
	a.setRates(now, 0.5)
}

// restoreIfDue puts the rate back once the cooldown has passed.
func (a *admission) restoreIfDue(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.lowered || now.Before(a.restoreAt) {
		return
	}
	a.lowered = false
	a.setRates(now, 1)
}

// setRates scales both budgets to factor of their configured rates. The
// caller holds a.mu.
func (a *admission) setRates(now time.Time, factor float64) {
	a.all.SetLimitAt(now, refill(a.allRate*factor, a.all.Burst()))
	a.fresh.SetLimitAt(now, refill(a.freshRate*factor, a.fresh.Burst()))
	if a.throttleFn != nil {
		a.throttleFn(a.allRate * factor)
	}
}
