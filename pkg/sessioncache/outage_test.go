package sessioncache

// Tests of an STS outage: the failure back-off per session, the breaker
// across sessions, and the retry hints on their refusals. They run in
// testing/synctest bubbles, so back-offs pass without real time.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// outage switches a fakeSTS between working and failing.
type outage struct {
	mu    sync.Mutex
	fault error         // non-nil: every call fails with it
	hold  chan struct{} // non-nil: calls wait for it to close, or their context to end
}

func newOutageSTS() (*fakeSTS, *outage) {
	f, o := &fakeSTS{}, &outage{}
	f.respond = func(ctx context.Context, n int, _ *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
		o.mu.Lock()
		fault, hold := o.fault, o.hold
		o.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if fault != nil {
			return nil, fault
		}
		return f.output(n), nil
	}
	return f, o
}

// set makes calls fail with fault (nil: succeed) and wait for hold (nil:
// answer at once).
func (o *outage) set(fault error, hold chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fault, o.hold = fault, hold
}

var stsDown = &smithy.GenericAPIError{Code: "InternalFailure", Message: "outage"}

// metricValue returns the value of the series name{labels...} (pairs of
// label name and value) gathered from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v gathered", name, labels)
	return 0
}

// wantRetry fails unless err wraps want and carries a retry hint of
// exactly hint.
func wantRetry(t *testing.T, what string, err, want error, hint time.Duration) {
	t.Helper()
	got, ok := RetryAfter(err)
	if !errors.Is(err, want) || !ok || got != hint {
		t.Fatalf("%s: error = %v, RetryAfter = %v, %v; want %v with RetryAfter %v", what, err, got, ok, want, hint)
	}
}

// TestGetOutageBacksOff reproduces the measured outage: five sequential
// requests by one user made 20 AssumeRole calls (4 attempts each). Now the
// first fill makes at most 2 and the other four are answered from memory
// with the same sentinel and a retry hint; once the hint has passed STS is
// asked again, with a back-off of 5s, 10s, 20s, 30s, 30s; after a success,
// a new failure starts again at 5s.
func TestGetOutageBacksOff(t *testing.T) {
	tests := []struct {
		name     string
		fault    error
		hang     bool // STS never answers: the call times out
		want     error
		attempts int // AssumeRole calls per fill
	}{
		{"5xx", stsDown, false, ErrUnavailable, 2},
		{"throttling", &smithy.GenericAPIError{Code: "Throttling"}, false, ErrThrottled, 2},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false, ErrUnavailable, 2},
		// The attempt uses all of STSTimeout, so there is no time to retry.
		{"timeout", nil, true, ErrUnavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f, o := newOutageSTS()
				var hold chan struct{}
				if tt.hang {
					hold = make(chan struct{})
				}
				o.set(tt.fault, hold)
				reg := prometheus.NewRegistry()
				c := mustNew(t, Config{STS: f, Rand: func() float64 { return 0 }, Registerer: reg})
				spec := testSpec("alice")

				calls := 0
				for i, backoff := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second, 30 * time.Second} {
					errs := make([]error, 5)
					for j := range errs {
						_, errs[j] = c.Get(t.Context(), spec)
					}
					calls += tt.attempts
					if got := f.Calls(); got != calls {
						t.Errorf("AssumeRole calls after %d rounds of 5 Gets = %d, want %d", i+1, got, calls)
					}
					for j, err := range errs {
						wantRetry(t, fmt.Sprintf("round %d, Get %d", i+1, j+1), err, tt.want, backoff)
					}
					time.Sleep(backoff - time.Nanosecond)
					_, err := c.Get(t.Context(), spec)
					wantRetry(t, "Get at the end of the back-off", err, tt.want, time.Second)
					time.Sleep(time.Nanosecond)
				}
				if got, want := metricValue(t, reg, "bedrock_gateway_sts_assume_role_suppressed_total", "reason", reasonBackoff), 5*5.0; got != want {
					t.Errorf("suppressed{reason=backoff} = %v, want %v", got, want)
				}

				o.set(nil, nil)
				if _, err := c.Get(t.Context(), spec); err != nil {
					t.Fatalf("Get after STS recovered = %v, want credentials", err)
				}
				// Past the session's expiry, with STS failing again: the
				// back-off starts over.
				time.Sleep(time.Hour)
				o.set(tt.fault, hold)
				_, err := c.Get(t.Context(), spec)
				wantRetry(t, "first failure after a success", err, tt.want, failureBackoff)
				if got := metricValue(t, reg, "bedrock_gateway_sts_breaker_open"); got != 0 {
					t.Errorf("breaker open = %v, want 0: one session's failures do not open it", got)
				}
				if hold != nil {
					close(hold)
				}
			})
		})
	}
}

