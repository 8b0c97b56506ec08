// Package logwriter buffers a log stream so that the access log does not
// cost a write(2) per request: lines are collected in memory and written
// together at most every FlushInterval, when the buffer fills, and at
// Close. A line is never split across writes.
package logwriter

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// Defaults of New.
const (
	// FlushInterval bounds how long a line waits in memory: short enough
	// that `kubectl logs -f` and log shippers see it at once to a person.
	FlushInterval = 100 * time.Millisecond
	// bufferSize is written at once when reached.
	bufferSize = 64 << 10
)

// Writer is a buffered, concurrency-safe io.Writer for a logger.
type Writer struct {
	w        io.Writer
	interval time.Duration

	mu     sync.Mutex
	buf    bytes.Buffer
	err    error // the last write error, reported by Close
	closed bool

	stop chan struct{}
	done chan struct{}
}

// New buffers w, flushing every interval (FlushInterval if zero). Close
// must be called to write what is left and stop the flusher.
func New(w io.Writer, interval time.Duration) *Writer {
	if interval <= 0 {
		interval = FlushInterval
	}
	lw := &Writer{w: w, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go lw.run()
	return lw
}

// Write keeps p (one log record) for the next flush.
func (lw *Writer) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.closed {
		return lw.w.Write(p)
	}
	lw.buf.Write(p)
	if lw.buf.Len() >= bufferSize {
		lw.flushLocked()
	}
	return len(p), nil
}

// Flush writes what is buffered.
func (lw *Writer) Flush() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.flushLocked()
}

func (lw *Writer) flushLocked() {
	if lw.buf.Len() == 0 {
		return
	}
	if _, err := lw.w.Write(lw.buf.Bytes()); err != nil {
		lw.err = err
	}
	lw.buf.Reset()
}

func (lw *Writer) run() {
	defer close(lw.done)
	t := time.NewTicker(lw.interval)
	defer t.Stop()
	for {
		select {
		case <-lw.stop:
			return
		case <-t.C:
			lw.Flush()
		}
	}
}

// Close stops the flusher and writes what is left. Writes after Close go
// straight through. It returns the last write error, if any.
func (lw *Writer) Close() error {
	select {
	case <-lw.stop:
	default:
		close(lw.stop)
	}
	<-lw.done
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.flushLocked()
	lw.closed = true
	return lw.err
}
