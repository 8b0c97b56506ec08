package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/internal/devcert"
	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValidate(t *testing.T) {
	configtest.Problems(t, DefaultConfig().Validate(), nil)
	c := DefaultConfig()
	c.Redis = RedisConfig{URL: "redis://user:secret@host:6379/0", Addresses: []string{"a:1"}, PasswordFile: "p", PasswordEnv: "P"}
	c.KeyPrefix, c.Timeout = "nocolon", -1
	configtest.Problems(t, c.Validate(), []string{"timeout: ", "redis: ", "redis.url: ", "redis.password_file: ", "session_key_file: ", "key_prefix: "})
}

// TestBreaker: with Redis killed, calls fail, the breaker opens after
// breakerFailures of them and then no call is made until the back-off has
// passed; with Redis back, the probe closes it and shared mode resumes.
func TestBreaker(t *testing.T) {
	srv := redistest.Start(t)
	clk := fakeclock.New()
	c := DefaultConfig()
	c.Redis.URL, c.SessionKeyFile, c.Timeout = srv.URL(), "k", 200*time.Millisecond
	reg := prometheus.NewRegistry()
	s, err := Open(c, Options{Now: clk.Now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	set := func() error {
		return s.Do(ctx, "set", func(ctx context.Context, rdb redis.UniversalClient) error {
			return rdb.Set(ctx, s.Key("probe"), "1", time.Minute).Err()
		})
	}
	if err := set(); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}
	if s.Key("a", "b") != "bedrock-gateway:a:b" {
		t.Errorf("Key = %q", s.Key("a", "b"))
	}
	srv.Kill()
	for i := range breakerFailures {
		if err := set(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d with Redis down = %v, want ErrUnavailable", i, err)
		}
	}
	if !s.Degraded() {
		t.Fatal("not degraded after refused connections")
	}
	srv.Restart()
	if err := set(); !errors.Is(err, ErrUnavailable) || !s.Degraded() {
		t.Errorf("within the back-off: %v, degraded %v; want refused without a call", err, s.Degraded())
	}
	clk.Advance(breakerBackoff)
	if err := set(); err != nil || s.Degraded() {
		t.Errorf("after the back-off with Redis back: %v, degraded %v; want shared mode", err, s.Degraded())
	}
	// A missing key is an answer, not a failure.
	err = s.Do(ctx, "get", func(ctx context.Context, rdb redis.UniversalClient) error {
		return rdb.Get(ctx, s.Key("missing")).Err()
	})
	if !errors.Is(err, redis.Nil) || s.Degraded() {
		t.Errorf("GET of a missing key = %v, degraded %v; want redis.Nil and healthy", err, s.Degraded())
	}
}

// TestBreakerSlowIsNotDown: calls that time out (a Redis that accepts but
// does not answer, or one slowed by load) open the breaker only once they
// have gone on for breakerWindow with no success in between.
func TestBreakerSlowIsNotDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	clk := fakeclock.New()
	c := DefaultConfig()
	c.Redis.URL, c.SessionKeyFile, c.Timeout = "redis://"+ln.Addr().String()+"/0", "k", 20*time.Millisecond
	s, err := Open(c, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ping := func() error {
		return s.Do(context.Background(), "ping", func(ctx context.Context, rdb redis.UniversalClient) error {
			return rdb.Ping(ctx).Err()
		})
	}
	for i := range breakerFailures + 2 {
		if err := ping(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d to a silent Redis = %v, want ErrUnavailable", i, err)
		}
	}
	if s.Degraded() {
		t.Fatal("degraded after a burst of timeouts within the window: slow is not down")
	}
	clk.Advance(breakerWindow)
	if err := ping(); !errors.Is(err, ErrUnavailable) || !s.Degraded() {
		t.Fatalf("timeouts for a whole window: %v, degraded %v; want the breaker open", err, s.Degraded())
	}
}

// TestReplyErrorsCounted: a Redis that is up but refuses a call (here an
// ACL without SET: NOPERM) hands the error to the caller, which falls back,
// without opening the breaker; the refusal is counted as kind "reply", the
// only sign of it, since the replica is not degraded.
func TestReplyErrorsCounted(t *testing.T) {
	srv := redistest.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "gw", "on", ">s3cret", "~*", "+@all", "-set").Err(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := DefaultConfig()
	c.Redis.URL, c.SessionKeyFile = srv.URL(), "k"
	c.Redis.UsernameFile, c.Redis.PasswordEnv = filepath.Join(dir, "user"), "REDIS_PW"
	if err := os.WriteFile(c.Redis.UsernameFile, []byte("gw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := Open(c, Options{Registerer: reg, Getenv: func(string) string { return "s3cret" }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for range breakerFailures + 1 {
		err := s.Do(ctx, "set", func(ctx context.Context, rdb redis.UniversalClient) error {
			return rdb.Set(ctx, s.Key("x"), "1", time.Minute).Err()
		})
		if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "NOPERM") {
			t.Fatalf("SET without the permission = %v, want Redis's NOPERM reply, not ErrUnavailable", err)
		}
	}
	if err := s.Do(ctx, "get", func(ctx context.Context, rdb redis.UniversalClient) error {
		return rdb.Get(ctx, s.Key("x")).Err()
	}); !errors.Is(err, redis.Nil) {
		t.Errorf("GET (allowed) = %v, want redis.Nil", err)
	}
	if s.Degraded() {
		t.Error("degraded by error replies: Redis answered, so it is up")
	}
	errs := func(op, kind string) float64 {
		return testutil.ToFloat64(s.m.errors.WithLabelValues(op, kind))
	}
	if got := errs("set", "reply"); got != breakerFailures+1 {
		t.Errorf(`errors{op="set",kind="reply"} = %v, want %d`, got, breakerFailures+1)
	}
	if got := errs("set", "error") + errs("get", "reply") + errs("get", "error"); got != 0 {
		t.Errorf("other error counts = %v, want 0 (a missing key is an answer)", got)
	}
}

// TestTLSWithPrivateCA: a Redis whose certificate a private CA signed is
// reached over TLS once redis.tls_ca_file names that CA, through a
// rediss:// URL (one server) and through addresses with tls: true (a
// three-node Cluster, given one address); without the CA the certificate
// is refused (the system's roots do not know it), and a CA file without
// TLS, or without a certificate in it, is a config error.
func TestTLSWithPrivateCA(t *testing.T) {
	dir := t.TempDir()
	cert, key, err := devcert.Write(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := redistest.StartTLS(t, cert, key)
	cluster := redistest.StartTLSCluster(t, 3, cert, key)
	ping := func(c Config) error {
		s, err := Open(c, Options{})
		if err != nil {
			return err
		}
		defer s.Close()
		// Keys in slots all over the Cluster: each node is reached.
		return s.Do(context.Background(), "set", func(ctx context.Context, rdb redis.UniversalClient) error {
			for i := range 30 {
				if err := rdb.Set(ctx, fmt.Sprint("k", i), "v", time.Minute).Err(); err != nil {
					return err
				}
			}
			return nil
		})
	}
	base := DefaultConfig()
	base.SessionKeyFile, base.Timeout = "k", time.Second
	viaURL, viaAddrs := base, base
	viaURL.Redis = RedisConfig{URL: srv.URL(), TLSCAFile: cert}
	viaAddrs.Redis = RedisConfig{Addresses: []string{cluster[0].Addr()}, TLS: true, TLSCAFile: cert}
	for name, c := range map[string]Config{"url": viaURL, "addresses": viaAddrs} {
		if err := ping(c); err != nil {
			t.Errorf("%s with the CA: %v", name, err)
		}
		c.Redis.TLSCAFile = ""
		if err := ping(c); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s without the CA: %v, want the certificate refused", name, err)
		}
	}

	plain := base
	plain.Redis = RedisConfig{URL: "redis://" + srv.Addr() + "/0", TLSCAFile: cert}
	configtest.Problems(t, plain.Validate(), []string{"redis.tls_ca_file: "})
	plain.Redis.TLS = true // tls: applies to addresses only; a redis:// url stays plain
	configtest.Problems(t, plain.Validate(), []string{"redis.tls_ca_file: "})
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := viaURL
	bad.Redis.TLSCAFile = notPEM
	if _, err := Open(bad, Options{}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("Open with a CA file holding no certificate = %v, want an error saying so", err)
	}
}
