package sessioncache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/internal/redistest"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

func mustNew(t testing.TB, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New() error = %v, want nil", err)
	}
	return c
}

func TestConfigValidate(t *testing.T) {
	f := &fakeSTS{}
	tests := []struct {
		name string
		cfg  Config
		want []string // message prefixes, one per problem; nil means valid
	}{
		{"zero fields take defaults", Config{STS: f}, nil},
		{"all set at their limits", Config{
			STS: f, Size: 1, ExpiryMargin: minSessionDuration - time.Nanosecond, STSTimeout: time.Second,
			Rate: 600, NewSessionShare: 1, AdmissionWait: time.Second, RefreshBefore: time.Second,
			RefreshJitter: time.Second, NegativeTTL: time.Second, ThrottleCooldown: time.Second,
		}, nil},
		{"smallest rate and share", Config{STS: f, Rate: 1.001, NewSessionShare: 0.001}, nil},
		{"no sts: a dependency, checked by New", Config{}, nil},
		{"negative size", Config{STS: f, Size: -1}, []string{"size: "}},
		{"negative margin", Config{STS: f, ExpiryMargin: -time.Second}, []string{"expiry_margin: "}},
		{"margin as long as the shortest session", Config{STS: f, ExpiryMargin: 15 * time.Minute}, []string{"expiry_margin: "}},
		{"negative timeout", Config{STS: f, STSTimeout: -time.Second}, []string{"timeout: "}},
		{"negative refresh_before", Config{STS: f, RefreshBefore: -1}, []string{"refresh_before: "}},
		{"negative refresh_jitter", Config{STS: f, RefreshJitter: -1}, []string{"refresh_jitter: "}},
		{"negative admission_wait", Config{STS: f, AdmissionWait: -1}, []string{"admission_wait: "}},
		{"negative negative_ttl", Config{STS: f, NegativeTTL: -1}, []string{"negative_ttl: "}},
		{"negative throttle_cooldown", Config{STS: f, ThrottleCooldown: -1}, []string{"throttle_cooldown: "}},
		{"rate of 1", Config{STS: f, Rate: 1}, []string{"rate: "}},
		{"negative rate", Config{STS: f, Rate: -5}, []string{"rate: "}},
		{"rate above the STS quota", Config{STS: f, Rate: 600.5}, []string{"rate: "}},
		{"NaN rate", Config{STS: f, Rate: math.NaN()}, []string{"rate: "}},
		{"negative share", Config{STS: f, NewSessionShare: -0.1}, []string{"new_session_share: "}},
		{"share above 1", Config{STS: f, NewSessionShare: 1.01}, []string{"new_session_share: "}},
		{"NaN share", Config{STS: f, NewSessionShare: math.NaN()}, []string{"new_session_share: "}},
		{"every problem at once", Config{
			Size: -1, ExpiryMargin: -1, STSTimeout: -1, Rate: 0.5, NewSessionShare: 2, AdmissionWait: -1,
			RefreshBefore: -1, RefreshJitter: -1, NegativeTTL: -1, ThrottleCooldown: -1,
		}, []string{
			"size: ", "expiry_margin: ", "refresh_before: ", "refresh_jitter: ", "timeout: ",
			"admission_wait: ", "negative_ttl: ", "throttle_cooldown: ", "rate: ", "new_session_share: ",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			configtest.Problems(t, tt.cfg.Validate(), tt.want)
		})
	}
}

// TestNewValidates checks that New refuses exactly what Validate refuses,
// and applies defaults to what it accepts.
func TestNewValidates(t *testing.T) {
	f := &fakeSTS{}
	if _, err := New(Config{STS: f, Rate: 601}); err == nil || !strings.Contains(err.Error(), "rate: ") {
		t.Errorf("New(rate 601) error = %v, want the rate problem", err)
	}
	_, err := New(Config{Size: -1, STSTimeout: -1})
	for _, want := range []string{"sts: required", "size: ", "timeout: "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New() error = %v, want it to mention %q", err, want)
		}
	}
	c := mustNew(t, Config{STS: f})
	if c.margin != DefaultExpiryMargin || c.stsTimeout != DefaultSTSTimeout || c.refreshBefore != DefaultRefreshBefore ||
		c.refreshJitter != DefaultRefreshJitter || c.negativeTTL != DefaultNegativeTTL {
		t.Errorf("New(zero config) durations = %v %v %v %v %v, want the defaults", c.margin, c.stsTimeout, c.refreshBefore, c.refreshJitter, c.negativeTTL)
	}
	if c.adm.allRate != DefaultRate || c.adm.freshRate != DefaultRate*DefaultNewSessionShare ||
		c.adm.maxWait != DefaultAdmissionWait || c.adm.cooldown != DefaultThrottleCooldown {
		t.Errorf("New(zero config) admission = %v %v %v %v, want the defaults", c.adm.allRate, c.adm.freshRate, c.adm.maxWait, c.adm.cooldown)
	}
	for range DefaultSize + 1 {
		c.lru.Add(strconv.Itoa(c.lru.Len()), &entry{})
	}
	if got := c.Len(); got != DefaultSize {
		t.Errorf("New(zero config) holds %d sessions, want DefaultSize %d", got, DefaultSize)
	}
}

func TestNewRegistrationConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	mustNew(t, Config{STS: &fakeSTS{}, Registerer: reg})
	if _, err := New(Config{STS: &fakeSTS{}, Registerer: reg}); err == nil {
		t.Fatalf("second New() on the same registry error = nil, want a registration error")
	}
}

func TestGetReturnsSTSCredentials(t *testing.T) {
	clock := fakeclock.New()
	f := &fakeSTS{now: clock.Now}
	c := mustNew(t, Config{STS: f, Now: clock.Now})

	got, err := c.Get(t.Context(), testSpec("alice"))
	if err != nil {
		t.Fatalf("Get() error = %v, want nil", err)
	}
	want := aws.Credentials{
		AccessKeyID:     "AKID1",
		SecretAccessKey: "SECRET1",
		SessionToken:    "TOKEN1",
		Source:          "sessioncache",
		CanExpire:       true,
		Expires:         clock.Now().Add(time.Hour),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get() credentials mismatch (-want +got):\n%s", diff)
	}
}

// TestGetConcurrentColdSpec: a stampede on one uncached spec makes exactly one
// AssumeRole call, and every caller gets its result.
func TestGetConcurrentColdSpec(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := &fakeSTS{block: release}
		c := mustNew(t, Config{STS: f})
		spec := testSpec("alice")

		const n = 1000
		creds := make([]aws.Credentials, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { creds[i], errs[i] = c.Get(context.Background(), spec) })
		}
		synctest.Wait() // all n callers are now blocked, waiting on STS
		if got := f.Calls(); got != 1 {
			t.Fatalf("AssumeRole calls while %d callers wait = %d, want 1", n, got)
		}
		close(release)
		wg.Wait()

		for i := range n {
			if errs[i] != nil || creds[i].AccessKeyID != "AKID1" {
				t.Fatalf("Get() #%d = %q, %v, want AKID1, nil", i, creds[i].AccessKeyID, errs[i])
			}
		}
		if got := f.Calls(); got != 1 {
			t.Errorf("AssumeRole calls = %d, want 1", got)
		}
	})
}

// TestGetCancelledWaiter: a caller that gives up returns at once with its
// context error; the shared STS call is not cancelled, the other caller gets
// credentials and they are cached. Both the caller that started the flight
// and one that joined it are tried.
func TestGetCancelledWaiter(t *testing.T) {
	for _, cancelFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("cancel first caller=%v", cancelFirst), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				f := &fakeSTS{block: release}
				c := mustNew(t, Config{STS: f})
				spec := testSpec("alice")

				type result struct {
					creds aws.Credentials
					err   error
				}
				get := func(ctx context.Context) chan result {
					ch := make(chan result, 1)
					go func() {
						creds, err := c.Get(ctx, spec)
						ch <- result{creds, err}
					}()
					synctest.Wait()
					return ch
				}
				cancelCtx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var quitter, stayer chan result
				if cancelFirst {
					quitter = get(cancelCtx)
					stayer = get(context.Background())
				} else {
					stayer = get(context.Background())
					quitter = get(cancelCtx)
				}

				cancel()
				synctest.Wait()
				select {
				case r := <-quitter:
					if !errors.Is(r.err, context.Canceled) {
						t.Errorf("cancelled Get() error = %v, want context.Canceled", r.err)
					}
					if errors.Is(r.err, ErrUnavailable) {
						t.Errorf("cancelled Get() error = %v, want it not to be ErrUnavailable", r.err)
					}
				default:
					t.Fatalf("cancelled Get() still blocked, want it to return before STS answers")
				}
				if err := f.Ctx(0).Err(); err != nil {
					t.Errorf("STS call context error after a caller cancelled = %v, want nil", err)
				}

				close(release)
				if r := <-stayer; r.err != nil || r.creds.AccessKeyID != "AKID1" {
					t.Fatalf("remaining Get() = %q, %v, want AKID1, nil", r.creds.AccessKeyID, r.err)
				}
				if got := c.Len(); got != 1 {
					t.Errorf("Len() = %d, want 1", got)
				}
				if _, err := c.Get(context.Background(), spec); err != nil {
					t.Fatalf("Get() after flight error = %v, want nil", err)
				}
				if got := f.Calls(); got != 1 {
					t.Errorf("AssumeRole calls = %d, want 1 (result cached)", got)
				}
			})
		})
	}
}

