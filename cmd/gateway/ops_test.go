package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	brtypes "github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
)

// whoami asks the gateway who the caller is, with client, and returns the
// response's protocol major version and status.
func (e *env) whoami(t *testing.T, client *http.Client, user string) (proto, status int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.baseURL+"/gateway/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+e.keys[user])
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /gateway/whoami: %v", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.ProtoMajor, resp.StatusCode
}

// TestProtocols: the data plane serves HTTP/2 over TLS (ALPN), h2c with
// prior knowledge on a plain listener (the AWS SDK for JavaScript v3's
// default), and HTTP/1.1 on both.
func TestProtocols(t *testing.T) {
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(h2c.CloseIdleConnections)
	h1 := &http.Transport{}
	t.Cleanup(h1.CloseIdleConnections)

	t.Run("tls", func(t *testing.T) {
		e := startEnv(t, alice)
		if proto, status := e.whoami(t, e.client, alice.user); proto != 2 || status != http.StatusOK {
			t.Errorf("HTTP/2 over TLS: proto %d status %d, want 2 200", proto, status)
		}
		tlsH1 := e.client.Transport.(*http.Transport).Clone()
		tlsH1.ForceAttemptHTTP2 = false
		tlsH1.TLSClientConfig.NextProtos = []string{"http/1.1"}
		t.Cleanup(tlsH1.CloseIdleConnections)
		if proto, status := e.whoami(t, &http.Client{Transport: tlsH1}, alice.user); proto != 1 || status != http.StatusOK {
			t.Errorf("HTTP/1.1 over TLS: proto %d status %d, want 1 200", proto, status)
		}
	})
	t.Run("plain", func(t *testing.T) {
		e := startEnvWith(t, extraConfig{plain: true}, alice)
		if proto, status := e.whoami(t, &http.Client{Transport: h2c}, alice.user); proto != 2 || status != http.StatusOK {
			t.Errorf("h2c: proto %d status %d, want 2 200", proto, status)
		}
		if proto, status := e.whoami(t, &http.Client{Transport: h1}, alice.user); proto != 1 || status != http.StatusOK {
			t.Errorf("HTTP/1.1: proto %d status %d, want 1 200", proto, status)
		}
		// A model call over h2c is signed with the caller's own session.
		resp, _ := e.send(t, &http.Client{Transport: h2c}, conversePath, converseBody, map[string]string{"x-api-key": e.keys[alice.user]})
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Errorf("Converse over h2c: status %d proto %d, want 200 2", resp.StatusCode, resp.ProtoMajor)
		}
		if invs := e.fake.Invocations(); len(invs) != 1 || invs[0].PrincipalARN != sessionARN(alice.user) {
			t.Errorf("Bedrock calls = %+v, want one as %s", invs, sessionARN(alice.user))
		}
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminEndpoints: /healthz, /readyz (STS reachable with the
// gateway's own identity), and pprof only when enabled.
func TestAdminEndpoints(t *testing.T) {
	for _, pprofOn := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "pprof"}[pprofOn], func(t *testing.T) {
			var extra extraConfig
			if pprofOn {
				extra.admin = "  pprof: true"
			}
			e := startEnvWith(t, extra, alice)
			if status, body := get(t, e.adminURL+"/healthz"); status != 200 || body != "ok\n" {
				t.Errorf("/healthz = %d %q, want 200 ok", status, body)
			}
			if status, body := get(t, e.adminURL+"/readyz"); status != 200 || body != "ok\n" {
				t.Errorf("/readyz = %d %q, want 200 ok", status, body)
			}
			wantPprof := http.StatusNotFound
			if pprofOn {
				wantPprof = http.StatusOK
			}
			if status, _ := get(t, e.adminURL+"/debug/pprof/"); status != wantPprof {
				t.Errorf("/debug/pprof/ = %d, want %d", status, wantPprof)
			}
			// The data plane serves neither.
			if _, status := e.whoami(t, e.client, alice.user); status != 200 {
				t.Errorf("whoami = %d", status)
			}
			req, _ := http.NewRequest(http.MethodGet, e.baseURL+"/readyz", nil)
			req.Header.Set("Authorization", "Bearer "+e.keys[alice.user])
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("data plane /readyz = %d, want 404", resp.StatusCode)
			}
		})
	}
}

