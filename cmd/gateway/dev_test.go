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

// TestDev runs `gateway dev` as a newcomer does, follows its printed
// example, and finds the call on the emulated bill under alice's session.
func TestDev(t *testing.T) {
	out := &lineWatcher{
		re:    regexp.MustCompile(`(?s)gateway \(HTTP\)\s+(http://\S+).*alice@acme.org\s+team=data-science cost-center=12345\s+(\S+).*press Ctrl-C`),
		found: make(chan []string, 1),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "-listen", "127.0.0.1:0", "-tls-listen", "127.0.0.1:0", "-data", t.TempDir()},
			testProcess(out, io.Discard))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev returned %v", err)
		}
	}()
	var base, key string
	select {
	case m := <-out.found:
		base, key = m[1], m[2]
	case err := <-done:
		t.Fatalf("dev exited: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no banner:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "EMULATED") {
		t.Error("banner does not say AWS is emulated")
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
}
