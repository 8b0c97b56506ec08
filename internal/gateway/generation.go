package gateway

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// generation is the config-dependent part of a running gateway. Requests
// hold it while they are served, so one that started before a reload
// finishes with the config it started with; it is stopped when it is both
// retired and no longer held.
type generation struct {
	cfg  *Config
	h    http.Handler
	stop func()

	mu      sync.Mutex
	refs    int
	retired bool
	stopped bool
}

// acquire holds g for one request; it fails once g is retired.
func (g *generation) acquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired {
		return false
	}
	g.refs++
	return true
}

func (g *generation) release() {
	g.mu.Lock()
	g.refs--
	last := g.retired && g.refs == 0 && !g.stopped
	if last {
		g.stopped = true
	}
	g.mu.Unlock()
	if last {
		g.stop()
	}
}

// retire stops new requests from acquiring g and stops g once the last
// request holding it is done (at once if none is).
func (g *generation) retire() {
	g.mu.Lock()
	g.retired = true
	last := g.refs == 0 && !g.stopped
	if last {
		g.stopped = true
	}
	g.mu.Unlock()
	if last {
		g.stop()
	}
}

// switcher is the data-plane handler: it serves each request with the
// current generation, and swaps generations atomically.
type switcher struct {
	cur  atomic.Pointer[generation]
	open sync.WaitGroup // generations not yet stopped
}

func newSwitcher(g *generation) *switcher {
	s := &switcher{}
	s.install(g)
	s.cur.Store(g)
	return s
}

// install makes g's stop known to s.open.
func (s *switcher) install(g *generation) {
	s.open.Add(1)
	stop := g.stop
	g.stop = func() {
		defer s.open.Done()
		stop()
	}
}

// swap makes g current and retires the previous generation.
func (s *switcher) swap(g *generation) {
	s.install(g)
	old := s.cur.Swap(g)
	old.retire()
}

func (s *switcher) current() *generation { return s.cur.Load() }

func (s *switcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := s.cur.Load()
	for !g.acquire() {
		// g was retired after being replaced, so the pointer has moved on
		// unless s is closed.
		next := s.cur.Load()
		if next == g {
			// Bedrock-shaped, like every answer the gateway gives itself.
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Amzn-ErrorType", "ServiceUnavailableException")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"message":"the gateway is shutting down; retry"}`)
			return
		}
		g = next
	}
	defer g.release()
	g.h.ServeHTTP(w, r)
}

// close retires the current generation and waits, at most timeout, for
// every generation to stop.
func (s *switcher) close(timeout time.Duration) bool {
	s.cur.Load().retire()
	done := make(chan struct{})
	go func() {
		s.open.Wait()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
