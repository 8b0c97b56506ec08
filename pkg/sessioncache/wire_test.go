package sessioncache

// Wire-level tests: the real aws-sdk-go-v2 STS client talks HTTP to the fake
// STS (internal/fakeaws) over an in-memory network (internal/memnet), inside
// testing/synctest bubbles, so that an hour of session life takes no real
// time and nothing sleeps.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/internal/memnet"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

const (
	wireGatewayRole = "arn:aws:iam::123456789012:role/BedrockGatewayRole"
	wireInvokeRole  = "arn:aws:iam::123456789012:role/BedrockInvocationRole"
)

// wire is a cache whose STS is the fake, reached over memnet. Call it
// inside a synctest bubble; cleanup runs at the end of the bubble.
type wire struct {
	fake  *fakeaws.Server
	cache *Cache
	reg   *prometheus.Registry
}

func newWire(t *testing.T, opts fakeaws.Options, cfg Config) *wire {
	t.Helper()
	if opts.Roles == nil {
		opts.Roles = []string{wireInvokeRole}
	}
	w := &wire{fake: fakeaws.New(opts), reg: prometheus.NewRegistry()}
	l := memnet.Listen()
	stop := memnet.Serve(l, w.fake.STSHandler())
	tr := l.Transport()
	root := w.fake.RootCredentials(wireGatewayRole)
	client := sts.New(sts.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("https://sts.us-east-1.amazonaws.com"),
		HTTPClient:   &http.Client{Transport: tr},
		Credentials:  credentials.NewStaticCredentialsProvider(root.AccessKeyID, root.SecretAccessKey, ""),
	})
	cfg.STS = client
	cfg.Registerer = w.reg
	if cfg.Rand == nil {
		cfg.Rand = func() float64 { return 0.5 }
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.cache = c
	t.Cleanup(func() {
		c.Close()
		tr.CloseIdleConnections()
		stop()
	})
	return w
}

func wireSpec(user string) tenancy.SessionSpec {
	return tenancy.SessionSpec{
		RoleARN:     wireInvokeRole,
		SessionName: user,
		Tags:        []tenancy.Tag{{Key: "team", Value: "data-science"}},
		Duration:    time.Hour,
	}
}

// TestWireColdUserStampede: 1,000 concurrent first requests by one user
// make exactly one AssumeRole; 100 callers that give up while it is in
// flight get their context error and disturb nobody.
func TestWireColdUserStampede(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		w := newWire(t, fakeaws.Options{}, Config{})
		w.fake.FailAssumeRole(func(ctx context.Context, _ fakeaws.AssumeRoleCall) *fakeaws.Fault {
			select { // hold STS until every caller is waiting
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})
		const n, quitters = 1000, 100
		type result struct {
			creds aws.Credentials
			err   error
		}
		results := make([]result, n)
		cancels := make([]context.CancelFunc, n)
		var wg sync.WaitGroup
		for i := range n {
			ctx, cancel := context.WithCancel(t.Context())
			cancels[i] = cancel
			wg.Go(func() {
				c, err := w.cache.Get(ctx, wireSpec("alice@acme.org"))
				results[i] = result{c, err}
			})
		}
		synctest.Wait() // all 1,000 are waiting on the one flight
		for i := range quitters {
			cancels[i]()
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		for _, c := range cancels {
			c()
		}

		calls := w.fake.AssumeRoleCalls()
		if len(calls) != 1 {
			t.Fatalf("AssumeRole calls = %d, want 1", len(calls))
		}
		for i, r := range results {
			if i < quitters {
				if !errors.Is(r.err, context.Canceled) {
					t.Errorf("caller %d cancelled: err = %v, want context.Canceled", i, r.err)
				}
				continue
			}
			if r.err != nil || r.creds.AccessKeyID != calls[0].AccessKeyID {
				t.Fatalf("caller %d: %q, %v, want the one session %q", i, r.creds.AccessKeyID, r.err, calls[0].AccessKeyID)
			}
		}
		if got := w.cache.Len(); got != 1 {
			t.Errorf("cached sessions = %d, want 1", got)
		}
	})
}