// holdStream opens a ConverseStream as alice with the fake holding event 1,
// and returns once event 0 has arrived.
func holdStream(t *testing.T, e *env) (events <-chan any, stream *bedrockruntime.ConverseStreamEventStream, release func()) {
	t.Helper()
	ch := make(chan struct{})
	e.mu.Lock()
	e.holdFor, e.release = "ConverseStream", ch
	e.mu.Unlock()
	c := e.sdk(t, alice.user)
	out, err := c.ConverseStream(context.Background(), &bedrockruntime.ConverseStreamInput{
		ModelId:  aws.String("anthropic.claude-3-5-haiku-20241022-v1:0"),
		Messages: []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{&brtypes.ContentBlockMemberText{Value: "hi"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	events = relay(out.GetStream().Events())
	select {
	case _, ok := <-events:
		if !ok {
			t.Fatal("stream ended before its first event")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no first event within 10s")
	}
	var once sync.Once
	return events, out.GetStream(), func() { once.Do(func() { close(ch) }) }
}

// stopAsync stops the gateway in the background; the returned channel is
// closed when run has returned.
func stopAsync(e *env) <-chan struct{} {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.stop()
	}()
	return stopped
}

// TestGracefulShutdown (SIGTERM, as main turns it into a cancelled
// context): readiness fails at once, new connections are refused after the
// drain delay, the open stream finishes within the grace period, and the
// ledger has its record.
func TestGracefulShutdown(t *testing.T) {
	e := startEnvWith(t, extraConfig{server: "  drain_delay: 200ms\n  shutdown_grace: 20s"}, alice)
	addr := strings.TrimPrefix(e.baseURL, "https://")
	events, stream, release := holdStream(t, e)
	defer release()
	defer stream.Close()

	stopped := stopAsync(e)
	eventually(t, "/readyz fails after SIGTERM", func() bool {
		status, body := get(t, e.adminURL+"/readyz")
		return status == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
	})
	eventually(t, "new connections refused after the drain delay", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("dial = %v, want connection refused", err)
			}
			return true
		}
		c.Close()
		return false
	})
	select {
	case <-stopped:
		t.Fatal("gateway stopped while a stream was open within the grace period")
	default:
	}

	release()
	rest := 0
	for range events {
		rest++
	}
	if err := streamErr(stream.Err()); err != nil || rest == 0 {
		t.Errorf("stream after shutdown began: %d more events, err %v; want it to finish", rest, err)
	}
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not stop after the stream finished")
	}
	recs := readLedger(t, e.ledger)
	if len(recs) != 1 || recs[0].Operation != "ConverseStream" || recs[0].Status != 200 || recs[0].Output == 0 {
		t.Errorf("ledger = %v, want one complete ConverseStream record", recs)
	}
	if strings.Contains(e.logs.String(), "cancelling open requests") {
		t.Error("a stream that finished within the grace period was cancelled")
	}
}

// TestShutdownGraceExpires: a stream still open when the grace period
// ends is cancelled, counted, and still recorded in the ledger.
func TestShutdownGraceExpires(t *testing.T) {
	e := startEnvWith(t, extraConfig{server: "  drain_delay: 0s\n  shutdown_grace: 300ms"}, alice)
	events, stream, release := holdStream(t, e)
	defer release()
	defer stream.Close()
	start := time.Now()
	select {
	case <-stopAsync(e):
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not stop after the grace period")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gateway stopped after %v, before the 300ms grace period", d)
	}
	for range events {
	}
	if stream.Err() == nil {
		t.Error("cancelled stream ended without an error")
	}
	var line struct {
		Cancelled int `json:"cancelled"`
	}
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, "cancelling open requests") {
			json.Unmarshal([]byte(l), &line)
		}
	}
	if line.Cancelled != 1 {
		t.Errorf("cancelled requests logged = %d, want 1\nlogs:\n%s", line.Cancelled, e.logs)
	}
	recs := readLedger(t, e.ledger)
	if len(recs) != 1 || recs[0].Operation != "ConverseStream" {
		t.Errorf("ledger = %v, want the cancelled ConverseStream's record", recs)
	}
}