func TestGetCancelledBeforeMissDoesNotCallSTS(t *testing.T) {
	f := &fakeSTS{}
	c := mustNew(t, Config{STS: f})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Get(ctx, testSpec("alice")); !errors.Is(err, context.Canceled) {
		t.Errorf("Get(cancelled ctx) error = %v, want context.Canceled", err)
	}
	if got := f.Calls(); got != 0 {
		t.Errorf("AssumeRole calls = %d, want 0", got)
	}
}

// TestGetSTSTimeout: the STS call is bounded by STSTimeout even when the
// caller's context has no deadline, and a timeout is ErrUnavailable.
func TestGetSTSTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSTS{block: make(chan struct{})} // never released
		c := mustNew(t, Config{STS: f, STSTimeout: 7 * time.Second})
		start := time.Now()
		_, err := c.Get(context.Background(), testSpec("alice"))
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get() error = %v, want ErrUnavailable wrapping context.DeadlineExceeded", err)
		}
		if got := time.Since(start); got != 7*time.Second {
			t.Errorf("Get() returned after %v, want 7s (STSTimeout)", got)
		}
		if d, ok := RetryAfter(err); !ok || d < time.Second {
			t.Errorf("RetryAfter(Get() error) = %v, %v, want a hint of at least 1s", d, ok)
		}
	})
}

// TestGetExpiry: an entry is served until STS's Expiration minus the margin,
// then replaced by a new AssumeRole. The lifetime STS grants (40m) differs
// from the requested duration (1h) to show Expiration is what counts.
// TestGetExpiry: STS's Expiration (40 minutes here, shorter than the hour
// asked for) drives renewal: a hit from RefreshBefore ahead of staleness
// renews in the background while the old credentials keep serving; a
// session left idle past staleness is not served and costs a new
// AssumeRole on the request path.
func TestGetExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSTS{lifetime: 40 * time.Minute}
		c := mustNew(t, Config{STS: f, ExpiryMargin: 5 * time.Minute, RefreshBefore: 10 * time.Minute, Rand: func() float64 { return 0 }})
		defer c.Close()
		spec := testSpec("alice")
		get := func(want string) {
			t.Helper()
			got, err := c.Get(t.Context(), spec)
			if err != nil || got.AccessKeyID != want {
				t.Fatalf("Get() at %v = %q, %v, want %q", time.Now().Format("15:04:05.000000000"), got.AccessKeyID, err, want)
			}
			synctest.Wait()
		}
		calls := func(want int) {
			t.Helper()
			if got := f.Calls(); got != want {
				t.Fatalf("AssumeRole calls = %d, want %d", got, want)
			}
		}
		get("AKID1") // issued now; stale at 35m, refresh due at 25m
		time.Sleep(25*time.Minute - time.Nanosecond)
		get("AKID1")
		calls(1)
		time.Sleep(time.Nanosecond)
		get("AKID1") // due: renewed in the background, AKID1 still served
		calls(2)
		get("AKID2") // issued at 25m: stale at 60m
		time.Sleep(35 * time.Minute)
		get("AKID3") // idle past staleness: not served, renewed on the request path
		calls(3)
	})
}

func TestGetSpecsAreDistinct(t *testing.T) {
	base := testSpec("alice")
	otherTag := testSpec("alice")
	otherTag.Tags = []tenancy.Tag{{Key: "cost-center", Value: "cc-42"}, {Key: "team", Value: "ml"}, {Key: "tenant", Value: "acmf"}}
	reordered := testSpec("alice")
	reordered.Tags = []tenancy.Tag{{Key: "tenant", Value: "acme"}, {Key: "cost-center", Value: "cc-42"}, {Key: "team", Value: "ml"}}
	shorter := testSpec("alice")
	shorter.Duration = 15 * time.Minute
	withSource := testSpec("alice")
	withSource.SourceIdentity = "alice"
	otherRole := testSpec("alice")
	otherRole.RoleARN = "arn:aws:iam::123456789012:role/BedrockOther"

	tests := []struct {
		name      string
		b         tenancy.SessionSpec
		wantCalls int
	}{
		{"one tag value differs", otherTag, 2},
		{"tags in another order", reordered, 1},
		{"duration differs", shorter, 2},
		{"source identity added", withSource, 2},
		{"role differs", otherRole, 2},
		{"session name differs", testSpec("bob"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSTS{}
			c := mustNew(t, Config{STS: f})
			a, err := c.Get(t.Context(), base)
			if err != nil {
				t.Fatalf("Get(a) error = %v", err)
			}
			b, err := c.Get(t.Context(), tt.b)
			if err != nil {
				t.Fatalf("Get(b) error = %v", err)
			}
			if got := f.Calls(); got != tt.wantCalls {
				t.Errorf("AssumeRole calls = %d, want %d", got, tt.wantCalls)
			}
			if same := a.AccessKeyID == b.AccessKeyID; same != (tt.wantCalls == 1) {
				t.Errorf("Get(a).AccessKeyID = %q, Get(b).AccessKeyID = %q, want shared = %v", a.AccessKeyID, b.AccessKeyID, tt.wantCalls == 1)
			}
		})
	}
}

