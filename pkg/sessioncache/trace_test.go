package sessioncache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
)

// traceLog records a Trace's calls as lines.
type traceLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *traceLog) add(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

func (l *traceLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines
	l.lines = nil
	return lines
}

// errName is the sentinel an error wraps, for the log.
func errName(err error) string {
	for _, s := range []error{ErrThrottled, ErrUnavailable, ErrAccessDenied, ErrInvalidSession, ErrOverloaded} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	if err == nil {
		return "ok"
	}
	return "other"
}

func (l *traceLog) trace() *Trace {
	return &Trace{
		Miss:            func(stale bool) { l.add("miss stale=%v", stale) },
		AssumeRoleStart: func(attempt int, active bool) { l.add("start %d active=%v", attempt, active) },
		Admitted:        func(wait time.Duration, err error) { l.add("admitted wait=%v %s", wait, errName(err)) },
		AssumeRoleDone:  func(err error) { l.add("done %s", errName(err)) },
	}
}

// TestTrace: a Get reports its miss and each AssumeRole attempt with its
// admission wait to the Trace in its context; a hit reports nothing.
func TestTrace(t *testing.T) {
	throttling := &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}
	tests := []struct {
		name string
		// respond answers STS call n (from 1); nil: credentials.
		respond func(n int) error
		// before runs Gets before the traced one (untraced).
		before []string
		// advance is how far the clock moves before the traced Get.
		advance time.Duration
		user    string
		// roomy gives the budget room for a retry after throttling
		// (which halves it); otherwise a second new user is refused.
		roomy bool
		want  []string
	}{
		{name: "first call: miss, one admitted attempt", user: "alice", want: []string{
			"miss stale=false", "start 0 active=false", "admitted wait=0s ok", "done ok"}},
		{name: "hit: nothing", before: []string{"alice"}, user: "alice", want: nil},
		{name: "throttled, then answered: two attempts", user: "alice", roomy: true,
			respond: func(n int) error {
				if n == 1 {
					return throttling
				}
				return nil
			},
			want: []string{"miss stale=false",
				"start 0 active=false", "admitted wait=0s ok", "done " + ErrThrottled.Error(),
				"start 1 active=false", "admitted wait=0s ok", "done ok"}},
		{name: "refused by STS", user: "alice",
			respond: func(int) error { return &smithy.GenericAPIError{Code: "AccessDenied", Message: "no"} },
			want:    []string{"miss stale=false", "start 0 active=false", "admitted wait=0s ok", "done " + ErrAccessDenied.Error()}},
		{name: "not admitted: STS not called", before: []string{"alice"}, user: "bob", want: []string{
			"miss stale=false", "start 0 active=false", "admitted wait=0s " + ErrOverloaded.Error()}},
		{name: "stale session renewed as an active user's", before: []string{"alice"}, advance: 56 * time.Minute, user: "alice",
			want: []string{"miss stale=true", "start 0 active=true", "admitted wait=0s ok", "done ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := fakeclock.New()
			f := &fakeSTS{now: clock.Now}
			f.respond = func(_ context.Context, n int, _ *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
				if tt.respond != nil {
					if err := tt.respond(n); err != nil {
						return nil, err
					}
				}
				return f.output(n), nil
			}
			// One new session per second and no wait: a second new user
			// is refused at once.
			cfg := Config{STS: f, Now: clock.Now, Rate: 2, NewSessionShare: 0.5,
				AdmissionWait: time.Millisecond, Rand: func() float64 { return 0 }}
			if tt.roomy {
				cfg.Rate, cfg.NewSessionShare = 100, 1
			}
			c := mustNew(t, cfg)
			t.Cleanup(c.Close)
			for _, u := range tt.before {
				if _, err := c.Get(t.Context(), testSpec(u)); err != nil {
					t.Fatalf("Get(%q) before = %v", u, err)
				}
			}
			clock.Advance(tt.advance)
			var log traceLog
			creds, _ := c.Get(WithTrace(t.Context(), log.trace()), testSpec(tt.user))
			got := log.take()
			if !cmp.Equal(got, tt.want) {
				t.Errorf("trace (-got +want):\n%s", cmp.Diff(got, tt.want))
			}
			for _, line := range got {
				if creds.SecretAccessKey != "" && strings.Contains(line, creds.SecretAccessKey) {
					t.Errorf("trace line %q holds the secret key", line)
				}
			}
		})
	}
}

// TestTraceNone: a Get without a Trace, or with an empty one, works as
// ever.
func TestTraceNone(t *testing.T) {
	c := mustNew(t, Config{STS: &fakeSTS{}})
	t.Cleanup(c.Close)
	for _, ctx := range []context.Context{t.Context(), WithTrace(t.Context(), &Trace{}), WithTrace(t.Context(), nil)} {
		if _, err := c.Get(ctx, testSpec("alice")); err != nil {
			t.Fatalf("Get() = %v", err)
		}
		c.lru.Purge()
	}
}