// TestWireLoginStorm: 10,000 new users at once. STS never sees more than
// the configured rate in any one-second window, and every user is served
// or refused with ErrOverloaded by the admission deadline.
func TestWireLoginStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const users, rate, wait = 10000, 40.0, 2 * time.Second
		w := newWire(t, fakeaws.Options{}, Config{Rate: rate, AdmissionWait: wait, Size: users})
		start := time.Now()
		errs := make([]error, users)
		took := make([]time.Duration, users)
		var wg sync.WaitGroup
		for i := range users {
			wg.Go(func() {
				_, errs[i] = w.cache.Get(t.Context(), wireSpec(fmt.Sprintf("user-%05d", i)))
				took[i] = time.Since(start)
			})
		}
		wg.Wait()

		served, refused := 0, 0
		for i, err := range errs {
			var oe *OverloadedError
			switch {
			case err == nil:
				served++
			case errors.As(err, &oe) && oe.RetryAfter > 0:
				refused++
			default:
				t.Fatalf("user %d: err = %v, want served or *OverloadedError", i, err)
			}
			if took[i] > wait {
				t.Fatalf("user %d answered after %v, past the %v admission wait", i, took[i], wait)
			}
		}
		calls := w.fake.AssumeRoleCalls()
		if len(calls) != served {
			t.Errorf("AssumeRole calls = %d, users served = %d", len(calls), served)
		}
		times := make([]time.Time, len(calls))
		for i, c := range calls {
			times[i] = c.Time
		}
		slices.SortFunc(times, time.Time.Compare)
		worst := 0
		for i := range times {
			j, _ := slices.BinarySearchFunc(times, times[i].Add(time.Second), time.Time.Compare)
			worst = max(worst, j-i)
		}
		if worst > int(rate) {
			t.Errorf("STS saw %d calls in one second, budget %v", worst, rate)
		}
		// New users may use 75% of the budget: 3 at once (a tenth of 30,
		// the new-session bucket's burst) and 27/s, over the 2 s wait.
		if served < 50 {
			t.Errorf("only %d users served in %v at %v/s", served, wait, rate)
		}
		if got := testutil.ToFloat64(w.cache.m.rejections.WithLabelValues("new")); int(got) != refused {
			t.Errorf("rejections metric = %v, want %d", got, refused)
		}
		t.Logf("served %d, refused %d, busiest second %d calls (budget %v)", served, refused, worst, rate)
	})
}

// TestWireActiveUserThreeHours: a user making a request every minute for
// three hours of fake time is served from the cache every time after the
// first: renewals happen in the background before the session goes stale.
func TestWireActiveUserThreeHours(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire(t, fakeaws.Options{}, Config{})
		spec := wireSpec("alice@acme.org")
		for minute := range 180 {
			creds, err := w.cache.Get(t.Context(), spec)
			if err != nil {
				t.Fatalf("minute %d: %v", minute, err)
			}
			if !time.Now().Before(creds.Expires.Add(-DefaultExpiryMargin)) {
				t.Fatalf("minute %d: served credentials expiring at %v", minute, creds.Expires)
			}
			synctest.Wait() // let a background refresh finish
			time.Sleep(time.Minute)
		}
		// With the defaults (1h sessions, 5m margin, refresh 5m + jitter
		// up to 5m before staleness; jitter fixed at half here) a session
		// is renewed 47.5 minutes after it is issued, the first request
		// from then: at minutes 0, 48, 96 and 144; the fourth session
		// (stale at 199) covers the rest. Three one-hour sessions cannot
		// cover three hours without a gap, so four is the least; renewal
		// at 45..50 minutes (any jitter) gives four, where renewal at ~43
		// (refresh 10m + jitter) took five: 0, 43, 86, 129, 172.
		calls := w.fake.AssumeRoleCalls()
		var at []int
		for _, c := range calls {
			at = append(at, int(c.Time.Sub(calls[0].Time).Minutes()))
		}
		if want := []int{0, 48, 96, 144}; !slices.Equal(at, want) {
			t.Errorf("AssumeRole at minutes %v, want %v", at, want)
		}
		for i := 1; i < len(at); i++ {
			if used := at[i] - at[i-1]; used < 45 {
				t.Errorf("session %d used for %d minutes, want at least 45", i, used)
			}
		}
		if misses := testutil.ToFloat64(w.cache.m.misses); misses != 1 {
			t.Errorf("cache misses = %v, want 1: only the first request may wait on STS", misses)
		}
		if got := testutil.ToFloat64(w.cache.m.refreshes.WithLabelValues(outcomeSuccess)); got != 3 {
			t.Errorf("background refreshes = %v, want 3", got)
		}
	})
}

