package logwriter

import (
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingWriter counts the writes that reach it.
type countingWriter struct {
	mu     sync.Mutex
	writes int
	b      strings.Builder
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.b.Write(p)
}

func (c *countingWriter) state() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.b.String()
}

// TestBatchesAndFlushes: many lines become one write per interval, none is
// lost at Close, and lines are written whole and in order.
func TestBatchesAndFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &countingWriter{}
		lw := New(out, 100*time.Millisecond)
		for i := range 1000 {
			lw.Write([]byte("line " + strings.Repeat("x", i%7) + "\n"))
		}
		if n, _ := out.state(); n != 0 {
			t.Errorf("%d writes before the interval, want 0", n)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if n, s := out.state(); n != 1 || strings.Count(s, "\n") != 1000 {
			t.Errorf("after one interval: %d writes, %d lines; want 1 write of 1000 lines", n, strings.Count(s, "\n"))
		}
		lw.Write([]byte("last\n"))
		if err := lw.Close(); err != nil {
			t.Fatal(err)
		}
		if _, s := out.state(); !strings.HasSuffix(s, "last\n") {
			t.Error("the line written just before Close was lost")
		}
		lw.Write([]byte("after\n"))
		if _, s := out.state(); !strings.HasSuffix(s, "after\n") {
			t.Error("a line written after Close did not go straight through")
		}
	})
}

// TestFullBufferWritesAtOnce: a buffer past its size is written without
// waiting for the interval.
func TestFullBufferWritesAtOnce(t *testing.T) {
	out := &countingWriter{}
	lw := New(out, time.Hour)
	defer lw.Close()
	line := []byte(strings.Repeat("y", 1023) + "\n")
	for range bufferSize / len(line) {
		lw.Write(line)
	}
	if n, _ := out.state(); n != 1 {
		t.Errorf("%d writes once the buffer filled, want 1", n)
	}
}