// TestGetOutageServesCachedSession: a user whose session is stale but
// still valid keeps being served through an outage, and costs STS one
// fill per back-off instead of one per request (the old code made 4
// AssumeRole calls for each of these 179 requests).
func TestGetOutageServesCachedSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, o := newOutageSTS()
		reg := prometheus.NewRegistry()
		c := mustNew(t, Config{STS: f, Rand: func() float64 { return 0 }, Registerer: reg})
		spec := testSpec("alice")
		first, err := c.Get(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		// Stale from 55m (the 5m expiry margin), last served at 59m.
		time.Sleep(56 * time.Minute)
		o.set(stsDown, nil)
		const requests = 179 // one a second until 58m59s
		for i := range requests {
			got, err := c.Get(t.Context(), spec)
			if err != nil || got.AccessKeyID != first.AccessKeyID {
				t.Fatalf("request %d in the outage = %q, %v, want the cached %q", i, got.AccessKeyID, err, first.AccessKeyID)
			}
			time.Sleep(time.Second)
		}
		// Fills at 0s, then after 5, 10, 20, 30, 30, 30, 30 seconds of
		// back-off: 8 fills of 2 attempts.
		if got := f.Calls() - 1; got != 16 {
			t.Errorf("AssumeRole calls in %d requests during the outage = %d, want 16", requests, got)
		}
		if got := metricValue(t, reg, "bedrock_gateway_session_stale_served_total"); got != requests {
			t.Errorf("stale_served = %v, want %d", got, requests)
		}
		// A minute before expiry the session is not served any more; the
		// refusal still carries a hint.
		time.Sleep(time.Second)
		_, err = c.Get(t.Context(), spec)
		if d, ok := RetryAfter(err); !errors.Is(err, ErrUnavailable) || !ok || d < time.Second {
			t.Errorf("Get a minute before expiry = %v (RetryAfter %v, %v), want ErrUnavailable with a hint", err, d, ok)
		}
	})
}

// TestGetBreaker: STS fails for breakerThreshold different users in a
// row, which opens the breaker. Then new users fail at once without an
// STS call, with the time to the next probe as hint; one probe at a time
// reaches STS, 5s after opening and 10s after a failed probe; the probe's
// success closes the breaker. Cached sessions, fresh or stale but valid,
// are served throughout. The old code called STS 4 times for every new
// user.
func TestGetBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, o := newOutageSTS()
		reg := prometheus.NewRegistry()
		c := mustNew(t, Config{STS: f, Rand: func() float64 { return 0 }, Registerer: reg})
		open := func() float64 { return metricValue(t, reg, "bedrock_gateway_sts_breaker_open") }
		n := 0
		newUser := func() tenancy.SessionSpec { n++; return testSpec(fmt.Sprintf("user-%03d", n)) }

		bob := testSpec("bob") // stale but valid when the outage starts
		bobCreds, err := c.Get(t.Context(), bob)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Minute)
		alice := testSpec("alice") // fresh when the outage starts
		aliceCreds, err := c.Get(t.Context(), alice)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(26 * time.Minute)
		cached := func(when string) {
			t.Helper()
			for _, u := range []struct {
				spec tenancy.SessionSpec
				want string
			}{{alice, aliceCreds.AccessKeyID}, {bob, bobCreds.AccessKeyID}} {
				if got, err := c.Get(t.Context(), u.spec); err != nil || got.AccessKeyID != u.want {
					t.Fatalf("%s: cached user %s got %q, %v, want %q", when, u.spec.SessionName, got.AccessKeyID, err, u.want)
				}
			}
		}

		o.set(stsDown, nil)
		base := f.Calls()
		errs := make([]error, breakerThreshold)
		for i := range errs {
			_, errs[i] = c.Get(t.Context(), newUser())
		}
		calls := base + breakerThreshold*maxAttempts
		if got := f.Calls(); got != calls {
			t.Errorf("AssumeRole calls = %d, want %d", got, calls)
		}
		for _, err := range errs {
			wantRetry(t, "new user as STS fails", err, ErrUnavailable, failureBackoff)
		}
		if got := open(); got != 1 {
			t.Fatalf("breaker open = %v after %d failed fills, want 1", got, breakerThreshold)
		}

		// Open: no new user reaches STS; cached users are served.
		errs = make([]error, 100)
		for i := range errs {
			_, errs[i] = c.Get(t.Context(), newUser())
		}
		cached("breaker open")
		if got := f.Calls(); got != calls {
			t.Fatalf("AssumeRole calls with the breaker open = %d, want %d (no new call)", got, calls)
		}
		for _, err := range errs {
			wantRetry(t, "new user, breaker open", err, ErrUnavailable, 5*time.Second)
			if !errors.Is(err, errBreakerOpen) {
				t.Fatalf("error = %v, want errBreakerOpen", err)
			}
		}
		if got := metricValue(t, reg, "bedrock_gateway_sts_assume_role_suppressed_total", "reason", reasonBreaker); got != 101 {
			t.Errorf("suppressed{reason=breaker} = %v, want 101 (100 new users and bob's renewal)", got)
		}

		// 5s after opening: one probe, while everyone else is refused.
		time.Sleep(5 * time.Second)
		hold := make(chan struct{})
		o.set(stsDown, hold)
		probe := make(chan error, 1)
		go func() {
			_, err := c.Get(t.Context(), newUser())
			probe <- err
		}()
		synctest.Wait()
		for range 10 {
			_, err := c.Get(t.Context(), newUser())
			wantRetry(t, "new user during the probe", err, ErrUnavailable, 10*time.Second)
		}
		cached("during the probe")
		if got := f.Calls(); got != calls+1 {
			t.Fatalf("AssumeRole calls during the probe = %d, want %d (the probe only)", got, calls+1)
		}
		close(hold)
		wantRetry(t, "failed probe", <-probe, ErrUnavailable, failureBackoff)
		calls++ // a probe makes one attempt
		if got := open(); got != 1 {
			t.Fatalf("breaker open after a failed probe = %v, want 1", got)
		}

		// The next probe is 10s after the failed one.
		time.Sleep(10*time.Second - time.Nanosecond)
		_, err = c.Get(t.Context(), newUser())
		wantRetry(t, "new user before the second probe", err, ErrUnavailable, time.Second)
		time.Sleep(time.Nanosecond)
		o.set(nil, nil)
		if _, err := c.Get(t.Context(), newUser()); err != nil {
			t.Fatalf("probe after STS recovered = %v, want credentials", err)
		}
		calls++
		if got := open(); got != 0 {
			t.Fatalf("breaker open after a successful probe = %v, want 0", got)
		}
		for range 5 {
			if _, err := c.Get(t.Context(), newUser()); err != nil {
				t.Fatalf("new user after the breaker closed = %v, want credentials", err)
			}
		}
		if got := f.Calls(); got != calls+5 {
			t.Errorf("AssumeRole calls = %d, want %d", got, calls+5)
		}
	})
}