// TestWireShortSessions: STS grants 20 minutes instead of the hour asked
// for; the cache follows STS's Expiration and refreshes before it.
func TestWireShortSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire(t, fakeaws.Options{SessionLifetime: 20 * time.Minute}, Config{})
		spec := wireSpec("alice@acme.org")
		for i := range 240 { // two hours, every 30 seconds
			creds, err := w.cache.Get(t.Context(), spec)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if left := time.Until(creds.Expires); left < DefaultExpiryMargin {
				t.Fatalf("request %d: credentials with only %v left", i, left)
			}
			synctest.Wait()
			time.Sleep(30 * time.Second)
		}
		if misses := testutil.ToFloat64(w.cache.m.misses); misses != 1 {
			t.Errorf("cache misses = %v, want 1", misses)
		}
		// Usable life 15m; refresh at half of it, 7.5m: about 16 sessions
		// in two hours.
		if n := len(w.fake.AssumeRoleCalls()); n < 14 || n > 18 {
			t.Errorf("AssumeRole calls = %d, want about 16", n)
		}
	})
}

// TestWireSTSThrottling: STS answers Throttling twice; the cache retries
// once (maxAttempts is 2: it used to retry until a third attempt
// succeeded), halves its budget, and refuses with a retry hint; STS is not
// called again until the hint has passed, and then the session is issued.
func TestWireSTSThrottling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire(t, fakeaws.Options{}, Config{Rate: 100})
		var mu sync.Mutex
		n := 0
		w.fake.FailAssumeRole(func(context.Context, fakeaws.AssumeRoleCall) *fakeaws.Fault {
			mu.Lock()
			defer mu.Unlock()
			n++
			if n <= 2 {
				return &fakeaws.Fault{Code: "Throttling", Status: 400}
			}
			return nil
		})
		_, err := w.cache.Get(t.Context(), wireSpec("alice@acme.org"))
		hint, ok := RetryAfter(err)
		if !errors.Is(err, ErrThrottled) || !ok || hint != failureBackoff {
			t.Fatalf("Get = %v (retry after %v, %v), want ErrThrottled, retry after %v", err, hint, ok, failureBackoff)
		}
		time.Sleep(hint - time.Nanosecond)
		if _, err := w.cache.Get(t.Context(), wireSpec("alice@acme.org")); !errors.Is(err, ErrThrottled) {
			t.Fatalf("Get before the hint = %v, want the remembered ErrThrottled", err)
		}
		time.Sleep(time.Nanosecond)
		creds, err := w.cache.Get(t.Context(), wireSpec("alice@acme.org"))
		if err != nil || !creds.HasKeys() {
			t.Fatalf("Get after the hint = %v, want credentials", err)
		}
		if got := testutil.ToFloat64(w.cache.m.calls.WithLabelValues(outcomeThrottled)); got != 2 {
			t.Errorf("throttled calls = %v, want 2", got)
		}
		if got := testutil.ToFloat64(w.cache.m.admissionRate); got != 50 {
			t.Errorf("admission rate = %v, want 50 (halved)", got)
		}
	})
}

