package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

// validConfig is the least Config New accepts.
func validConfig() Config {
	u, _ := url.Parse("https://bedrock-runtime.us-east-1.amazonaws.com")
	return Config{Endpoint: u, Region: "us-east-1", Authenticator: keyAuth{}, Resolver: staticResolver{}, Credentials: &credStub{}}
}

// TestConfigValidate: each problem New would refuse is reported, named by
// its config key so the loader can prefix "proxy.", and zero tunables mean
// the defaults. Validate alone checks only the settings, so the loader can
// call it on a config without dependencies.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // prefixes of the joined errors, in order; none for valid
	}{
		{"valid", func(*Config) {}, nil},
		{"base path", func(c *Config) { c.BasePath = "/bedrock" }, nil},
		{"nested base path", func(c *Config) { c.BasePath = "/a/b" }, nil},
		{"tunables set", func(c *Config) {
			c.MaxBodyBytes, c.ResponseHeaderTimeout, c.StreamIdleTimeout = 1, time.Second, time.Second
			c.BodyTimeout, c.BodyMinRate, c.MaxIdleConnsPerHost = time.Second, 1, 1
		}, nil},
		{"no endpoint", func(c *Config) { c.Endpoint = nil }, []string{"endpoint: "}},
		{"relative endpoint", func(c *Config) { c.Endpoint = &url.URL{Path: "/bedrock"} }, []string{"endpoint: "}},
		{"no region", func(c *Config) { c.Region = "" }, []string{"region: "}},
		{"no dependencies", func(c *Config) { c.Authenticator, c.Resolver, c.Credentials = nil, nil, nil },
			[]string{"authenticator: ", "resolver: ", "credentials: "}},
		{"base path without leading slash", func(c *Config) { c.BasePath = "bedrock" }, []string{"base_path: "}},
		{"base path with trailing slash", func(c *Config) { c.BasePath = "/bedrock/" }, []string{"base_path: "}},
		{"base path of one slash", func(c *Config) { c.BasePath = "/" }, []string{"base_path: "}},
		{"base path with double slash", func(c *Config) { c.BasePath = "/a//b" }, []string{"base_path: "}},
		{"negative max body", func(c *Config) { c.MaxBodyBytes = -1 }, []string{"max_body_bytes: "}},
		{"negative header timeout", func(c *Config) { c.ResponseHeaderTimeout = -time.Second }, []string{"response_header_timeout: "}},
		{"negative idle timeout", func(c *Config) { c.StreamIdleTimeout = -time.Second }, []string{"stream_idle_timeout: "}},
		{"negative body timeout", func(c *Config) { c.BodyTimeout = -time.Second }, []string{"body_timeout: "}},
		{"negative body rate", func(c *Config) { c.BodyMinRate = -1 }, []string{"body_min_rate: "}},
		{"negative idle conns", func(c *Config) { c.MaxIdleConnsPerHost = -1 }, []string{"max_idle_conns_per_host: "}},
		{"absurd idle conns", func(c *Config) { c.MaxIdleConnsPerHost = maxMaxIdleConnsPerHost + 1 }, []string{"max_idle_conns_per_host: "}},
		{"everything wrong", func(c *Config) {
			*c = Config{BasePath: "x/", MaxBodyBytes: -1, ResponseHeaderTimeout: -1, StreamIdleTimeout: -1, BodyTimeout: -1, BodyMinRate: -1,
				MaxIdleConnsPerHost: -1}
		}, []string{"endpoint: ", "region: ", "authenticator: ", "resolver: ", "credentials: ", "base_path: ",
			"max_body_bytes: ", "response_header_timeout: ", "stream_idle_timeout: ", "body_timeout: ", "body_min_rate: ",
			"max_idle_conns_per_host: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			settingsOnly := c
			settingsOnly.Endpoint, settingsOnly.Region = nil, ""
			settingsOnly.Authenticator, settingsOnly.Resolver, settingsOnly.Credentials = nil, nil, nil
			wantSettings := false
			for _, w := range tt.want {
				switch w {
				case "base_path: ", "max_body_bytes: ", "response_header_timeout: ", "stream_idle_timeout: ", "body_timeout: ", "body_min_rate: ",
					"max_idle_conns_per_host: ":
					wantSettings = true
				}
			}
			if err := settingsOnly.Validate(); (err != nil) != wantSettings {
				t.Errorf("Validate() without dependencies = %v, want an error: %v", err, wantSettings)
			}
			err := c.validate()
			var got []error
			if joined, ok := err.(interface{ Unwrap() []error }); ok {
				got = joined.Unwrap()
			} else if err != nil {
				got = []error{err}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() = %v, want %d problems %q", err, len(tt.want), tt.want)
			}
			for i, e := range got {
				if !strings.HasPrefix(e.Error(), tt.want[i]) {
					t.Errorf("Validate() problem %d = %q, want prefix %q", i, e, tt.want[i])
				}
			}
		})
	}
}

