// Package server runs the gateway's HTTP listeners: the data plane, with
// the limits and the ordered shutdown a fleet behind a load balancer needs,
// and the admin listener for probes and scrapes.
//
// There is deliberately no write timeout anywhere: a model stream may
// legitimately run for many minutes; the proxy cuts a stalled one.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of Config, as DefaultConfig returns them.
const (
	DefaultReadHeaderTimeout         = 10 * time.Second
	DefaultMaxHeaderBytes            = 64 << 10
	DefaultIdleTimeout               = 120 * time.Second
	DefaultHTTP2MaxConcurrentStreams = 250
	DefaultDrainDelay                = 5 * time.Second
	DefaultShutdownGrace             = 30 * time.Second
)

// Limits of Config.
const (
	// MaxHeaderBytesLimit bounds MaxHeaderBytes: more than 16 MiB of
	// headers is a typo, not a need.
	MaxHeaderBytesLimit = 16 << 20
	// MaxHTTP2Streams bounds HTTP2MaxConcurrentStreams:
	// SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 section 6.5.2) is a 32-bit
	// value, but more than 65536 streams on one connection is a typo.
	MaxHTTP2Streams = 1 << 16
)

// Config bounds what the data-plane listener accepts and says how it
// stops. It is the YAML block `server:`. A zero duration or size takes its
// default, except DrainDelay, where zero means no delay.
type Config struct {
	// ReadHeaderTimeout is the longest a client may take to send its
	// request headers (slowloris).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// MaxHeaderBytes bounds request headers, in bytes (HTTP/1.1 header
	// block; HTTP/2 header list); larger gets 431.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// IdleTimeout closes a keep-alive connection idle this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// HTTP2MaxConcurrentStreams is the most concurrent streams one HTTP/2
	// client connection may open.
	HTTP2MaxConcurrentStreams int `yaml:"http2_max_concurrent_streams"`
	// DrainDelay: once shutdown begins readiness fails at once, but the
	// listener keeps accepting this long so that load balancers stop
	// sending traffic before connections are refused.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// ShutdownGrace is how long open requests and streams get to finish
	// once the listener is closed; the rest are then cancelled.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// DefaultConfig returns the configuration used for every setting a config
// file leaves out.
func DefaultConfig() Config {
	return Config{
		ReadHeaderTimeout:         DefaultReadHeaderTimeout,
		MaxHeaderBytes:            DefaultMaxHeaderBytes,
		IdleTimeout:               DefaultIdleTimeout,
		HTTP2MaxConcurrentStreams: DefaultHTTP2MaxConcurrentStreams,
		DrainDelay:                DefaultDrainDelay,
		ShutdownGrace:             DefaultShutdownGrace,
	}
}

// Validate reports every problem with c, each named by its YAML key. It
// has no side effects.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout}, {"idle_timeout", c.IdleTimeout},
		{"drain_delay", c.DrainDelay}, {"shutdown_grace", c.ShutdownGrace},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %v", d.key, d.v))
		}
	}
	if n := c.MaxHeaderBytes; n < 0 || n > MaxHeaderBytesLimit {
		errs = append(errs, fmt.Errorf("max_header_bytes: must be 0..%d, got %d", MaxHeaderBytesLimit, n))
	}
	if n := c.HTTP2MaxConcurrentStreams; n < 0 || n > MaxHTTP2Streams {
		errs = append(errs, fmt.Errorf("http2_max_concurrent_streams: must be 0..%d, got %d", MaxHTTP2Streams, n))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields (but DrainDelay) defaulted.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.HTTP2MaxConcurrentStreams == 0 {
		c.HTTP2MaxConcurrentStreams = d.HTTP2MaxConcurrentStreams
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	return c
}

// Options are the hooks of Serve. All are optional.
type Options struct {
	// Logger receives the shutdown steps and the server's own errors.
	Logger *slog.Logger
	// Draining is called once when shutdown begins, before the drain
	// delay: readiness should fail from then on.
	Draining func()
	// Cancelled is told how many requests were still open, and were
	// cancelled, when the grace period ended.
	Cancelled func(n int)
	// Refused is told the reason (one of RefusalReasons) of each request
	// refused for ambiguous framing (request smuggling), for a metric.
	Refused func(reason string)
}

// New returns the data-plane server: HTTP/1.1, HTTP/2 over TLS (ALPN "h2")
// and h2c with prior knowledge on a plain listener, which the AWS SDK for
// JavaScript v3 uses. On the connections Serve accepts it also refuses
// HTTP/1.x requests whose framing is ambiguous (request smuggling): Serve
// watches their bytes below net/http, which hides the problem from
// handlers. Served on a listener of the caller's, it cannot.
func New(h http.Handler, c Config, logger *slog.Logger) *http.Server {
	return newServer(h, c, logger, nil)
}

// newServer is New with guard's refusals told to refused.
func newServer(h http.Handler, c Config, logger *slog.Logger, refused func(string)) *http.Server {
	c = c.withDefaults()
	if logger == nil {
		logger = slog.Default()
	}
	srv := &http.Server{
		Handler:     guard(h, logger, refused),
		ConnContext: connContext,
		// "OPTIONS *" goes to the handler too, so that guard sees
		// every HTTP/1.x request: net/http's own answer would keep a
		// connection the guard wants closed.
		DisableGeneralOptionsHandler: true,
		ReadHeaderTimeout:            c.ReadHeaderTimeout,
		IdleTimeout:                  c.IdleTimeout,
		MaxHeaderBytes:               c.MaxHeaderBytes,
		HTTP2:                        &http.HTTP2Config{MaxConcurrentStreams: c.HTTP2MaxConcurrentStreams},
		ErrorLog:                     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)            // TLS connections that negotiate h2
	srv.Protocols.SetUnencryptedHTTP2(true) // plain connections that open with the h2 preface
	return srv
}

// Serve serves h on ln until ctx is done, then stops in order: Draining is
// called; the listener keeps accepting for c.DrainDelay so load balancers
// see the failing probe and stop sending; then it is closed (new
// connections are refused, idle ones closed, HTTP/2 clients get GOAWAY);
// open requests and streams get c.ShutdownGrace to finish; those still
// open are then cancelled and counted. It returns once every handler has
// returned (bounded), so the caller may then close the usage ledger
// without losing a record.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, c Config, o Options) error {
	c = c.withDefaults()
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	track := newInflight()
	srv := newServer(track.wrap(h), c, log, o.Refused)
	errc := make(chan error, 1)
	// TLS handshakes happen in the listener, bounded as http.Server
	// bounds them: by the read header timeout.
	go func() { errc <- srv.Serve(newListener(ln, c.ReadHeaderTimeout, log)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if o.Draining != nil {
		o.Draining()
	}
	log.Info("shutting down: not ready, still accepting", "addr", ln.Addr().String(),
		"drain_delay", c.DrainDelay.String(), "grace", c.ShutdownGrace.String())
	if c.DrainDelay > 0 {
		t := time.NewTimer(c.DrainDelay)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			srv.Close()
			return err
		}
	}
	log.Info("shutting down: listener closed, waiting for open requests", "addr", ln.Addr().String(), "open", track.count())
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.ShutdownGrace)
	defer cancel()
	serr := srv.Shutdown(gctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("data listener", "error", err)
	}
	if serr == nil {
		// Shutdown saw every connection idle; handlers are done, or about
		// to be (a hijacked or h2 stream may still be unwinding).
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer wcancel()
		track.wait(wctx)
		log.Info("shutdown complete", "addr", ln.Addr().String())
		return nil
	}
	n := track.count()
	if o.Cancelled != nil {
		o.Cancelled(n)
	}
	log.Warn("shutdown grace period over; cancelling open requests", "cancelled", n)
	srv.Close() // closes every connection: handlers see their contexts end
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if !track.wait(wctx) {
		log.Error("requests still running 10s after being cancelled", "open", track.count())
	}
	return nil
}

// ServeAdmin serves the admin listener until ctx is done. Its limits are
// fixed: it serves small answers to probes and scrapers on a private
// address.
func ServeAdmin(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// inflight counts the requests being served, so that shutdown can tell
// how many it cancels and wait for their handlers (and so their usage
// records) to finish.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0
}

func newInflight() *inflight {
	ch := make(chan struct{})
	close(ch)
	return &inflight{idle: ch}
}

func (t *inflight) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		if t.n == 0 {
			t.idle = make(chan struct{})
		}
		t.n++
		t.mu.Unlock()
		defer func() {
			t.mu.Lock()
			t.n--
			if t.n == 0 {
				close(t.idle)
			}
			t.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

func (t *inflight) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// wait returns true once no request is in flight, false if ctx ends first.
func (t *inflight) wait(ctx context.Context) bool {
	t.mu.Lock()
	ch := t.idle
	t.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}
