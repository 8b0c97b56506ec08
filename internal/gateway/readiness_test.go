package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/logbuf"
)

// TestReadiness: ready once the data listeners serve, not before, and
// never again once draining has begun.
func TestReadiness(t *testing.T) {
	var r readiness
	if err := r.Ready(); !errors.Is(err, errNotServing) {
		t.Errorf("before serving: Ready() = %v, want %v", err, errNotServing)
	}
	r.startServing()
	if err := r.Ready(); err != nil {
		t.Errorf("serving: Ready() = %v, want nil", err)
	}
	r.startDraining()
	r.startServing()
	if err := r.Ready(); !errors.Is(err, errShuttingDown) {
		t.Errorf("draining: Ready() = %v, want %v", err, errShuttingDown)
	}
}

// TestSTSHealthChecksEveryInterval: the background check runs once per
// interval, its result is what the gauge says, and a change of state is
// logged once.
func TestSTSHealthChecksEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		var stsErr atomic.Pointer[error]
		var logs logbuf.Buffer
		h := &stsHealth{check: func(context.Context) error {
			calls.Add(1)
			if e := stsErr.Load(); e != nil {
				return *e
			}
			return nil
		}, interval: 15 * time.Second,
			timeout: time.Second, now: time.Now, logger: slog.New(slog.NewTextHandler(&logs, nil))}
		reg := prometheus.NewRegistry()
		reg.MustRegister(h.collectors()...)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); h.run(ctx) }()

		gauge := func() float64 {
			v, err := testutil.GatherAndCount(reg, "bedrock_gateway_sts_reachable")
			if err != nil || v != 1 {
				t.Fatalf("bedrock_gateway_sts_reachable: %d series, %v", v, err)
			}
			mfs, _ := reg.Gather()
			for _, mf := range mfs {
				if mf.GetName() == "bedrock_gateway_sts_reachable" {
					return mf.GetMetric()[0].GetGauge().GetValue()
				}
			}
			return -1
		}
		steps := []struct {
			name      string
			stsErr    error
			wantCalls int64
			wantGauge float64
		}{
			{"first check", nil, 1, 1},
			{"STS fails", errors.New("sts unreachable"), 2, 0},
			{"still failing", errors.New("sts unreachable"), 3, 0},
			{"back", nil, 4, 1},
		}
		for _, s := range steps {
			stsErr.Store(&s.stsErr)
			time.Sleep(15 * time.Second)
			synctest.Wait()
			if calls := calls.Load(); calls != s.wantCalls || gauge() != s.wantGauge {
				t.Errorf("%s: %d checks, gauge %v; want %d, %v", s.name, calls, gauge(), s.wantCalls, s.wantGauge)
			}
		}
		cancel()
		<-done
		if n := strings.Count(logs.String(), "GetCallerIdentity failed"); n != 1 {
			t.Errorf("failure logged %d times, want once per outage:\n%s", n, logs.String())
		}
		if n := strings.Count(logs.String(), "reachable again"); n != 1 {
			t.Errorf("recovery logged %d times, want 1", n)
		}
	})
}

// TestReadyzIgnoresSTS: when STS refuses the gateway's own identity,
// /readyz stays 200 (an STS outage must not take every replica out of
// service), the verbose answer and the metric say STS is failing, and no
// STS message is served. Draining is still 503.
func TestReadyzIgnoresSTS(t *testing.T) {
	// An STS that always refuses the gateway's identity.
	stsSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error><RequestId>1</RequestId></ErrorResponse>`)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go stsSrv.Serve(ln)
	defer stsSrv.Close()
	g := &Gateway{cfg: &Config{}, reg: prometheus.NewRegistry(), log: slog.New(slog.DiscardHandler),
		sts: sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + ln.Addr().String()),
			Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})}
	g.ready = &readiness{}
	g.ready.startServing()
	g.stsHealth = &stsHealth{check: g.checkSTS, interval: time.Hour, timeout: 5 * time.Second, now: time.Now, logger: g.log}
	g.reg.MustRegister(g.stsHealth.collectors()...)
	g.stsHealth.record(g.checkSTS(context.Background()))
	srv := httptest.NewServer(g.AdminHandler())
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, body := get("/readyz"); status != http.StatusOK || body != "ok\n" {
		t.Errorf("/readyz with STS refusing = %d %q, want 200 ok", status, body)
	}
	status, body := get("/readyz?verbose")
	if status != http.StatusOK || !strings.Contains(body, "[-] sts: GetCallerIdentity failed") || strings.Contains(body, "token") {
		t.Errorf("/readyz?verbose = %d %q, want 200 naming the STS failure and no STS message", status, body)
	}
	if _, metrics := get("/metrics"); !strings.Contains(metrics, "bedrock_gateway_sts_reachable 0") {
		t.Errorf("/metrics lacks bedrock_gateway_sts_reachable 0")
	}
	g.ready.startDraining()
	if status, body := get("/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while draining = %d %q, want 503 shutting down", status, body)
	}
}
