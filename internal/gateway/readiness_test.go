package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
)

// TestReadiness: the STS check is reused for its TTL, a failure makes the
// gateway not ready until a later check succeeds, and draining is final.
func TestReadiness(t *testing.T) {
	clk := fakeclock.At(time.Unix(1_700_000_000, 0))
	var calls int
	var stsErr error
	r := &readiness{
		check:   func(ctx context.Context) error { calls++; return stsErr },
		okTTL:   15 * time.Second,
		failTTL: 2 * time.Second,
		timeout: time.Second,
		now:     clk.Now,
	}
	boom := errors.New("sts unreachable")
	steps := []struct {
		name      string
		advance   time.Duration
		stsErr    error
		drain     bool
		wantErr   error
		wantCalls int
	}{
		{"first probe checks", 0, nil, false, nil, 1},
		{"success reused", 14 * time.Second, boom, false, nil, 1},
		{"success expires", time.Second, boom, false, boom, 2},
		{"failure reused", time.Second, nil, false, boom, 2},
		{"failure expires", time.Second, nil, false, nil, 3},
		{"draining", 0, nil, true, errShuttingDown, 3},
		{"draining is final", time.Hour, nil, false, errShuttingDown, 3},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		stsErr = s.stsErr
		if s.drain {
			r.startDraining()
		}
		err := r.Ready(context.Background())
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
			t.Errorf("%s: Ready() = %v, want %v", s.name, err, s.wantErr)
		}
		if calls != s.wantCalls {
			t.Errorf("%s: STS checks = %d, want %d", s.name, calls, s.wantCalls)
		}
	}
}

// TestReadyzFailsWithoutSTS: /readyz is 503 when the gateway's own
// identity cannot reach STS, and the body does not echo STS's message.
func TestReadyzFailsWithoutSTS(t *testing.T) {
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
	g := &Gateway{cfg: &Config{}, reg: prometheus.NewRegistry(), sts: sts.New(sts.Options{Region: "us-east-1",
		BaseEndpoint: aws.String("http://" + ln.Addr().String()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})}
	g.ready = &readiness{check: g.checkSTS, okTTL: time.Minute, failTTL: time.Minute, timeout: 5 * time.Second, now: time.Now}
	srv := &http.Server{Handler: g.AdminHandler()}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(aln)
	defer srv.Close()
	resp, err := http.Get("http://" + aln.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(body), "token") {
		t.Errorf("/readyz with STS refusing = %d %q, want 503 and no STS message", resp.StatusCode, body)
	}
}
