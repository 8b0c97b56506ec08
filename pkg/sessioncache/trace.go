package sessioncache

import (
	"context"
	"time"
)

// Trace receives what one Get does on a miss, for request tracing (the
// proxy turns it into spans); a hit calls nothing, so a Get that reports
// no Miss was answered from the cache. Set it with WithTrace on the
// context passed to Get. Every field is optional.
//
// The STS callbacks come from the fill that Get started, on that fill's
// goroutine, one at a time and in order; a Get that joins a fill another
// caller started sees Miss only. A fill outlives a caller that gives up,
// so they may come after Get has returned. They must not block, and they
// are never given credentials.
type Trace struct {
	// Miss: no fresh session was cached. stale says a session past its
	// renewal time is kept, to serve while STS cannot be reached.
	Miss func(stale bool)
	// AssumeRoleStart: an AssumeRole attempt (0, then 1 for the retry)
	// begins with its wait for the STS admission budget; active is its
	// class (a renewal of an active user's session, ahead of new users).
	AssumeRoleStart func(attempt int, active bool)
	// Admitted: the attempt's admission wait ended after wait; err, if
	// not nil, is why it was not admitted, and the attempt ends there
	// without calling STS (no AssumeRoleDone).
	Admitted func(wait time.Duration, err error)
	// AssumeRoleDone: STS answered the attempt, or it failed on the way
	// (err; nil on success).
	AssumeRoleDone func(err error)
}

type traceKey struct{}

// WithTrace returns ctx carrying t, for Get.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// traceFrom returns the Trace in ctx, or nil. Its methods are no-ops on
// nil.
func traceFrom(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

func (t *Trace) miss(stale bool) {
	if t != nil && t.Miss != nil {
		t.Miss(stale)
	}
}

func (t *Trace) assumeRoleStart(attempt int, cls class) {
	if t != nil && t.AssumeRoleStart != nil {
		t.AssumeRoleStart(attempt, cls == classActive)
	}
}

func (t *Trace) admitted(wait time.Duration, err error) {
	if t != nil && t.Admitted != nil {
		t.Admitted(wait, err)
	}
}

func (t *Trace) assumeRoleDone(err error) {
	if t != nil && t.AssumeRoleDone != nil {
		t.AssumeRoleDone(err)
	}
}
