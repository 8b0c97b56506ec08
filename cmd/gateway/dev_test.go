package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/logbuf"
)

// lineWatcher collects output and reports when a pattern first matches.
type lineWatcher struct {
	logbuf.Buffer
	re    *regexp.Regexp
	found chan []string
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if m := w.re.FindStringSubmatch(w.String()); m != nil {
		select {
		case w.found <- m:
		default:
		}
	}
	return n, err
}

// startDev runs `gateway dev` with args (on test listeners) until the
// test ends, and returns its output once the banner matches re.
func startDev(t *testing.T, re *regexp.Regexp, args ...string) (banner *lineWatcher, match []string) {
	t.Helper()
	out := &lineWatcher{re: re, found: make(chan []string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"dev", "-listen", "127.0.0.1:0", "-tls-listen", "127.0.0.1:0",
			"-admin-listen", "127.0.0.1:0", "-data", t.TempDir()}, args...), testProcess(out, io.Discard))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev returned %v", err)
		}
	})
	select {
	case m := <-out.found:
		return out, m
	case err := <-done:
		t.Fatalf("dev exited: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no banner:\n%s", out.String())
	}
	return nil, nil
}

// TestDev runs `gateway dev` as a newcomer does, follows its printed
// example, finds the call on the emulated bill under alice's session, and
// scrapes the admin listener the banner names.
func TestDev(t *testing.T) {
	out, m := startDev(t, regexp.MustCompile(`(?s)gateway \(HTTP\)\s+(http://\S+).*admin\s+(http://\S+).*alice@acme.org\s+team=data-science cost-center=12345\s+(\S+).*press Ctrl-C`))
	base, admin, key := m[1], m[2], m[3]
	if !strings.Contains(out.String(), "EMULATED") {
		t.Error("banner does not say AWS is emulated")
	}
	if !strings.Contains(out.String(), "export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1") {
		t.Error("banner does not export AWS_DEFAULT_REGION (boto3 and the AWS CLI ignore AWS_REGION)")
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	req, _ := http.NewRequest(http.MethodPost, base+"/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/converse",
		strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"Hello there"}]}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("converse: %d %s", resp.StatusCode, body)
	}

	resp, err = client.Get(base + "/_dev/billing")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var bill struct {
		Rows []struct {
			IAMPrincipal string
			UsageType    string
			UsageAmount  int64
			Tags         map[string]string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&bill); err != nil {
		t.Fatal(err)
	}
	if len(bill.Rows) != 2 {
		t.Fatalf("billing rows = %+v, want input and output rows", bill.Rows)
	}
	for _, row := range bill.Rows {
		if row.IAMPrincipal != "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice@acme.org" {
			t.Errorf("row billed to %q", row.IAMPrincipal)
		}
		if row.Tags["iamPrincipal/team"] != "data-science" || row.UsageAmount <= 0 {
			t.Errorf("row = %+v", row)
		}
	}

	// The admin listener: ready, and the call above is in the metrics.
	if code, body := getAdmin(t, client, admin+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d %q, want 200", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := getAdmin(t, client, admin+"/readyz")
		if code == http.StatusOK && strings.TrimSpace(body) == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz = %d %q, want 200 ok", code, body)
		}
		time.Sleep(50 * time.Millisecond) // polls the serving flag, set just after the listeners start
	}
	code, metrics := getAdmin(t, client, admin+"/metrics")
	want := `bedrock_gateway_requests_total{code="2xx",model="other",operation="Converse",team="other",tenant="none"} 1`
	if code != http.StatusOK || !strings.Contains(metrics, want) {
		t.Errorf("GET /metrics = %d, want 200 with %s in:\n%s", code, want, metrics)
	}
}

// TestDevAdminOff: -admin-listen off opens no admin listener.
func TestDevAdminOff(t *testing.T) {
	out, _ := startDev(t, regexp.MustCompile(`press Ctrl-C`), "-admin-listen", "off")
	if strings.Contains(out.String(), "/metrics") {
		t.Errorf("banner names an admin listener with -admin-listen off:\n%s", out.String())
	}
}

func getAdmin(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
