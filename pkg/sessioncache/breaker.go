package sessioncache

import (
	"errors"
	"sync"
	"time"
)

// Failure back-off: after an AssumeRole fill fails with ErrThrottled or
// ErrUnavailable, the failure is answered from memory for
// failureBackoff, doubled after each further consecutive failure up to
// maxFailureBackoff (5s, 10s, 20s, 30s, 30s, ...). The same schedule spaces
// the breaker's probes. An outage then costs STS a few calls per session
// per half minute instead of a few per request, and every refused caller
// is told when to come back (Retry-After).
const (
	failureBackoff    = 5 * time.Second
	maxFailureBackoff = 30 * time.Second
)

// backoffAfter is the back-off after n consecutive failures, n >= 1.
func backoffAfter(n int) time.Duration {
	d := failureBackoff
	for i := 1; i < n && d < maxFailureBackoff; i++ {
		d *= 2
	}
	return min(d, maxFailureBackoff)
}

// breakerThreshold is how many fills in a row, for any sessions, must fail
// with ErrThrottled or ErrUnavailable before the breaker opens. Any answer
// from STS in between (a session, or a refusal such as AccessDenied)
// starts the count again. Each fill has already had its retry, so ten in a
// row means STS is down or throttling the account, not one unlucky call:
// with half of all calls failing, ten failed fills in a row happen about
// once in a million.
const breakerThreshold = 10

// errBreakerOpen is wrapped (with ErrUnavailable) by fills refused while
// the breaker is open.
var errBreakerOpen = errors.New("not called: sts is failing for many sessions")

// breaker keeps an STS outage from turning into a storm of AssumeRole
// calls that cannot succeed: once breakerThreshold fills in a row have
// failed, new fills (request path and background renewals alike) fail at
// once, except one probe at a time, the first fill after each probe
// interval. The probe is a real fill for whoever asked; any answer from STS
// closes the breaker, a failure doubles the interval (backoffAfter).
// Cached sessions are not affected: the breaker only decides whether a
// fill may call STS.
type breaker struct {
	setOpen func(bool) // reports the state, for metrics

	mu        sync.Mutex
	failures  int       // consecutive failed fills while closed
	open      bool      // fills are refused, except probes
	probes    int       // failed probes since opening
	probing   bool      // a probe is in flight
	nextProbe time.Time // while open: when the next probe may start
}

// fillResult is what a fill learned about STS, for the breaker.
type fillResult int

const (
	stsAnswered  fillResult = iota // STS answered: a session, or a refusal
	stsFailed                      // ErrThrottled or ErrUnavailable from STS
	stsNotCalled                   // the fill ended without STS's answer (admission, Close)
)

// admit reports whether a fill may call STS at now. probe is true when
// this fill is the breaker's probe; it must then report with done. When
// refused, wait is how long until the next probe may start.
func (b *breaker) admit(now time.Time) (ok, probe bool, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true, false, 0
	}
	if !b.probing && !now.Before(b.nextProbe) {
		b.probing = true
		// Refusals while the probe runs point where the next probe
		// would start if this one failed now.
		b.nextProbe = now.Add(backoffAfter(b.probes + 2))
		return true, true, 0
	}
	return false, false, b.nextProbe.Sub(now)
}

// done records the result of a fill that admit let through.
func (b *breaker) done(now time.Time, probe bool, r fillResult) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch r {
	case stsAnswered:
		b.failures = 0
		if b.open {
			b.open, b.probes = false, 0
			b.setOpen(false)
		}
	case stsFailed:
		switch {
		case b.open && probe:
			b.probes++
			b.nextProbe = now.Add(backoffAfter(b.probes + 1))
		case b.open:
			// A fill that started before the breaker opened; the
			// probe schedule stands.
		default:
			b.failures++
			if b.failures >= breakerThreshold {
				b.open, b.probes, b.failures = true, 0, 0
				b.nextProbe = now.Add(backoffAfter(1))
				b.setOpen(true)
			}
		}
	case stsNotCalled:
		// Nothing learned; a probe that did not reach STS leaves the
		// next one to its schedule.
	}
}