func TestGetLRUBound(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := &fakeSTS{}
	c := mustNew(t, Config{STS: f, Size: 2, Registerer: reg})
	get := func(name string) {
		t.Helper()
		if _, err := c.Get(t.Context(), testSpec(name)); err != nil {
			t.Fatalf("Get(%q) error = %v", name, err)
		}
	}
	get("alice")
	get("bob")
	get("carol") // evicts alice, the least recently used
	if got := c.Len(); got != 2 {
		t.Errorf("Len() = %d, want 2", got)
	}
	if got := testutil.ToFloat64(c.m.evictions); got != 1 {
		t.Errorf("evictions = %v, want 1", got)
	}
	get("carol")
	get("bob")
	if got := f.Calls(); got != 3 {
		t.Errorf("AssumeRole calls after re-reading cached specs = %d, want 3", got)
	}
	get("alice")
	if got := f.Calls(); got != 4 {
		t.Errorf("AssumeRole calls after re-reading evicted spec = %d, want 4", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP bedrock_gateway_session_cache_entries Sessions currently cached.
# TYPE bedrock_gateway_session_cache_entries gauge
bedrock_gateway_session_cache_entries 2
# HELP bedrock_gateway_session_cache_evictions_total Sessions evicted from the cache to stay within its size.
# TYPE bedrock_gateway_session_cache_evictions_total counter
bedrock_gateway_session_cache_evictions_total 2
`), "bedrock_gateway_session_cache_entries", "bedrock_gateway_session_cache_evictions_total"); err != nil {
		t.Error(err)
	}
}

func TestGetErrorClassification(t *testing.T) {
	apiErr := func(code string) error {
		return &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole", Err: &smithy.GenericAPIError{
			Code: code, Message: "User: arn:aws:sts::123456789012:assumed-role/gw/x is not authorized",
		}}
	}
	tests := []struct {
		name        string
		err         error
		want        error
		wantOutcome string
	}{
		{"AccessDenied", apiErr("AccessDenied"), ErrAccessDenied, outcomeAccessDenied},
		{"RegionDisabled", apiErr("RegionDisabledException"), ErrAccessDenied, outcomeAccessDenied},
		{"ValidationError", apiErr("ValidationError"), ErrInvalidSession, outcomeInvalid},
		{"MalformedPolicyDocument", apiErr("MalformedPolicyDocument"), ErrInvalidSession, outcomeInvalid},
		{"PackedPolicyTooLarge", apiErr("PackedPolicyTooLarge"), ErrInvalidSession, outcomeInvalid},
		{"Throttling", apiErr("Throttling"), ErrThrottled, outcomeThrottled},
		{"ThrottlingException", apiErr("ThrottlingException"), ErrThrottled, outcomeThrottled},
		{"bare API error", &smithy.GenericAPIError{Code: "AccessDenied"}, ErrAccessDenied, outcomeAccessDenied},
		{"ExpiredToken (gateway's own creds)", apiErr("ExpiredToken"), ErrUnavailable, outcomeError},
		{"InternalFailure 5xx", apiErr("InternalFailure"), ErrUnavailable, outcomeError},
		{"context deadline", fmt.Errorf("operation error STS: AssumeRole: %w", context.DeadlineExceeded), ErrUnavailable, outcomeError},
		{"network error", errors.New("dial tcp: connection refused"), ErrUnavailable, outcomeError},
	}
	sentinels := []error{ErrAccessDenied, ErrInvalidSession, ErrThrottled, ErrUnavailable}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				f := &fakeSTS{respond: func(context.Context, int, *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
					return nil, tt.err
				}}
				c := mustNew(t, Config{STS: f, Registerer: reg})
				got, err := c.Get(t.Context(), testSpec("alice"))
				if got != (aws.Credentials{}) {
					t.Errorf("Get() credentials = %+v, want zero value on error", got)
				}
				for _, s := range sentinels {
					if is, want := errors.Is(err, s), s == tt.want; is != want {
						t.Errorf("errors.Is(Get() error %q, %v) = %v, want %v", err, s, is, want)
					}
				}
				if !errors.Is(err, tt.err) {
					t.Errorf("Get() error = %v, want it to wrap the STS error %v", err, tt.err)
				}
				if err != nil && !strings.Contains(err.Error(), `"alice"`) {
					t.Errorf("Get() error = %q, want it to name the session", err)
				}
				// Throttling and unreachable STS are retried once with
				// backoff (maxAttempts is now 2, it was 4), and the
				// refusal says when to come back; refusals are not
				// retried and carry no hint.
				wantCalls := 1
				if tt.want == ErrThrottled || tt.want == ErrUnavailable {
					wantCalls = maxAttempts
				}
				if d, ok := RetryAfter(err); ok != (wantCalls > 1) || ok && d != failureBackoff {
					t.Errorf("RetryAfter(Get() error %q) = %v, %v, want a hint of %v for ErrThrottled and ErrUnavailable only", err, d, ok, failureBackoff)
				}
				if got := f.Calls(); got != wantCalls {
					t.Errorf("STS calls = %d, want %d", got, wantCalls)
				}
				var want strings.Builder
				want.WriteString("# HELP bedrock_gateway_sts_assume_role_total STS AssumeRole calls made by the session cache, by outcome.\n")
				want.WriteString("# TYPE bedrock_gateway_sts_assume_role_total counter\n")
				for _, o := range outcomes {
					n := 0
					if o == tt.wantOutcome {
						n = wantCalls
					}
					fmt.Fprintf(&want, "bedrock_gateway_sts_assume_role_total{outcome=%q} %d\n", o, n)
				}
				if err := testutil.GatherAndCompare(reg, strings.NewReader(want.String()), "bedrock_gateway_sts_assume_role_total"); err != nil {
					t.Error(err)
				}
			})
		})
	}
}

// TestGetRetriesTransientErrors: a throttled AssumeRole is retried after a
// backoff, within the same Get, and the admission rate is halved.
func TestGetRetriesTransientErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSTS{}
		f.respond = func(_ context.Context, n int, _ *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
			if n == 1 {
				return nil, &smithy.GenericAPIError{Code: "Throttling"}
			}
			return f.output(n), nil
		}
		reg := prometheus.NewRegistry()
		c := mustNew(t, Config{STS: f, Rate: 100, Registerer: reg})
		got, err := c.Get(t.Context(), testSpec("alice"))
		if err != nil || got.AccessKeyID != "AKID2" {
			t.Fatalf("Get() = %q, %v, want AKID2, nil", got.AccessKeyID, err)
		}
		if v := testutil.ToFloat64(c.m.admissionRate); v != 50 {
			t.Errorf("admission rate after throttling = %v, want 50", v)
		}
		time.Sleep(DefaultThrottleCooldown)
		if _, err := c.Get(t.Context(), testSpec("bob")); err != nil {
			t.Fatal(err)
		}
		if v := testutil.ToFloat64(c.m.admissionRate); v != 100 {
			t.Errorf("admission rate after the cooldown = %v, want 100", v)
		}
	})
}

// TestGetRemembersRefusals: AccessDenied is answered from memory for
// NegativeTTL, then STS is asked again.
func TestGetRemembersRefusals(t *testing.T) {
	clock := fakeclock.New()
	f := &fakeSTS{now: clock.Now}
	f.respond = func(_ context.Context, n int, _ *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
		if n == 1 {
			return nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized"}
		}
		return f.output(n), nil
	}
	reg := prometheus.NewRegistry()
	c := mustNew(t, Config{STS: f, Now: clock.Now, NegativeTTL: 10 * time.Second, Registerer: reg})
	for range 5 {
		if _, err := c.Get(t.Context(), testSpec("alice")); !errors.Is(err, ErrAccessDenied) {
			t.Fatalf("Get() error = %v, want ErrAccessDenied", err)
		}
	}
	if got := f.Calls(); got != 1 {
		t.Errorf("STS calls during the negative TTL = %d, want 1", got)
	}
	if got := testutil.ToFloat64(c.m.suppressed); got != 4 {
		t.Errorf("suppressed = %v, want 4", got)
	}
	clock.Advance(10 * time.Second)
	got, err := c.Get(t.Context(), testSpec("alice"))
	if err != nil || got.AccessKeyID != "AKID2" {
		t.Errorf("Get() after the TTL = %q, %v, want AKID2, nil", got.AccessKeyID, err)
	}
}

func TestGetRefusesBadResponse(t *testing.T) {
	clock := fakeclock.New()
	exp := func(d time.Duration) *time.Time { return aws.Time(clock.Now().Add(d)) }
	full := func() *types.Credentials {
		return &types.Credentials{
			AccessKeyId:     aws.String("AKIDBAD"),
			SecretAccessKey: aws.String("SECRETBAD"),
			SessionToken:    aws.String("TOKENBAD"),
			Expiration:      exp(time.Hour),
		}
	}
	tests := []struct {
		name string
		out  *sts.AssumeRoleOutput
	}{
		{"nil output", nil},
		{"no credentials", &sts.AssumeRoleOutput{}},
		{"no access key", &sts.AssumeRoleOutput{Credentials: func() *types.Credentials { c := full(); c.AccessKeyId = nil; return c }()}},
		{"empty secret", &sts.AssumeRoleOutput{Credentials: func() *types.Credentials { c := full(); c.SecretAccessKey = aws.String(""); return c }()}},
		{"no session token", &sts.AssumeRoleOutput{Credentials: func() *types.Credentials { c := full(); c.SessionToken = nil; return c }()}},
		{"no expiration", &sts.AssumeRoleOutput{Credentials: func() *types.Credentials { c := full(); c.Expiration = nil; return c }()}},
		{"expires within margin", &sts.AssumeRoleOutput{Credentials: func() *types.Credentials { c := full(); c.Expiration = exp(5 * time.Minute); return c }()}},
		{"already expired", &sts.AssumeRoleOutput{Credentials: func() *types.Credentials { c := full(); c.Expiration = exp(-time.Hour); return c }()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSTS{respond: func(context.Context, int, *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
				return tt.out, nil
			}}
			c := mustNew(t, Config{STS: f, Now: clock.Now, ExpiryMargin: 5 * time.Minute})
			got, err := c.Get(t.Context(), testSpec("alice"))
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("Get() error = %v, want ErrUnavailable", err)
			}
			if d, ok := RetryAfter(err); !ok || d < time.Second {
				t.Errorf("RetryAfter(Get() error) = %v, %v, want a hint of at least 1s", d, ok)
			}
			if got != (aws.Credentials{}) {
				t.Errorf("Get() credentials = %+v, want zero value", got)
			}
			if err != nil && (strings.Contains(err.Error(), "SECRETBAD") || strings.Contains(err.Error(), "TOKENBAD")) {
				t.Errorf("Get() error = %q, want no secret in it", err)
			}
			if got := c.Len(); got != 0 {
				t.Errorf("Len() = %d, want 0", got)
			}
		})
	}
}

func TestGetRejectsInvalidSpecLocally(t *testing.T) {
	mod := func(f func(*tenancy.SessionSpec)) tenancy.SessionSpec {
		s := testSpec("alice")
		f(&s)
		return s
	}
	tooManyTags := make([]tenancy.Tag, 51)
	for i := range tooManyTags {
		tooManyTags[i] = tenancy.Tag{Key: fmt.Sprintf("k%02d", i), Value: "v"}
	}
	tests := []struct {
		name string
		spec tenancy.SessionSpec
	}{
		{"duration over an hour", mod(func(s *tenancy.SessionSpec) { s.Duration = time.Hour + time.Second })},
		{"duration 12h", mod(func(s *tenancy.SessionSpec) { s.Duration = 12 * time.Hour })},
		{"duration under 15m", mod(func(s *tenancy.SessionSpec) { s.Duration = 899 * time.Second })},
		{"negative duration", mod(func(s *tenancy.SessionSpec) { s.Duration = -time.Hour })},
		{"fractional seconds", mod(func(s *tenancy.SessionSpec) { s.Duration = 20*time.Minute + time.Millisecond })},
		{"no role", mod(func(s *tenancy.SessionSpec) { s.RoleARN = "" })},
		{"session name too short", mod(func(s *tenancy.SessionSpec) { s.SessionName = "a" })},
		{"session name too long", mod(func(s *tenancy.SessionSpec) { s.SessionName = strings.Repeat("a", 65) })},
		{"session name with space", mod(func(s *tenancy.SessionSpec) { s.SessionName = "alice smith" })},
		{"session name with slash", mod(func(s *tenancy.SessionSpec) { s.SessionName = "alice/x" })},
		{"bad source identity", mod(func(s *tenancy.SessionSpec) { s.SourceIdentity = "a:b" })},
		{"51 tags", mod(func(s *tenancy.SessionSpec) { s.Tags = tooManyTags })},
		{"empty tag key", mod(func(s *tenancy.SessionSpec) { s.Tags = []tenancy.Tag{{Key: "", Value: "v"}} })},
		{"tag key 129 chars", mod(func(s *tenancy.SessionSpec) { s.Tags = []tenancy.Tag{{Key: strings.Repeat("k", 129)}} })},
		{"tag value 257 chars", mod(func(s *tenancy.SessionSpec) { s.Tags = []tenancy.Tag{{Key: "k", Value: strings.Repeat("é", 257)}} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSTS{}
			c := mustNew(t, Config{STS: f})
			if _, err := c.Get(t.Context(), tt.spec); !errors.Is(err, ErrInvalidSession) {
				t.Errorf("Get() error = %v, want ErrInvalidSession", err)
			}
			if got := f.Calls(); got != 0 {
				t.Errorf("AssumeRole calls = %d, want 0", got)
			}
		})
	}
}

func TestGetAcceptsSpecsAtLimits(t *testing.T) {
	tags := make([]tenancy.Tag, 50)
	for i := range tags {
		tags[i] = tenancy.Tag{Key: fmt.Sprintf("%03d", i) + strings.Repeat("k", 125), Value: strings.Repeat("é", 256)}
	}
	tests := []struct {
		name string
		spec tenancy.SessionSpec
	}{
		{"15m, 2-char name", tenancy.SessionSpec{RoleARN: "arn:aws:iam::1:role/r", SessionName: "ab", Duration: 15 * time.Minute}},
		{"1h, 64-char name, 50 full tags", tenancy.SessionSpec{RoleARN: "arn:aws:iam::123456789012:role/r", SessionName: strings.Repeat("a", 64), Tags: tags, Duration: time.Hour}},
		{"every name character", tenancy.SessionSpec{RoleARN: "arn:aws:iam::123456789012:role/r", SessionName: "aZ09_+=,.@-", SourceIdentity: "aZ09_+=,.@-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, Config{STS: &fakeSTS{}})
			if _, err := c.Get(t.Context(), tt.spec); err != nil {
				t.Errorf("Get() error = %v, want nil", err)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	clock := fakeclock.New()
	reg := prometheus.NewRegistry()
	f := &fakeSTS{now: clock.Now}
	f.respond = func(_ context.Context, n int, _ *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
		clock.Advance(300 * time.Millisecond)
		return f.output(n), nil
	}
	c := mustNew(t, Config{STS: f, Now: clock.Now, Registerer: reg})
	for range 3 {
		if _, err := c.Get(t.Context(), testSpec("alice")); err != nil {
			t.Fatalf("Get() error = %v", err)
		}
	}
	want := `
# HELP bedrock_gateway_session_cache_entries Sessions currently cached.
# TYPE bedrock_gateway_session_cache_entries gauge
bedrock_gateway_session_cache_entries 1
# HELP bedrock_gateway_session_cache_evictions_total Sessions evicted from the cache to stay within its size.
# TYPE bedrock_gateway_session_cache_evictions_total counter
bedrock_gateway_session_cache_evictions_total 0
# HELP bedrock_gateway_session_cache_requests_total Session cache lookups, by result (hit or miss).
# TYPE bedrock_gateway_session_cache_requests_total counter
bedrock_gateway_session_cache_requests_total{result="hit"} 2
bedrock_gateway_session_cache_requests_total{result="miss"} 1
# HELP bedrock_gateway_sts_assume_role_duration_seconds Latency of one STS AssumeRole call (attempts are not retried by the SDK).
# TYPE bedrock_gateway_sts_assume_role_duration_seconds histogram
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="0.005"} 0
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="0.01"} 0
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="0.025"} 0
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="0.05"} 0
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="0.1"} 0
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="0.25"} 0
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="0.5"} 1
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="1"} 1
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="2.5"} 1
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="5"} 1
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="10"} 1
bedrock_gateway_sts_assume_role_duration_seconds_bucket{le="+Inf"} 1
bedrock_gateway_sts_assume_role_duration_seconds_sum 0.3
bedrock_gateway_sts_assume_role_duration_seconds_count 1
# HELP bedrock_gateway_sts_assume_role_total STS AssumeRole calls made by the session cache, by outcome.
# TYPE bedrock_gateway_sts_assume_role_total counter
bedrock_gateway_sts_assume_role_total{outcome="access_denied"} 0
bedrock_gateway_sts_assume_role_total{outcome="error"} 0
bedrock_gateway_sts_assume_role_total{outcome="invalid"} 0
bedrock_gateway_sts_assume_role_total{outcome="success"} 1
bedrock_gateway_sts_assume_role_total{outcome="throttled"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"bedrock_gateway_session_cache_entries", "bedrock_gateway_session_cache_evictions_total",
		"bedrock_gateway_session_cache_requests_total", "bedrock_gateway_sts_assume_role_duration_seconds",
		"bedrock_gateway_sts_assume_role_total"); err != nil {
		t.Error(err)
	}
}

