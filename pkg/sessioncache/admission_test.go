package sessioncache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestAdmissionActiveAheadOfNew: while new users saturate their share of
// the budget, an active user's renewal is admitted at once.
func TestAdmissionActiveAheadOfNew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdmission(20, 0.5, 10*time.Second, time.Minute, time.Now)
		var wg sync.WaitGroup
		for range 60 { // six seconds' worth of the new-user share
			wg.Go(func() {
				if err := a.wait(t.Context(), classNew); err != nil {
					t.Errorf("new user: %v", err)
				}
			})
		}
		synctest.Wait()
		time.Sleep(1030 * time.Millisecond) // mid-storm, between two new users
		start := time.Now()
		if err := a.wait(t.Context(), classActive); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("active renewal waited %v behind new users", waited)
		}
		wg.Wait()
	})
}

// TestAdmissionNewUserDeadline: a new user is refused at once, with the
// time it would have had to wait, when the budget cannot admit it within
// maxWait; it does not sleep first.
func TestAdmissionNewUserDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdmission(10, 1, time.Second, time.Minute, time.Now)
		var mu sync.Mutex
		admitted, refused := 0, 0
		start := time.Now()
		var wg sync.WaitGroup
		for range 30 {
			wg.Go(func() {
				err := a.wait(context.Background(), classNew)
				mu.Lock()
				defer mu.Unlock()
				var oe *OverloadedError
				switch {
				case err == nil:
					admitted++
				case errors.As(err, &oe) && oe.RetryAfter > time.Second:
					refused++
					if time.Since(start) != 0 {
						t.Errorf("refusal came after %v, want at once", time.Since(start))
					}
				default:
					t.Errorf("wait: %v", err)
				}
			})
		}
		wg.Wait()
		// burst 1 + refill 9/s over the one-second wait.
		if admitted < 9 || admitted > 11 {
			t.Errorf("admitted %d in the first second at 10/s, want about 10", admitted)
		}
		if refused == 0 {
			t.Error("nobody was refused")
		}
	})
}

// TestAdmissionThrottledHalvesThenRestores checks the budget's rate
// directly: after throttling, a second's worth of calls takes two.
func TestAdmissionThrottledHalvesThenRestores(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdmission(10, 1, time.Hour, 30*time.Second, time.Now)
		count := func(d time.Duration) int {
			n := 0
			end := time.Now().Add(d)
			for time.Now().Before(end) {
				if err := a.wait(context.Background(), classActive); err != nil {
					t.Fatal(err)
				}
				n++
			}
			return n
		}
		time.Sleep(time.Second) // full buckets
		base := count(10 * time.Second)
		a.throttled()
		lowered := count(10 * time.Second)
		time.Sleep(30 * time.Second)
		restored := count(10 * time.Second)
		if lowered*2 > base+2 || restored < base-2 {
			t.Errorf("calls per 10s: %d normal, %d throttled, %d restored; want the throttled half", base, lowered, restored)
		}
	})
}
