package proxy

// Integration of the proxy with the real session cache: the real STS
// client and the proxy's signed requests travel over memnet to the fake STS
// and fake Bedrock, inside synctest bubbles.

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/internal/memnet"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

const invokeRole = "arn:aws:iam::123456789012:role/BedrockInvocationRole"

// userHeaderAuth trusts X-Test-User: a stand-in for pkg/auth in tests about
// what happens after authentication.
type userHeaderAuth struct{}

func (userHeaderAuth) Authenticate(r *http.Request) (auth.Identity, error) {
	u := r.Header.Get("X-Test-User")
	if u == "" {
		return auth.Identity{}, auth.ErrNoCredentials
	}
	return auth.Identity{User: u, Team: "team-" + u, Method: "test"}, nil
}

type userResolver struct{}

func (userResolver) Resolve(id auth.Identity) (tenancy.SessionSpec, error) {
	return tenancy.SessionSpec{RoleARN: invokeRole, SessionName: id.User,
		Tags: []tenancy.Tag{{Key: "team", Value: id.Team}}, Duration: time.Hour}, nil
}

// stack is gateway + session cache + fake AWS over memnet.
type stack struct {
	fake   *fakeaws.Server
	client *http.Client
	cache  *sessioncache.Cache
}

func newStack(t *testing.T, opts fakeaws.Options, cacheCfg sessioncache.Config) *stack {
	t.Helper()
	opts.Roles = []string{invokeRole}
	s := &stack{fake: fakeaws.New(opts)}

	awsNet := memnet.Listen()
	stopAWS := memnet.Serve(awsNet, s.fake.Handler())
	awsTr := awsNet.Transport()
	root := s.fake.RootCredentials("arn:aws:iam::123456789012:role/BedrockGatewayRole")
	cacheCfg.STS = sts.New(sts.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://aws.internal"),
		HTTPClient:   &http.Client{Transport: awsTr},
		Credentials:  credentials.NewStaticCredentialsProvider(root.AccessKeyID, root.SecretAccessKey, ""),
	})
	cache, err := sessioncache.New(cacheCfg)
	if err != nil {
		t.Fatal(err)
	}
	s.cache = cache
	endpoint, _ := url.Parse("http://aws.internal")
	p, err := New(Config{
		Endpoint: endpoint, Region: "us-east-1",
		Authenticator: userHeaderAuth{}, Resolver: userResolver{}, Credentials: cache,
		Transport: awsTr,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	gwNet := memnet.Listen()
	stopGW := memnet.Serve(gwNet, p)
	gwTr := gwNet.Transport()
	s.client = &http.Client{Transport: gwTr}
	t.Cleanup(func() {
		gwTr.CloseIdleConnections()
		stopGW()
		cache.Close()
		awsTr.CloseIdleConnections()
		stopAWS()
	})
	return s
}

func (s *stack) converse(t *testing.T, user, text string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://gateway/model/amazon.nova-lite-v1:0/converse",
		strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"`+text+`"}]}]}`))
	req.Header.Set("X-Test-User", user)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestShortSessionsNeverSignExpired: STS issues 20-minute sessions; over
// two hours of requests every 20 seconds Bedrock never sees an expired
// signature (the fake refuses those with 403 ExpiredTokenException).
func TestShortSessionsNeverSignExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStack(t, fakeaws.Options{SessionLifetime: 20 * time.Minute}, sessioncache.Config{})
		for i := range 360 {
			if code, body := s.converse(t, "alice@acme.org", "hello"); code != http.StatusOK {
				t.Fatalf("request %d at %v: %d %s", i, time.Duration(i)*20*time.Second, code, body)
			}
			synctest.Wait()
			time.Sleep(20 * time.Second)
		}
		calls := s.fake.AssumeRoleCalls()
		if len(calls) < 8 {
			t.Errorf("AssumeRole calls = %d: 20-minute sessions over two hours need at least 7 renewals", len(calls))
		}
		for _, inv := range s.fake.Invocations() {
			if inv.Status != http.StatusOK || inv.SessionName != "alice@acme.org" {
				t.Fatalf("invocation %+v", inv)
			}
		}
	})
}

var userInBody = regexp.MustCompile(`user-\d+`)

// TestEvictionKeepsAttribution: 200 users through a cache of 50 sessions,
// 1,000 goroutines making 3 requests each: constant eviction and refill, and every call
// reaching Bedrock is signed with its own requester's session.
func TestEvictionKeepsAttribution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStack(t, fakeaws.Options{}, sessioncache.Config{Size: 50, Rate: 600, AdmissionWait: time.Minute})
		const goroutines, rounds, users = 1000, 3, 200
		var wg sync.WaitGroup
		failures := make(chan string, goroutines*rounds)
		for g := range goroutines {
			wg.Go(func() {
				for r := range rounds {
					user := fmt.Sprintf("user-%d", (g*7+r*61)%users)
					if code, body := s.converse(t, user, user); code != http.StatusOK {
						failures <- fmt.Sprintf("%s: %d %s", user, code, body)
					}
				}
			})
		}
		wg.Wait()
		close(failures)
		for f := range failures {
			t.Error(f)
		}
		invs := s.fake.Invocations()
		if len(invs) != goroutines*rounds {
			t.Fatalf("Bedrock saw %d calls, want %d", len(invs), goroutines*rounds)
		}
		for _, inv := range invs {
			who := userInBody.FindString(string(inv.Body))
			if who == "" || inv.SessionName != who || inv.Tags["team"] != "team-"+who {
				t.Fatalf("call for %q signed as session %q with tags %v", who, inv.SessionName, inv.Tags)
			}
		}
		if got := s.cache.Len(); got > 50 {
			t.Errorf("cache holds %d sessions, bound 50", got)
		}
		if n := len(s.fake.AssumeRoleCalls()); n <= users {
			t.Errorf("AssumeRole calls = %d: with 200 users in 50 slots some sessions must have been evicted and assumed again", n)
		}
	})
}

// TestOverloadAnswers503: when the STS budget cannot admit a new user in
// time, the caller gets 503 ServiceUnavailableException with Retry-After.
func TestOverloadAnswers503(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStack(t, fakeaws.Options{}, sessioncache.Config{Rate: 2, NewSessionShare: 1, AdmissionWait: 100 * time.Millisecond})
		var codes []int
		var retryAfter string
		for i := range 5 {
			req, _ := http.NewRequest(http.MethodPost, "http://gateway/model/amazon.nova-lite-v1:0/converse",
				strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`))
			req.Header.Set("X-Test-User", fmt.Sprintf("user-%d", i))
			resp, err := s.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
			if resp.StatusCode == http.StatusServiceUnavailable {
				retryAfter = resp.Header.Get("Retry-After")
				if typ := resp.Header.Get("X-Amzn-ErrorType"); typ != "ServiceUnavailableException" {
					t.Errorf("x-amzn-ErrorType = %q", typ)
				}
			}
		}
		if codes[0] != http.StatusOK || retryAfter == "" {
			t.Errorf("status codes %v, Retry-After %q: want the first served and later ones 503 with Retry-After", codes, retryAfter)
		}
	})
}
