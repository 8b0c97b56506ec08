package fakeclock

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	c := New()
	if !c.Now().Equal(Start) {
		t.Fatalf("New().Now() = %v, want %v", c.Now(), Start)
	}
	c.Advance(90 * time.Second)
	if got := c.Now().Sub(Start); got != 90*time.Second {
		t.Errorf("after Advance(90s): %v past Start, want 90s", got)
	}
	at := time.Unix(1_700_000_000, 0)
	if got := At(at).Now(); !got.Equal(at) {
		t.Errorf("At(%v).Now() = %v", at, got)
	}

	f := Following()
	before := time.Now()
	f.Advance(time.Hour)
	got := f.Now()
	if d := got.Sub(before); d < time.Hour || d > time.Hour+time.Minute {
		t.Errorf("Following after Advance(1h) is %v ahead of the real clock, want about 1h", d)
	}
}
