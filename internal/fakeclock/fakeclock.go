// Package fakeclock is the test clock: time that moves only when a test
// says so, so that TTLs, refreshes and rate limits are tested without
// sleeping. Pass Clock.Now wherever a package takes a `Now func()
// time.Time`.
package fakeclock

import (
	"sync"
	"time"
)

// Start is where New's clocks start: a fixed, unremarkable instant, so
// that test output is reproducible.
var Start = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	t      time.Time
	follow bool // Now is time.Now() plus the offset in t's place
	offset time.Duration
}

// New returns a clock stopped at Start.
func New() *Clock { return &Clock{t: Start} }

// At returns a clock stopped at t.
func At(t time.Time) *Clock { return &Clock{t: t} }

// Following returns a clock that reads the real clock plus whatever the
// test has advanced it by. It is for code that must stay near real time
// (AWS SDKs sign with the real clock, and a fake AWS judging signatures
// must agree with them) while a test still jumps ahead to expire things.
func Following() *Clock { return &Clock{follow: true} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.follow {
		return time.Now().Add(c.offset)
	}
	return c.t
}

// Advance moves the clock forward by d (backward if d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.follow {
		c.offset += d
		return
	}
	c.t = c.t.Add(d)
}
