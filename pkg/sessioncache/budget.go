package sessioncache

import (
	"context"
)

// Budget is an STS admission budget kept outside the process: the fleet's,
// shared through Redis by every replica (pkg/fleet's *Budget), so that N
// replicas together stay within sts.rate rather than N times it.
// Config.Budget selects it; without one, each process keeps its own (Rate,
// NewSessionShare, AdmissionWait, ThrottleCooldown). It is declared here,
// by its user: pkg/fleet does not import this package.
type Budget interface {
	// Admit returns nil once one AssumeRole call may go to STS, having
	// waited for its turn. renewal marks an active user's session: it may
	// use the whole budget and waits as long as ctx allows. A new session
	// may use only its share and waits at most the budget's admission
	// wait. A call that cannot be admitted in time gets, at once, an error
	// with a RetryAfterHint() time.Duration method (see RetryAfter), which
	// the cache returns as an *OverloadedError; a caller whose ctx ends
	// gets ctx's error. A budget that cannot reach its store must fall
	// back to a local one rather than fail.
	Admit(ctx context.Context, renewal bool) error
	// Throttled reports that STS answered Throttling: the budget is
	// lowered for a while, for every process that shares it.
	Throttled()
	// Rate is the budget's current rate, calls per second, for
	// bedrock_gateway_sts_admission_rate.
	Rate() float64
}

// waitBudget is wait for an admission whose calls go to a Budget: the
// refusal becomes an *OverloadedError, as from the process's own buckets,
// and the rate gauge follows the budget's.
func (a *admission) waitBudget(ctx context.Context, c class) error {
	err := a.budget.Admit(ctx, c == classActive)
	a.reportRate()
	if err == nil {
		return nil
	}
	if d, ok := RetryAfter(err); ok {
		return &OverloadedError{RetryAfter: d}
	}
	return err
}

// throttledBudget is throttled for an admission whose calls go to a
// Budget.
func (a *admission) throttledBudget() {
	a.budget.Throttled()
	a.reportRate()
}

// rate returns the current admission rate, calls per second.
func (a *admission) rate() float64 {
	if a.budget != nil {
		return a.budget.Rate()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lowered {
		return a.allRate / 2
	}
	return a.allRate
}

func (a *admission) reportRate() {
	if a.throttleFn != nil {
		a.throttleFn(a.budget.Rate())
	}
}