// TestMetricsCarryNoSessionData: no metric label or value text contains the
// session name, tag values or credentials.
func TestMetricsCarryNoSessionData(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := mustNew(t, Config{STS: &fakeSTS{}, Registerer: reg})
	if _, err := c.Get(t.Context(), testSpec("alice")); err != nil {
		t.Fatalf("Get() error = %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	text := fmt.Sprint(mfs)
	for _, secret := range []string{"alice", "acme", "cc-42", "AKID1", "SECRET1", "TOKEN1", "BedrockUser"} {
		if strings.Contains(text, secret) {
			t.Errorf("gathered metrics contain %q, want no session data", secret)
		}
	}
}

// BenchmarkGetHit measures the request path when the session is cached:
// one goroutine, and all cores in parallel; alone (fleet=off) and with a
// shared store on a real Redis (fleet=on), where a local hit must cost the
// same, with no Redis call (reported as shared-calls/op).
func BenchmarkGetHit(b *testing.B) {
	for _, fleetOn := range []bool{false, true} {
		b.Run(fmt.Sprintf("fleet=%v", map[bool]string{false: "off", true: "on"}[fleetOn]), func(b *testing.B) {
			var c *Cache
			var shared *countingShared
			if fleetOn {
				r := startSharedReplicas(b, redistest.Start(b), &fakeSTS{}, time.Now, newKeyFile("k1"))[0]
				c, shared = r.cache, r.shared
			} else {
				c = mustNew(b, Config{STS: &fakeSTS{}, Registerer: prometheus.NewRegistry()})
			}
			spec := testSpec("alice@example.com")
			if _, err := c.Get(context.Background(), spec); err != nil {
				b.Fatalf("Get() error = %v", err)
			}
			reportShared := func(b *testing.B) {
				if shared != nil {
					before := shared.calls()
					b.Cleanup(func() { b.ReportMetric(float64(shared.calls()-before)/float64(b.N), "shared-calls/op") })
				}
			}
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				reportShared(b)
				ctx := context.Background()
				for b.Loop() {
					if _, err := c.Get(ctx, spec); err != nil {
						b.Fatalf("Get() error = %v", err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				reportShared(b)
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					for pb.Next() {
						if _, err := c.Get(ctx, spec); err != nil {
							b.Errorf("Get() error = %v", err)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkSessionMemory reports the heap held per cached session, with
// credentials the size STS issues (a session token of about 1 KiB; AWS
// allows up to 4,096 bytes) and a realistic spec (3 tags).
func BenchmarkSessionMemory(b *testing.B) {
	const sessions = 10000
	token := strings.Repeat("T", 1024)
	for b.Loop() {
		f := stsFunc(func(_ context.Context, _ *sts.AssumeRoleInput, _ ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
			n := rand.Int64()
			return &sts.AssumeRoleOutput{Credentials: &types.Credentials{
				AccessKeyId:     aws.String(fmt.Sprintf("ASIA%016d", n%1e16)),
				SecretAccessKey: aws.String(fmt.Sprintf("%040d", n)),
				SessionToken:    aws.String(token + strconv.FormatInt(n, 10)),
				Expiration:      aws.Time(time.Now().Add(time.Hour)),
			}}, nil
		})
		specs := make([]tenancy.SessionSpec, sessions)
		for i := range specs {
			specs[i] = testSpec(fmt.Sprintf("user-%06d@example.com", i))
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		// The clock moves 2ms a fill, within the 600/s budget, so no fill
		// waits for admission.
		clk := fakeclock.New()
		c := mustNew(b, Config{STS: f, Size: sessions, Rate: 600, NewSessionShare: 1, Now: clk.Now})
		for _, spec := range specs {
			if _, err := c.Get(context.Background(), spec); err != nil {
				b.Fatal(err)
			}
			clk.Advance(2 * time.Millisecond)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/sessions, "bytes/session")
		runtime.KeepAlive(c)
		runtime.KeepAlive(specs)
	}
}

// stsFunc adapts a function to STS without recording anything, so that
// memory measurements count only the cache.
type stsFunc func(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)

func (f stsFunc) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	return f(ctx, in, optFns...)
}