// TestGetBreakerHoldsBackgroundRenewals: while the breaker is open,
// active users' sessions due for renewal keep serving without a renewal
// storm: no background renewal calls STS. The old code made 4 calls for
// each of them.
func TestGetBreakerHoldsBackgroundRenewals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, o := newOutageSTS()
		reg := prometheus.NewRegistry()
		c := mustNew(t, Config{STS: f, Rand: func() float64 { return 0 }, Registerer: reg})
		defer c.Close()
		const active = 20
		creds := make([]string, active)
		for i := range active {
			cr, err := c.Get(t.Context(), testSpec(fmt.Sprintf("active-%02d", i)))
			if err != nil {
				t.Fatal(err)
			}
			creds[i] = cr.AccessKeyID
		}
		// Renewal due at 50m (DefaultRefreshBefore, 5m, before staleness
		// at 55m; no jitter).
		time.Sleep(51 * time.Minute)
		o.set(stsDown, nil)
		for i := range breakerThreshold {
			if _, err := c.Get(t.Context(), testSpec(fmt.Sprintf("new-%02d", i))); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("new user: %v, want ErrUnavailable", err)
			}
		}
		if got := metricValue(t, reg, "bedrock_gateway_sts_breaker_open"); got != 1 {
			t.Fatalf("breaker open = %v, want 1", got)
		}
		calls := f.Calls()
		for i := range active {
			got, err := c.Get(t.Context(), testSpec(fmt.Sprintf("active-%02d", i)))
			if err != nil || got.AccessKeyID != creds[i] {
				t.Fatalf("active user %d = %q, %v, want %q", i, got.AccessKeyID, err, creds[i])
			}
		}
		synctest.Wait() // the background renewals have ended
		if got := f.Calls(); got != calls {
			t.Errorf("AssumeRole calls by %d background renewals with the breaker open = %d, want 0", active, got-calls)
		}
		if got := metricValue(t, reg, "bedrock_gateway_session_refreshes_total", "outcome", outcomeError); got != active {
			t.Errorf("failed renewals = %v, want %d", got, active)
		}
	})
}

