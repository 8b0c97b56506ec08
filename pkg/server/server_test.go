package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config (every setting defaulted) = %v", err)
	}
	bad := Config{ReadHeaderTimeout: -1, IdleTimeout: -1, DrainDelay: -1, ShutdownGrace: -1,
		MaxHeaderBytes: MaxHeaderBytesLimit + 1, HTTP2MaxConcurrentStreams: MaxHTTP2Streams + 1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate accepted negative durations and oversized limits")
	}
	for _, key := range []string{"read_header_timeout", "idle_timeout", "drain_delay", "shutdown_grace", "max_header_bytes", "http2_max_concurrent_streams"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("Validate does not name %s: %v", key, err)
		}
	}
}

// TestServeDrains: after cancel, Draining is called at once while the
// listener still accepts for the drain delay; then connections are
// refused and Serve returns.
func TestServeDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var draining atomic.Bool
	drained := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	go func() {
		done <- Serve(ctx, ln, h, Config{DrainDelay: time.Second}, Options{Logger: slog.New(slog.DiscardHandler),
			Draining: func() { draining.Store(true); close(drained) }})
	}()
	cancel()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("Draining was not called after cancel")
	}
	tr := &http.Transport{DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("request during the drain delay: %v", err)
	}
	resp.Body.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return 10s after the drain delay")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("connection accepted after shutdown")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after shutdown = %v, want connection refused", err)
	}
}

// TestServeCancelsAfterGrace: a request still open when the grace ends is
// cancelled, counted, and Serve waits for its handler to return.
func TestServeCancelsAfterGrace(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var handlerDone atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
		handlerDone.Store(true)
	})
	var cancelled atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, h, Config{ShutdownGrace: 100 * time.Millisecond}, Options{Logger: slog.New(slog.DiscardHandler),
			Cancelled: func(n int) { cancelled.Add(int64(n)) }})
	}()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after the grace period")
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := cancelled.Load(); got != 1 {
		t.Errorf("Cancelled told %d, want 1", got)
	}
	if !handlerDone.Load() {
		t.Error("Serve returned before the cancelled handler did")
	}
}

// TestServerLimits: a client that trickles its headers is cut at
// read_header_timeout while another is served; oversized headers get 431.
func TestServerLimits(t *testing.T) {
	sc := Config{ReadHeaderTimeout: 200 * time.Millisecond, MaxHeaderBytes: 4 << 10}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	go func() { done <- Serve(ctx, ln, h, sc, Options{Logger: slog.New(slog.DiscardHandler)}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	}()
	addr := ln.Addr().String()

	// The server's read_header_timeout runs from when it accepted the
	// connection, which can be before Dial returns here: the clock starts
	// before Dial, so that the cut can never look early.
	start := time.Now()
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("normal client while a slow one holds a connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("normal client: status %d, want 200", resp.StatusCode)
	}

	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := slow.Read(make([]byte, 1))
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("slow client still connected after %v, want cut at 200ms", elapsed)
	}
	if n != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("slow client read = %d, %v; want the connection closed", n, err)
	}
	if elapsed < sc.ReadHeaderTimeout {
		t.Errorf("slow client cut after %v, before read_header_timeout %v", elapsed, sc.ReadHeaderTimeout)
	}

	big, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	io.WriteString(big, "GET / HTTP/1.1\r\nHost: gw\r\nX-Big: "+strings.Repeat("a", 8<<10)+"\r\n\r\n")
	big.SetReadDeadline(time.Now().Add(5 * time.Second))
	bresp, err := http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil {
		t.Fatalf("oversized headers: %v", err)
	}
	bresp.Body.Close()
	if bresp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: status %d, want 431", bresp.StatusCode)
	}
}
