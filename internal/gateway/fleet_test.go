package gateway

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/redis/go-redis/v9"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/internal/redistest"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/fleet"
)

// fleetEnv is a fleet of gateway replicas sharing one real redis-server
// (or, from startFleetOn, a Cluster or Sentinel setup), in front of one
// fake AWS.
type fleetEnv struct {
	fake     *fakeaws.Server
	redis    *redistest.Server // nil from startFleetOn
	replicas []*Gateway
	platform string // a platform key that may act for any user of tenant "acme"
	issued   func() []string
	dir      string
}

// startFleet starts n replicas; mutate adjusts each replica's config
// (replica index given) before it starts.
func startFleet(t *testing.T, n int, mutate func(i int, c *Config)) *fleetEnv {
	t.Helper()
	srv := redistest.Start(t)
	f := startFleetOn(t, n, fleet.RedisConfig{URL: srv.URL()}, mutate)
	f.redis = srv
	return f
}

// startFleetOn is startFleet with the replicas' fleet.redis set to rc.
func startFleetOn(t *testing.T, n int, rc fleet.RedisConfig, mutate func(i int, c *Config)) *fleetEnv {
	t.Helper()
	f := &fleetEnv{dir: t.TempDir()}
	f.fake = fakeaws.New(fakeaws.Options{Roles: []string{testInvokeRole}})
	stsHandler, issued := fakeaws.RecordIssued(f.fake.STSHandler())
	f.issued = issued
	stsSrv := httptest.NewServer(stsHandler)
	t.Cleanup(stsSrv.Close)
	brSrv := httptest.NewServer(f.fake.BedrockHandler())
	t.Cleanup(brSrv.Close)

	keys := filepath.Join(f.dir, "keys.json")
	k, _, err := auth.IssueKey(keys, auth.KeyRecord{User: "saas", Platform: &auth.PlatformGrant{Tenants: []string{"acme"}, AllowUser: true}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.platform = k
	f.writeSessionKey(t, "k1")
	for i := range n {
		cfg := Default()
		cfg.AWS = AWSConfig{Region: "us-east-1", STSEndpoint: stsSrv.URL, BedrockRuntimeEndpoint: brSrv.URL}
		cfg.Session.RoleARN, cfg.Auth.APIKeysFile, cfg.Usage.Ledger = testInvokeRole, keys, LedgerOff
		cfg.Fleet.Redis, cfg.Fleet.SessionKeyFile, cfg.Fleet.ExpectedReplicas = rc, filepath.Join(f.dir, "session-keys"), n
		if mutate != nil {
			mutate(i, &cfg)
		}
		g, err := New(context.Background(), &cfg, Options{
			Credentials: credentials.StaticCredentialsProvider{Value: f.fake.RootCredentials(testGatewayRole)},
			Logger:      slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close(5 * time.Second) })
		g.ready.startServing()
		f.replicas = append(f.replicas, g)
	}
	return f
}

// writeSessionKey writes a fresh AES-256 key with id under name in the
// fleet's directory.
func (f *fleetEnv) writeSessionKey(t *testing.T, id string) string {
	t.Helper()
	key := make([]byte, 32)
	crand.Read(key)
	path := filepath.Join(f.dir, "session-keys")
	if id != "k1" {
		path = filepath.Join(f.dir, "session-keys-"+id)
	}
	if err := os.WriteFile(path, []byte(id+":"+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// converse sends one Converse as user (of tenant acme) to replica i and
// returns the answer.
func (f *fleetEnv) converse(i int, user string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/model/amazon.nova-lite-v1:0/converse",
		strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`))
	req.Header.Set("x-api-key", f.platform)
	req.Header.Set("X-Gateway-Tenant", "acme")
	req.Header.Set("X-Gateway-User", user)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	f.replicas[i].Handler().ServeHTTP(rec, req)
	return rec
}

// assumeRoles counts the successful AssumeRole calls the fake STS saw.
func (f *fleetEnv) assumeRoles() int {
	n := 0
	for _, c := range f.fake.AssumeRoleCalls() {
		if c.Err == "" {
			n++
		}
	}
	return n
}

// TestFleetOneAssumeRolePerUser: 300 users sending 3 requests each to
// random replicas cause exactly 300 AssumeRole calls, and 100 concurrent
// first requests of one cold user through three replicas cause one.
//
// A Redis call that fails (on a machine starved of CPU a call can miss its
// timeout, and a second of that opens the breaker) makes a replica fall
// back to its own session by design, so each AssumeRole beyond the count
// must be matched by a Redis call that failed or was skipped; with none,
// the count is exact. Callers retry a 503 after its
// Retry-After, as SDKs do.
func TestFleetOneAssumeRolePerUser(t *testing.T) {
	f := startFleet(t, 3, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 900)
	for u := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if rec := f.converseRetrying(rand.IntN(3), fmt.Sprintf("u%d", u)); rec.Code != http.StatusOK {
					errs <- fmt.Sprintf("u%d: %d %s", u, rec.Code, rec.Body)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	n, redisErrs := f.assumeRoles(), f.redisErrors()
	t.Logf("300 users x 3 requests through 3 replicas: %d AssumeRole calls, %v failed Redis calls", n, redisErrs)
	if n < 300 || float64(n-300) > redisErrs {
		t.Errorf("300 users x 3 requests through 3 replicas: %d AssumeRole calls with %v failed Redis calls, want 300\n%s", n, redisErrs, f.fleetMetrics())
	}

	before, errsBefore := f.assumeRoles(), f.redisErrors()
	start := make(chan struct{})
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if rec := f.converseRetrying(i%3, "cold"); rec.Code != http.StatusOK {
				t.Errorf("cold user request %d: %d %s", i, rec.Code, rec.Body)
			}
		}()
	}
	close(start)
	wg.Wait()
	n, redisErrs = f.assumeRoles()-before, f.redisErrors()-errsBefore
	t.Logf("100 concurrent first requests of one user through 3 replicas: %d AssumeRole calls, %v failed Redis calls", n, redisErrs)
	if n < 1 || float64(n-1) > redisErrs {
		t.Errorf("100 concurrent first requests of one user through 3 replicas: %d AssumeRole calls with %v failed Redis calls, want 1\n%s", n, redisErrs, f.fleetMetrics())
	}
}

// converseRetrying is converse with a client's retries: a 503 is tried
// again after its Retry-After, up to 5 times.
func (f *fleetEnv) converseRetrying(i int, user string) *httptest.ResponseRecorder {
	for try := 0; ; try++ {
		rec := f.converse(i, user)
		if rec.Code != http.StatusServiceUnavailable || try == 5 {
			return rec
		}
		d, err := time.ParseDuration(rec.Header().Get("Retry-After") + "s")
		if err != nil {
			return rec
		}
		time.Sleep(d)
	}
}

// redisErrors is the replicas' count of Redis calls that failed or were
// skipped because the breaker was open: each may have sent a replica to
// STS on its own.
func (f *fleetEnv) redisErrors() float64 {
	return f.counter("bedrock_gateway_fleet_redis_errors_total", nil)
}

// localAdmissions is the replicas' count of AssumeRole calls admitted on
// their local share of the STS budget while Redis could not be used.
func (f *fleetEnv) localAdmissions() float64 {
	return f.counter("bedrock_gateway_fleet_sts_budget_total", map[string]string{"mode": "local", "result": "admitted"})
}

// counter adds up the counter name over the replicas, in the series whose
// labels include match.
func (f *fleetEnv) counter(name string, match map[string]string) float64 {
	var n float64
	for _, g := range f.replicas {
		mfs, _ := g.reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				hits := 0
				for _, l := range m.GetLabel() {
					if v, ok := match[l.GetName()]; ok && v == l.GetValue() {
						hits++
					}
				}
				if hits == len(match) {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// scanValues returns every string value in the fleet's Redis.
func (f *fleetEnv) scanValues(t *testing.T) []string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: f.redis.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	var out []string
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		if v, err := rdb.Get(ctx, iter.Val()).Result(); err == nil {
			out = append(out, v)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// maxPerSecond is the most AssumeRole calls the fake STS saw in any
// one-second window.
func (f *fleetEnv) maxPerSecond() int { return f.maxWithin(time.Second) }

// maxWithin is the most AssumeRole calls the fake STS saw in any window
// of d.
func (f *fleetEnv) maxWithin(d time.Duration) int {
	var times []time.Time
	for _, c := range f.fake.AssumeRoleCalls() {
		times = append(times, c.Time)
	}
	most := 0
	for i := range times {
		n := 0
		for _, u := range times[i:] {
			if u.Sub(times[i]) < d {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// TestFleetSTSBudget: 10,000 cold users spread over three replicas, each
// configured with sts.rate 100, 150 of them in flight at any moment: STS
// never sees more than 100 calls in any one-second window (less the
// dispatch delay allowed below), and every user is served or gets 503
// with Retry-After.
//
// 150 callers are already a storm for a budget of 100 calls a second. With
// 600, on two cores under -race next to other packages' tests, the
// callers starved the replicas themselves: Redis calls missed their
// timeouts, the breakers opened (388 and 443 local admissions in two runs
// with two busy loops beside the test, -cpu 1), and fewer users were
// served (584 against 1,579 with 150).
func TestFleetSTSBudget(t *testing.T) {
	f := startFleet(t, 3, func(_ int, c *Config) {
		c.STS.Rate, c.STS.AdmissionWait = 100, time.Second
	})
	const users = 10000
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var missingRetryAfter int
	sem := make(chan struct{}, 150) // callers in flight at once
	for u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rec := f.converse(u%3, fmt.Sprintf("storm%d", u))
			mu.Lock()
			defer mu.Unlock()
			codes[rec.Code]++
			if rec.Code == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
				missingRetryAfter++
			}
		}()
	}
	wg.Wait()
	most, local := f.maxPerSecond(), f.localAdmissions()
	// The budget admits at most 100 calls in any second; each reaches the
	// fake STS after its admission by however long its replica takes to
	// send it. On this shared machine under -race, with 600 callers on
	// two cores and other packages' tests beside them, that delay varied
	// enough to put 104, and once 118, arrivals in one second with none
	// admitted locally (3 of 8 runs in two stress runs). Arrivals are
	// judged with 100ms of delay allowed: no 900ms window may hold more
	// than 100.
	const slack = 100 * time.Millisecond
	mostSlack := f.maxWithin(time.Second - slack)
	t.Logf("%d cold users over 3 replicas, sts.rate 100: answers %v; most AssumeRole calls in any 1s window: %d, in any %v window: %d; admitted on a replica's local share: %v",
		users, codes, most, time.Second-slack, mostSlack, local)
	// A replica that cannot reach Redis in time (a starved CPU can make a
	// call miss its timeout) admits on its local share by design: only
	// those admissions may take a second past the fleet's 100.
	if float64(mostSlack) > 100+local {
		t.Errorf("STS saw %d AssumeRole calls in %v with %v admitted locally, want at most 100 fleet-wide", mostSlack, time.Second-slack, local)
	}
	for code, n := range codes {
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Errorf("%d answers with status %d, want only 200 or 503", n, code)
		}
	}
	if missingRetryAfter > 0 {
		t.Errorf("%d 503s without Retry-After", missingRetryAfter)
	}
	if codes[http.StatusOK] == 0 {
		t.Error("no user was served")
	}
}

// TestFleetLimits: a limit of 10 requests per second per user, driven
// through three replicas, admits within 10% of 10/s fleet-wide.
func TestFleetLimits(t *testing.T) {
	f := startFleet(t, 3, func(_ int, c *Config) {
		c.Policy.Limits.RequestsPerSecond, c.Policy.Limits.Burst = 10, 1
	})
	if rec := f.converse(0, "limited"); rec.Code != http.StatusOK { // the session, outside the measurement
		t.Fatalf("first call: %d %s", rec.Code, rec.Body)
	}
	const window = 3 * time.Second
	deadline := time.Now().Add(window)
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				rec := f.converse(c%3, "limited")
				if rec.Code == http.StatusOK {
					mu.Lock()
					admitted++
					mu.Unlock()
				} else if rec.Code != http.StatusTooManyRequests {
					t.Errorf("status %d %s, want 200 or 429", rec.Code, rec.Body)
					return
				}
			}
		}()
	}
	wg.Wait()
	rate := float64(admitted) / window.Seconds()
	t.Logf("limit 10/s through 3 replicas: %d admitted in %v = %.2f/s", admitted, window, rate)
	if rate < 9 || rate > 11 {
		t.Errorf("admitted %.2f requests/s fleet-wide, want within 10%% of 10/s", rate)
	}
}

// TestFleetRedisDown: with Redis killed mid-run no request fails because
// of it (STS stays within each replica's local share), the replicas say
// they are degraded, and shared mode resumes when Redis is back.
func TestFleetRedisDown(t *testing.T) {
	f := startFleet(t, 3, func(_ int, c *Config) { c.STS.Rate = 60 })
	for u := range 30 {
		if rec := f.converse(u%3, fmt.Sprintf("before%d", u)); rec.Code != http.StatusOK {
			t.Fatalf("before: %d %s", rec.Code, rec.Body)
		}
	}
	f.redis.Kill()
	for u := range 60 {
		if rec := f.converse(u%3, fmt.Sprintf("during%d", u)); rec.Code != http.StatusOK {
			t.Errorf("new user with Redis down: %d %s (Retry-After %q)", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
		}
		// Users seen before are still served.
		if rec := f.converse(u%3, fmt.Sprintf("before%d", u%30)); rec.Code != http.StatusOK {
			t.Errorf("known user with Redis down: %d %s", rec.Code, rec.Body)
		}
	}
	for i, g := range f.replicas {
		if !g.fleet.Degraded() {
			t.Errorf("replica %d not degraded with Redis down", i)
		}
	}
	f.redis.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for u := 0; ; u++ {
		f.converse(u%3, fmt.Sprintf("after%d", u))
		healthy := 0
		for _, g := range f.replicas {
			if !g.fleet.Degraded() {
				healthy++
			}
		}
		if healthy == len(f.replicas) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d replicas back in shared mode 30s after Redis returned", healthy, len(f.replicas))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("most AssumeRole calls in any 1s window: %d (sts.rate 60)", f.maxPerSecond())
	if most := f.maxPerSecond(); most > 60 {
		t.Errorf("STS saw %d calls in one second, want at most sts.rate 60", most)
	}
}

// TestFleetSessionsSealed: no value in the fleet's Redis holds an issued
// secret access key or session token in plaintext; a replica with another
// session key cannot use the shared sessions, so it assumes its own and
// counts decrypt failures.
func TestFleetSessionsSealed(t *testing.T) {
	f := startFleet(t, 2, nil)
	other := f.writeSessionKey(t, "k9")
	for u := range 20 {
		if rec := f.converse(u%2, fmt.Sprintf("sealed%d", u)); rec.Code != http.StatusOK {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	issued, values := f.issued(), f.scanValues(t)
	if len(issued) < 40 || len(values) == 0 {
		t.Fatalf("%d issued secrets, %d Redis values: the scan would prove nothing", len(issued), len(values))
	}
	for _, v := range values {
		for _, secret := range issued {
			if strings.Contains(v, secret) {
				t.Fatalf("a Redis value holds an issued secret in plaintext")
			}
		}
	}

	// A third replica with another key.
	cfg := f.replicas[0].cfg.clone(t)
	cfg.Fleet.SessionKeyFile = other
	g, err := New(context.Background(), cfg, Options{
		Credentials: credentials.StaticCredentialsProvider{Value: f.fake.RootCredentials(testGatewayRole)},
		Logger:      slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(5 * time.Second)
	f.replicas = append(f.replicas, g)
	before := f.assumeRoles()
	if rec := f.converse(2, "sealed0"); rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if n := f.assumeRoles() - before; n != 1 {
		t.Errorf("replica with another key: %d AssumeRole calls, want 1 (its own session)", n)
	}
	mfs, _ := g.reg.Gather()
	var failures float64
	for _, mf := range mfs {
		if mf.GetName() == "bedrock_gateway_fleet_session_decrypt_failures_total" {
			for _, m := range mf.GetMetric() {
				failures += m.GetCounter().GetValue()
			}
		}
	}
	if failures == 0 {
		t.Error("no decrypt failure counted by the replica with another key")
	}
}

// clone returns a copy of c that shares no tag keys with it.
func (c *Config) clone(t *testing.T) *Config {
	t.Helper()
	cp := *c
	if c.Session.TagKeys != nil {
		tk := *c.Session.TagKeys
		cp.Session.TagKeys = &tk
	}
	return &cp
}

// fleetMetrics lists the replicas' non-zero fleet counters, to explain a
// failure.
func (f *fleetEnv) fleetMetrics() string {
	var b strings.Builder
	for i, g := range f.replicas {
		mfs, _ := g.reg.Gather()
		for _, mf := range mfs {
			if !strings.Contains(mf.GetName(), "fleet") {
				continue
			}
			for _, m := range mf.GetMetric() {
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
				if v != 0 {
					fmt.Fprintf(&b, "replica %d %s %v = %v\n", i, mf.GetName(), m.GetLabel(), v)
				}
			}
		}
	}
	return b.String()
}
