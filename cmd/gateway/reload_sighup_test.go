//go:build unix

package main

import (
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSIGHUPReload sends SIGHUP to the test process itself: cmdServe
// listens for it with signal.Notify, exactly as in production. Only one
// gateway runs while it does (tests in this package are not parallel), and
// the gateway registers for SIGHUP before it logs "listening", so the
// signal never meets the default action.
func TestSIGHUPReload(t *testing.T) {
	e := startEnvWith(t, extraConfig{session: "  tag_keys: {team: team}", top: "sts: {rate: 100}"}, alice)
	key := map[string]string{"x-api-key": e.keys[alice.user]}
	original, err := os.ReadFile(e.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	reload := func(content, wantMsg string, n int) {
		t.Helper()
		writeFile(t, e.cfgFile, content)
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		eventually(t, wantMsg, func() bool { return strings.Count(e.logs.String(), `"msg":"`+wantMsg+`"`) == n })
	}
	lastTags := func() map[string]string {
		calls := e.fake.AssumeRoleCalls()
		return calls[len(calls)-1].Tags
	}

	if status, body, _ := e.call(t, key); status != http.StatusOK {
		t.Fatalf("before reload: %d %s", status, body)
	}
	if diff := cmp.Diff(map[string]string{"team": "data-science", "cost-center": "12345"}, lastTags()); diff != "" {
		t.Errorf("tags before reload (-want +got):\n%s", diff)
	}
	// A stream open across the reload finishes with the config it began with.
	events, stream, release := holdStream(t, e)
	defer release()
	defer stream.Close()

	// A valid config is applied; a restart-only change is reported and
	// kept at its running value.
	valid := strings.Replace(string(original), "tag_keys: {team: team}", "tag_keys: {team: dept}", 1)
	valid = strings.Replace(valid, "sts: {rate: 100}", "sts: {rate: 200}", 1)
	reload(valid, "config reloaded", 1)
	if logs := e.logs.String(); !strings.Contains(logs, "need a restart") || !strings.Contains(logs, `"keys":["sts"]`) {
		t.Errorf("no restart-needed warning naming sts in the logs:\n%s", logs)
	}
	if status, body, _ := e.call(t, key); status != http.StatusOK {
		t.Fatalf("after reload: %d %s", status, body)
	}
	if n := len(e.fake.AssumeRoleCalls()); n != 2 {
		t.Errorf("AssumeRole calls after a tag key change = %d, want 2 (a new session)", n)
	}
	if diff := cmp.Diff(map[string]string{"dept": "data-science", "cost-center": "12345"}, lastTags()); diff != "" {
		t.Errorf("tags after reload (-want +got):\n%s", diff)
	}
	release()
	rest := 0
	for range events {
		rest++
	}
	if err := streamErr(stream.Err()); err != nil || rest == 0 {
		t.Errorf("stream open across the reload: %d more events, err %v", rest, err)
	}

	// An invalid config is refused and the running one keeps serving.
	// SIGHUP also reopens the ledger (logrotate renames, then signals).
	if err := os.Rename(e.ledger, e.ledger+".1"); err != nil {
		t.Fatal(err)
	}
	reload(valid+"bogus_key: 1\n", "config reload refused; keeping the running config", 1)
	if status, body, _ := e.call(t, key); status != http.StatusOK {
		t.Fatalf("after a refused reload: %d %s", status, body)
	}
	// The ledger is written every usage.ledger_flush_interval.
	eventually(t, "the reopened ledger holds the Converse record", func() bool {
		var converse int
		for _, r := range readLedger(t, e.ledger) {
			if r.Operation == "Converse" {
				converse++
			}
		}
		return converse == 1
	})
	if n := len(e.fake.AssumeRoleCalls()); n != 2 {
		t.Errorf("AssumeRole calls after a refused reload = %d, want 2 (the dept session, cached)", n)
	}
	if !strings.Contains(e.logs.String(), "bogus_key") {
		t.Error("refused reload's log does not name the bad key")
	}
	// So is a config whose key store cannot be read.
	reload(strings.Replace(valid, "api_keys_file: keys.json", "api_keys_file: missing.json", 1),
		"config reload refused; keeping the running config", 2)
	if status, body, _ := e.call(t, key); status != http.StatusOK {
		t.Fatalf("after a refused reload: %d %s", status, body)
	}

	metrics := e.scrape(t)
	for _, want := range []string{
		`bedrock_gateway_config_reloads_total{result="success"} 1`,
		`bedrock_gateway_config_reloads_total{result="failure"} 2`,
		`bedrock_gateway_config_last_reload_successful 0`,
		`bedrock_gateway_sts_admission_rate 100`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestReloadAddsBudget: a hard budget added by a reload counts what the
// ledger already holds for its period, so a team that spent past it
// before the budget existed is refused at once, not after spending the
// limit again.
func TestReloadAddsBudget(t *testing.T) {
	e := startEnvWith(t, extraConfig{}, alice)
	key := map[string]string{"x-api-key": e.keys[alice.user]}
	if status, body, _ := e.call(t, key); status != http.StatusOK {
		t.Fatalf("before reload: %d %s", status, body)
	}
	eventually(t, "the call's cost in the ledger", func() bool {
		data, _ := os.ReadFile(e.ledger)
		return strings.Contains(string(data), `"cost_usd":0.`)
	})
	original, err := os.ReadFile(e.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.cfgFile, string(original)+`
budgets:
  - {name: ds-daily, scope: team, match: data-science, period: daily, limit_usd: "0.000000000001", mode: hard}
`)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "config reloaded", func() bool { return strings.Contains(e.logs.String(), `"msg":"config reloaded"`) })
	status, body, h := e.call(t, key)
	if status != http.StatusTooManyRequests || !strings.Contains(body, `ds-daily`) || h.Get("Retry-After") == "" {
		t.Errorf("after a reload added a budget the ledger shows spent: %d %s (Retry-After %q), want 429 naming ds-daily",
			status, body, h.Get("Retry-After"))
	}
}
