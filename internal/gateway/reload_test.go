package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSwitcherKeepsInFlightGeneration: a request that started before a
// swap finishes on its generation; later requests get the new one; the
// old generation is stopped only when its last request is done.
func TestSwitcherKeepsInFlightGeneration(t *testing.T) {
	entered := make(chan struct{})
	unblock := make(chan struct{})
	var stoppedA, stoppedB atomic.Bool
	a := &generation{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			close(entered)
			<-unblock
		}
		io.WriteString(w, "a")
	}), stop: func() { stoppedA.Store(true) }}
	b := &generation{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }),
		stop: func() { stoppedB.Store(true) }}
	sw := newSwitcher(a)

	serve := func(path string) string {
		rec := httptest.NewRecorder()
		sw.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Body.String()
	}
	var wg sync.WaitGroup
	var blocked string
	wg.Add(1)
	go func() {
		defer wg.Done()
		blocked = serve("/block")
	}()
	<-entered
	sw.swap(b)
	if got := serve("/"); got != "b" {
		t.Errorf("request after swap served by %q, want b", got)
	}
	if stoppedA.Load() {
		t.Error("old generation stopped while a request still held it")
	}
	close(unblock)
	wg.Wait()
	if blocked != "a" {
		t.Errorf("in-flight request served by %q, want a", blocked)
	}
	if !stoppedA.Load() {
		t.Error("old generation not stopped after its last request")
	}
	if stoppedB.Load() {
		t.Error("current generation stopped")
	}
	if !sw.close(5 * time.Second) {
		t.Fatal("switcher close timed out")
	}
	if !stoppedB.Load() {
		t.Error("current generation not stopped by close")
	}
	rec := httptest.NewRecorder()
	sw.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("request after close: status %d, want 503", rec.Code)
	}
}

func TestKeepRestartOnly(t *testing.T) {
	parse := func(t *testing.T, session, extra string) *Config {
		t.Helper()
		base := "aws: {region: us-east-1}\nsession: {role_arn: arn:aws:iam::123456789012:role/R" + session + "}\nauth: {api_keys_file: k.json}\n"
		c, err := Parse([]byte(base+extra), func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name, session, extra string
		want                 []string
	}{
		{"nothing", "", "", nil},
		{"reloadable only", ", tag_keys: {team: dept}", "proxy: {base_path: /bedrock}\nlog: {level: debug}\n", nil},
		{"listeners", "", "listen: \":9999\"\nadmin: {listen: off, pprof: true}\ntls: {cert_file: c, key_file: k}\n", []string{"listen", "tls", "admin"}},
		{"core", "", "sts: {rate: 100}\nusage: {ledger: off}\nserver: {idle_timeout: 1s}\nlog: {format: text}\n", []string{"server", "sts", "usage", "log.format"}},
		{"cache", "", "session_cache: {size: 5, expiry_margin: 1m}\n", []string{"session_cache"}},
		{"tracing", "", "tracing: {exporter: otlp-http, endpoint: \"https://collector:4318\"}\n", []string{"tracing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running := parse(t, "", "")
			next := parse(t, tt.session, tt.extra)
			wantNext := *next
			got := keepRestartOnly(next, running)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("keepRestartOnly changed keys (-want +got):\n%s", diff)
			}
			if again := keepRestartOnly(next, running); len(again) != 0 {
				t.Errorf("after keepRestartOnly, still differing: %v", again)
			}
			if next.Proxy.BasePath != wantNext.Proxy.BasePath || next.Log.Level != wantNext.Log.Level || next.Session.TagKeys.Team != wantNext.Session.TagKeys.Team {
				t.Errorf("reloadable settings overwritten: base_path %q level %q team tag %q", next.Proxy.BasePath, next.Log.Level, next.Session.TagKeys.Team)
			}
		})
	}
}