// TestNewAppliesDefaults: zero tunables get the exported defaults, and the
// transport New builds has the settings the gateway relies on.
func TestNewAppliesDefaults(t *testing.T) {
	p, err := New(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.cfg.MaxBodyBytes != DefaultMaxBodyBytes || p.cfg.ResponseHeaderTimeout != DefaultResponseHeaderTimeout ||
		p.cfg.StreamIdleTimeout != DefaultStreamIdleTimeout || p.cfg.UserAgent != DefaultUserAgent {
		t.Errorf("defaults = %d %v %v %q, want %d %v %v %q", p.cfg.MaxBodyBytes, p.cfg.ResponseHeaderTimeout, p.cfg.StreamIdleTimeout, p.cfg.UserAgent,
			DefaultMaxBodyBytes, DefaultResponseHeaderTimeout, DefaultStreamIdleTimeout, DefaultUserAgent)
	}
	if p.cfg.BodyTimeout != DefaultBodyTimeout || p.cfg.BodyMinRate != DefaultBodyMinRate {
		t.Errorf("body defaults = %v %d, want %v %d", p.cfg.BodyTimeout, p.cfg.BodyMinRate, DefaultBodyTimeout, DefaultBodyMinRate)
	}
	if p.transport == nil {
		t.Fatal("New built no transport")
	}
	if !p.transport.DisableCompression || p.transport.ResponseHeaderTimeout != DefaultResponseHeaderTimeout {
		t.Errorf("transport DisableCompression = %v, ResponseHeaderTimeout = %v, want true, %v",
			p.transport.DisableCompression, p.transport.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	}
	if tr := p.transport; tr.MaxIdleConnsPerHost != DefaultMaxIdleConnsPerHost || tr.MaxIdleConns != DefaultMaxIdleConnsPerHost ||
		!tr.ForceAttemptHTTP2 || tr.IdleConnTimeout <= 0 {
		t.Errorf("transport MaxIdleConnsPerHost = %d, MaxIdleConns = %d, ForceAttemptHTTP2 = %v, IdleConnTimeout = %v, want %d, %d, true, > 0",
			tr.MaxIdleConnsPerHost, tr.MaxIdleConns, tr.ForceAttemptHTTP2, tr.IdleConnTimeout, DefaultMaxIdleConnsPerHost, DefaultMaxIdleConnsPerHost)
	}

	c := validConfig()
	c.ResponseHeaderTimeout = 3 * time.Second
	c.MaxIdleConnsPerHost = 7
	p, err = New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := p.transport.ResponseHeaderTimeout; got != 3*time.Second {
		t.Errorf("transport ResponseHeaderTimeout = %v, want 3s", got)
	}
	if got := p.transport.MaxIdleConnsPerHost; got != 7 {
		t.Errorf("transport MaxIdleConnsPerHost = %d, want 7", got)
	}
}

// TestCloseClosesIdleUpstreamConnections: Close releases the keep-alive
// connections of the transport New built, which would otherwise stay open
// after a reload retired the proxy.
func TestCloseClosesIdleUpstreamConnections(t *testing.T) {
	closed := make(chan struct{}, 1)
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	upstream.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			select {
			case closed <- struct{}{}:
			default:
			}
		}
	}
	upstream.Start()
	defer upstream.Close()
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.Endpoint, _ = url.Parse(upstream.URL) })
	if resp := h.post(t, "/model/m/converse", converseBody, authed()); resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	select {
	case <-closed:
		t.Fatal("the upstream connection closed before Close")
	default:
	}
	h.proxy.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle upstream connection is still open after Close")
	}
}

// idleCloser is an injected transport that counts CloseIdleConnections.
type idleCloser struct {
	http.RoundTripper
	closes atomic.Int32
}

func (c *idleCloser) CloseIdleConnections() { c.closes.Add(1) }

// TestCloseLeavesInjectedTransport: an injected transport belongs to its
// owner, who may share it between proxies.
func TestCloseLeavesInjectedTransport(t *testing.T) {
	tr := &idleCloser{RoundTripper: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("unused") })}
	c := validConfig()
	c.Transport = tr
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if n := tr.closes.Load(); n != 0 {
		t.Errorf("Close closed the injected transport's connections %d times, want 0", n)
	}
}

// TestUpstreamConnectionsReused: concurrent requests share a few kept-alive
// upstream connections instead of dialing one per request, as
// http.DefaultTransport's two idle connections per host made them do.
func TestUpstreamConnectionsReused(t *testing.T) {
	const workers, perWorker = 32, 10
	var accepted atomic.Int32
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}`)
	}))
	upstream.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	upstream.Start()
	defer upstream.Close()
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.Endpoint, _ = url.Parse(upstream.URL) })
	// The client side keeps its own connections too, so that only the
	// gateway's upstream reuse is measured.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	errs := make(chan error, workers)
	for range workers {
		go func() {
			var err error
			for range perWorker {
				if err = postOnce(client, h.gateway.URL+"/model/amazon.nova-lite-v1:0/converse"); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// About one connection per concurrent request; with two idle
	// connections kept, 320 requests dialed hundreds. A request can
	// arrive just before the connection of the one before it is back in
	// the pool (the transport's read loop puts it there): the transport
	// then dials, so a few more are allowed on a busy machine.
	if n, most := accepted.Load(), int32(workers+workers/8); n > most {
		t.Errorf("upstream accepted %d connections for %d requests from %d workers, want at most %d",
			n, workers*perWorker, workers, most)
	}
}

func postOnce(client *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(converseBody))
	if err != nil {
		return err
	}
	req.Header = authed()
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status = %d, want 200", resp.StatusCode)
	}
	return nil
}