// TestGetRefusalsDoNotOpenBreaker: AccessDenied is an answer from STS. It
// is remembered for NegativeTTL as before, carries no retry hint, and
// neither counts towards the breaker nor lets a run of failures around it
// open it.
func TestGetRefusalsDoNotOpenBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, o := newOutageSTS()
		reg := prometheus.NewRegistry()
		c := mustNew(t, Config{STS: f, Rand: func() float64 { return 0 }, Registerer: reg})
		denied := &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized"}
		n := 0
		get := func(fault, want error) {
			t.Helper()
			o.set(fault, nil)
			n++
			_, err := c.Get(t.Context(), testSpec(fmt.Sprintf("user-%03d", n)))
			if !errors.Is(err, want) {
				t.Fatalf("Get() error = %v, want %v", err, want)
			}
		}
		for range 3 * breakerThreshold {
			get(denied, ErrAccessDenied)
		}
		if got := f.Calls(); got != 3*breakerThreshold {
			t.Errorf("AssumeRole calls for %d refused users = %d, want one each", 3*breakerThreshold, got)
		}
		for range breakerThreshold - 1 {
			get(stsDown, ErrUnavailable)
		}
		get(denied, ErrAccessDenied)
		for range breakerThreshold - 1 {
			get(stsDown, ErrUnavailable)
		}
		if got := metricValue(t, reg, "bedrock_gateway_sts_breaker_open"); got != 0 {
			t.Errorf("breaker open = %v, want 0", got)
		}
		_, err := c.Get(t.Context(), testSpec("user-001"))
		if d, ok := RetryAfter(err); !errors.Is(err, ErrAccessDenied) || ok {
			t.Errorf("remembered refusal = %v, RetryAfter %v, %v; want ErrAccessDenied without a hint", err, d, ok)
		}
	})
}

// TestBreakerSchedule drives the breaker directly: it opens at the
// threshold, admits one probe at a time at 5s, 10s, 20s, 30s, 30s
// intervals, ignores fills that did not reach STS, and closes on any
// answer.
func TestBreakerSchedule(t *testing.T) {
	var state []bool
	b := &breaker{setOpen: func(open bool) { state = append(state, open) }}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	for range breakerThreshold - 1 {
		b.done(t0, false, stsFailed)
	}
	b.done(t0, false, stsAnswered) // resets the count
	for i := range breakerThreshold {
		if ok, _, _ := b.admit(t0); !ok {
			t.Fatalf("admit before failure %d refused, want admitted", i+1)
		}
		b.done(t0, false, stsFailed)
	}
	if ok, probe, wait := b.admit(t0); ok || probe || wait != 5*time.Second {
		t.Fatalf("admit just after opening = %v, %v, %v, want refused for 5s", ok, probe, wait)
	}
	b.done(t0, false, stsFailed) // a fill from before the opening: no effect

	now := t0
	for _, interval := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second, 30 * time.Second} {
		if ok, _, wait := b.admit(now.Add(interval - time.Nanosecond)); ok || wait != time.Nanosecond {
			t.Fatalf("admit 1ns before a probe is due = %v, wait %v, want refused for 1ns", ok, wait)
		}
		now = now.Add(interval)
		if ok, probe, _ := b.admit(now); !ok || !probe {
			t.Fatalf("admit when a probe is due (%v after the last) = %v, %v, want the probe", interval, ok, probe)
		}
		if ok, _, _ := b.admit(now); ok {
			t.Fatalf("second admit during a probe = admitted, want refused")
		}
		b.done(now, true, stsFailed)
	}
	now = now.Add(30 * time.Second)
	if ok, probe, _ := b.admit(now); !ok || !probe {
		t.Fatalf("admit = %v, %v, want a probe", ok, probe)
	}
	b.done(now, true, stsNotCalled) // e.g. refused by admission: the schedule stands
	if ok, _, wait := b.admit(now); ok || wait != 30*time.Second {
		t.Fatalf("admit after a probe that did not reach STS = %v, wait %v, want refused for 30s", ok, wait)
	}
	now = now.Add(30 * time.Second)
	if ok, probe, _ := b.admit(now); !ok || !probe {
		t.Fatalf("admit = %v, %v, want a probe", ok, probe)
	}
	b.done(now, true, stsAnswered) // AccessDenied would do: STS answered
	if ok, probe, _ := b.admit(now); !ok || probe {
		t.Fatalf("admit after the breaker closed = %v, %v, want admitted, not a probe", ok, probe)
	}
	if want := []bool{true, false}; fmt.Sprint(state) != fmt.Sprint(want) {
		t.Errorf("breaker state changes = %v, want %v", state, want)
	}
}