// TestWireSTSAccessDenied: a role the gateway may not assume gives
// ErrAccessDenied, remembered for NegativeTTL so STS is not hammered.
func TestWireSTSAccessDenied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire(t, fakeaws.Options{Roles: []string{"arn:aws:iam::123456789012:role/Other"}}, Config{})
		for range 20 {
			if _, err := w.cache.Get(t.Context(), wireSpec("alice@acme.org")); !errors.Is(err, ErrAccessDenied) {
				t.Fatalf("Get error = %v, want ErrAccessDenied", err)
			}
		}
		if n := len(w.fake.AssumeRoleCalls()); n != 1 {
			t.Errorf("AssumeRole calls = %d, want 1", n)
		}
		if got := testutil.ToFloat64(w.cache.m.suppressed); got != 19 {
			t.Errorf("suppressed = %v, want 19", got)
		}
		time.Sleep(DefaultNegativeTTL)
		w.cache.Get(t.Context(), wireSpec("alice@acme.org"))
		if n := len(w.fake.AssumeRoleCalls()); n != 2 {
			t.Errorf("AssumeRole calls after the negative TTL = %d, want 2", n)
		}
	})
}

// TestWireSTSOutage: with STS down, a user with cached credentials keeps
// working, past the refresh margin if need be but never within a minute of
// expiry; a new user gets ErrUnavailable.
func TestWireSTSOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire(t, fakeaws.Options{}, Config{})
		alice := wireSpec("alice@acme.org")
		first, err := w.cache.Get(t.Context(), alice)
		if err != nil {
			t.Fatal(err)
		}
		w.fake.FailAssumeRole(func(context.Context, fakeaws.AssumeRoleCall) *fakeaws.Fault {
			return &fakeaws.Fault{Code: "InternalFailure", Status: 500, Message: "outage"}
		})
		if _, err := w.cache.Get(t.Context(), wireSpec("bob@acme.org")); !errors.Is(err, ErrUnavailable) {
			t.Errorf("new user during the outage: err = %v, want ErrUnavailable", err)
		}
		// Alice keeps working until a minute before her credentials expire.
		for time.Until(first.Expires) > lastResortMargin {
			creds, err := w.cache.Get(t.Context(), alice)
			if err != nil {
				t.Fatalf("cached user at %v before expiry: %v", time.Until(first.Expires), err)
			}
			if creds.AccessKeyID != first.AccessKeyID {
				t.Fatalf("credentials changed during the outage")
			}
			synctest.Wait()
			time.Sleep(30 * time.Second)
		}
		if _, err := w.cache.Get(t.Context(), alice); !errors.Is(err, ErrUnavailable) {
			t.Errorf("a minute before expiry: err = %v, want ErrUnavailable", err)
		}
		if got := testutil.ToFloat64(w.cache.m.staleServed); got == 0 {
			t.Error("stale_served metric did not move")
		}
		if got := testutil.ToFloat64(w.cache.m.refreshes.WithLabelValues(outcomeError)); got == 0 {
			t.Error("failed refreshes metric did not move")
		}
		if got := testutil.ToFloat64(w.cache.m.calls.WithLabelValues(outcomeError)); got == 0 {
			t.Error("error outcome metric did not move")
		}
	})
}

// TestWireSTSOutageRetryHints reproduces the measured outage through the
// real SDK: five sequential requests by one new user while STS answers
// 500 made 20 AssumeRole calls (4 attempts each) and carried no retry
// hint. Now the first request makes 2 attempts, the next four are
// answered from memory, and every refusal says when to retry.
func TestWireSTSOutageRetryHints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire(t, fakeaws.Options{}, Config{})
		var mu sync.Mutex
		attempts := 0
		w.fake.FailAssumeRole(func(context.Context, fakeaws.AssumeRoleCall) *fakeaws.Fault {
			mu.Lock()
			defer mu.Unlock()
			attempts++
			return &fakeaws.Fault{Code: "InternalFailure", Status: 500, Message: "outage"}
		})
		errs := make([]error, 5)
		for i := range errs {
			_, errs[i] = w.cache.Get(t.Context(), wireSpec("bob@acme.org"))
		}
		mu.Lock()
		if attempts != maxAttempts {
			t.Errorf("AssumeRole attempts for 5 requests = %d, want %d", attempts, maxAttempts)
		}
		mu.Unlock()
		for i, err := range errs {
			if d, ok := RetryAfter(err); !errors.Is(err, ErrUnavailable) || !ok || d < time.Second {
				t.Errorf("request %d: err = %v, RetryAfter = %v, %v; want ErrUnavailable with a hint", i, err, d, ok)
			}
		}
	})
}
