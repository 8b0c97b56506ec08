package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

// externalTool returns the path of a binary from Debian's prometheus
// package: $envVar if set, else name looked up in PATH. When it is missing
// the test is skipped on a developer machine, but fails in CI (CI set, as
// .ci/run sets it), where .ci/run installs the package: a check that
// silently stops running is a check that cannot fail.
func externalTool(t *testing.T, envVar, name string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "" {
		t.Skipf("%s not found ($%s unset, not in PATH); install Debian's prometheus package", name, envVar)
	}
	t.Fatalf("%s not found ($%s unset, not in PATH) but CI is set: .ci/run must install Debian's prometheus package", name, envVar)
	return ""
}

// appendUsage returns an extraConfig setup hook that adds lines to the
// usage block, which startEnvWith writes last in the config file.
func appendUsage(t *testing.T, lines string) func(e *env) {
	return func(e *env) {
		f, err := os.OpenFile(filepath.Join(e.dir, "gateway.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := io.WriteString(f, lines); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPromtoolCheckMetrics: the live /metrics, after traffic of every
// outcome, passes `promtool check metrics` (names, help texts, types,
// units, counter suffixes).
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := externalTool(t, "PROMTOOL", "promtool")
	e := startEnvWith(t, extraConfig{setup: appendUsage(t, "  metric_labels:\n    teams: [data-science]\n")}, alice)
	key := map[string]string{"Authorization": "Bearer " + e.keys[alice.user]}
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"success", key, http.StatusOK},
		{"success again", key, http.StatusOK},
		{"no key", nil, http.StatusUnauthorized},
		{"wrong key", map[string]string{"x-api-key": "not-a-key"}, http.StatusUnauthorized},
	} {
		if code, body, _ := e.call(t, tc.header); code != tc.want {
			t.Fatalf("%s: Converse status = %d, want %d: %s", tc.name, code, tc.want, body)
		}
	}
	// A stream and an upstream error give the histograms and the error
	// series their samples too.
	if code, body, _ := e.post(t, "/model/"+fakeaws.ModelThrottle+"/converse", key); code != http.StatusTooManyRequests {
		t.Fatalf("throttled Converse status = %d, want 429: %s", code, body)
	}
	if code, body, _ := e.post(t, "/model/amazon.nova-lite-v1:0/converse-stream", key); code != http.StatusOK {
		t.Fatalf("ConverseStream status = %d, want 200: %s", code, body)
	}

	metrics := e.scrape(t)
	for _, want := range []string{"bedrock_gateway_requests_total{", "bedrock_gateway_tokens_total{", `team="data-science"`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %s; traffic did not reach the usage metrics:\n%s", want, metrics)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run %s: %v", promtool, err)
		}
		t.Errorf("promtool check metrics = exit %d, want 0:\n%s", ee.ExitCode(), out)
	}
}

// freePort returns a loopback port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPrometheus runs a Prometheus server on loopback that scrapes target
// (host:port) every second, and returns its base URL. It is stopped, and
// waited for, when the test ends.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfg, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: gateway
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, target))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	var out bytes.Buffer
	cmd := exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.console.templates="+dir, "--web.console.libraries="+dir,
	)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 30s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promQuery evaluates an instant query and returns the value of its
// single sample, or ok false if the result is empty.
func promQuery(t *testing.T, base, query string) (value float64, ok bool) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"` // [unix time, "value"]
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("query %q: decode: %v", query, err)
	}
	if r.Status != "success" {
		t.Fatalf("query %q: status %q: %s", query, r.Status, r.Error)
	}
	if len(r.Data.Result) == 0 {
		return 0, false
	}
	if len(r.Data.Result) > 1 {
		t.Fatalf("query %q: %d samples, want 1", query, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %q: value %q: %v", query, s, err)
	}
	return v, true
}

// TestPrometheusScrapesGateway: a real Prometheus server scrapes the admin
// listener, and the tokens Bedrock billed to a team read back through its
// query API.
func TestPrometheusScrapesGateway(t *testing.T) {
	bin := externalTool(t, "PROMETHEUS", "prometheus")
	e := startEnvWith(t, extraConfig{setup: appendUsage(t, "  metric_labels:\n    teams: [data-science]\n")}, alice, bob)
	for _, u := range []devUser{alice, alice, alice, bob} {
		if code, body, _ := e.call(t, map[string]string{"Authorization": "Bearer " + e.keys[u.user]}); code != http.StatusOK {
			t.Fatalf("%s: Converse status = %d, want 200: %s", u.user, code, body)
		}
	}
	var want int64
	for _, inv := range e.fake.Invocations() {
		if inv.Tags["team"] == alice.team {
			want += inv.InputTokens + inv.OutputTokens + inv.CacheReadTokens + inv.CacheWriteTokens
		}
	}
	if want == 0 {
		t.Fatal("the fake billed no tokens to data-science")
	}

	u, err := url.Parse(e.adminURL)
	if err != nil {
		t.Fatal(err)
	}
	base := startPrometheus(t, bin, u.Host)
	query := fmt.Sprintf("sum(bedrock_gateway_tokens_total{team=%q})", alice.team)
	deadline := time.Now().Add(30 * time.Second)
	var got float64
	var ok bool
	for {
		if got, ok = promQuery(t, base, query); ok && got == float64(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus %s = %v (present %v) after 30s, want %d (the tokens the fake billed)", query, got, ok, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The target is healthy: the scrape itself worked, not just one sample.
	if up, ok := promQuery(t, base, `up{job="gateway"}`); !ok || up != 1 {
		t.Errorf(`up{job="gateway"} = %v (present %v), want 1`, up, ok)
	}
}
