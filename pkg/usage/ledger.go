package usage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Ledger defaults.
const (
	// DefaultMaxBytes is the size at which the ledger file is rotated.
	DefaultMaxBytes int64 = 100 << 20 // 100 MiB
	// DefaultMaxBackups is how many rotated files are kept.
	DefaultMaxBackups = 5
	// DefaultFlushInterval is the gateway's default FlushInterval: short
	// enough that a tail of the ledger looks live to a person, long
	// enough that a busy gateway writes thousands of records at once.
	DefaultFlushInterval = 100 * time.Millisecond
	// flushBytes is how much a buffered ledger holds before it writes
	// without waiting for the interval: memory stays bounded at any rate.
	flushBytes = 256 << 10
)

// LedgerConfig configures a Ledger.
type LedgerConfig struct {
	// Path is the JSON Lines file records are appended to. "-" writes to
	// Stdout instead; "" writes no ledger at all (metrics only). The file is
	// created with mode 0600 if missing; its directory is not created.
	Path string
	// Stdout receives the records when Path is "-". Default os.Stdout. When
	// the ledger shares stdout with anything else (logs), lines longer than
	// PIPE_BUF may interleave; send logs to stderr.
	Stdout io.Writer
	// MaxBytes is the file size in bytes that a write may not push the file
	// past: the write that would exceed it goes to a fresh file instead.
	// Zero means DefaultMaxBytes; negative is invalid. A single record
	// larger than MaxBytes is still written whole, alone in its file.
	MaxBytes int64
	// MaxBackups is how many rotated files are kept: Path.1 (newest) to
	// Path.N (oldest). Zero means DefaultMaxBackups; negative is invalid.
	MaxBackups int
	// FlushInterval is the longest a record waits in memory before it is
	// written; records that arrive together are written with one
	// write(2). Zero writes each record through as Record is called (a
	// write(2) per record); negative is invalid. Close writes everything
	// buffered, so a graceful shutdown loses nothing either way; what a
	// buffered ledger can lose is the last FlushInterval of records when
	// the process is killed without one (SIGKILL, a crash).
	FlushInterval time.Duration
	// Now stamps records whose Time is zero. Default time.Now.
	Now func() time.Time
}

// Ledger is the append-only JSON Lines usage ledger: one line per Record.
//
// Records are encoded by the goroutine that calls Record, outside any lock,
// and appended to a buffer that is written with a single write(2) every
// FlushInterval, when it reaches 256 KiB, before a rotation or Reopen, and
// at Close: under load the ledger costs a syscall per few thousand records
// instead of one per request, and a line is never split across writes.
// With FlushInterval zero it writes through instead, one write(2) per
// record, so a record is in the page cache when Record returns. Close (and
// rotation) fsync the file.
//
// A Ledger is safe for concurrent use. Record never fails the request: a
// record that cannot be written is counted (WriteErrors, Dropped) and the
// ledger carries on, reopening its file on the next write if it lost it.
type Ledger struct {
	path       string
	maxBytes   int64
	maxBackups int
	interval   time.Duration
	now        func() time.Time

	mu      sync.Mutex
	w       io.Writer // f, or the stdout writer; nil when Path is ""
	f       *os.File  // nil in stdout mode, and after a failed reopen
	size    int64     // bytes in f
	buf     []byte    // encoded records not yet written, whole lines
	pending int       // records in buf
	closed  bool

	stop chan struct{} // closed by Close: the flusher returns
	done chan struct{} // closed by the flusher when it has returned

	writeErrors atomic.Int64
	dropped     atomic.Int64
}

// Validate reports every problem in c at once (errors.Join), each message
// starting with the key of the field in the usage block: ledger_max_bytes
// or ledger_max_backups. Zero fields are valid: they take the defaults. It
// has no side effects and does not touch Path; NewLedger calls it.
func (c LedgerConfig) Validate() error {
	var errs []error
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("ledger_max_bytes: must not be negative (0 means %d), got %d", DefaultMaxBytes, c.MaxBytes))
	}
	if c.MaxBackups < 0 {
		errs = append(errs, fmt.Errorf("ledger_max_backups: must not be negative (0 means %d), got %d", DefaultMaxBackups, c.MaxBackups))
	}
	if c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("ledger_flush_interval: must not be negative (0 writes each record through), got %s", c.FlushInterval))
	}
	return errors.Join(errs...)
}

// NewLedger opens (creating it if needed) the ledger described by cfg. It
// fails when cfg is invalid (see Validate) or the file cannot be opened for
// appending, so that a misconfigured path stops the gateway at start rather
// than losing every record silently.
func NewLedger(cfg LedgerConfig) (*Ledger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("usage ledger: %w", err)
	}
	l := &Ledger{
		path:       cfg.Path,
		maxBytes:   cfg.MaxBytes,
		maxBackups: cfg.MaxBackups,
		interval:   cfg.FlushInterval,
		now:        cfg.Now,
	}
	if l.maxBytes == 0 {
		l.maxBytes = DefaultMaxBytes
	}
	if l.maxBackups == 0 {
		l.maxBackups = DefaultMaxBackups
	}
	if l.now == nil {
		l.now = time.Now
	}
	switch cfg.Path {
	case "":
	case "-":
		l.w = cfg.Stdout
		if l.w == nil {
			l.w = os.Stdout
		}
	default:
		if err := l.open(); err != nil {
			return nil, err
		}
	}
	if cfg.Path != "" && l.interval > 0 {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.flusher()
	}
	return l, nil
}

// flusher writes the buffer every interval until Close.
func (l *Ledger) flusher() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.Flush()
		}
	}
}

// Flush writes the records buffered so far. A buffered ledger flushes by
// itself; Flush is for readers that need the file current now (tests,
// an operator's signal).
func (l *Ledger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

// open opens l.path for appending and learns its size. l.mu is held, or l
// is not shared yet.
func (l *Ledger) open() error {
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open usage ledger: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open usage ledger: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("open usage ledger %s: not a regular file", l.path)
	}
	l.f, l.w, l.size = f, f, fi.Size()
	if l.size > 0 && !endsInNewline(l.path, l.size) {
		// The last record's write was cut short (the machine crashed
		// mid-write): end that fragment, so that the next record is a
		// line of its own rather than glued to it.
		n, _ := f.Write([]byte{'\n'})
		l.size += int64(n)
	}
	return nil
}

// endsInNewline reports whether the file at path, of the given size, ends
// in '\n'; a file it cannot read is taken to.
func endsInNewline(path string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], size-1); err != nil {
		return true
	}
	return b[0] == '\n'
}

// Record appends r to the ledger as one JSON line. It fills in Time (if
// zero), LatencyMS and TTFBMS (from Latency and TimeToFirstByte, when set).
// A buffered ledger (FlushInterval > 0) keeps the line for its next write;
// otherwise Record returns once the line has been written, or counted as
// lost. It waits only for other records' appends and, now and then, a
// write(2): no queue. A file write does not block for long; a stdout pipe
// whose reader stalls stalls it, so point "-" at a collector that keeps
// reading.
func (l *Ledger) Record(r Record) {
	if l.path == "" {
		return // no ledger configured
	}
	if r.Time.IsZero() {
		r.Time = l.now()
	}
	r.Time = r.Time.UTC()
	if r.Latency > 0 {
		r.LatencyMS = millis(r.Latency)
	}
	if r.TimeToFirstByte > 0 {
		r.TTFBMS = millis(r.TimeToFirstByte)
	}
	scratch := lineBuffers.Get().(*[]byte)
	defer lineBuffers.Put(scratch)
	line, err := appendRecord((*scratch)[:0], &r)
	*scratch = line[:0]
	if err != nil { // a Time outside years 0-9999, or a NaN LatencyMS
		l.writeErrors.Add(1)
		return
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	if l.path != "-" {
		if err := l.prepare(int64(len(line) + 1)); err != nil {
			l.writeErrors.Add(1)
			return
		}
	}
	l.buf = append(append(l.buf, line...), '\n')
	l.pending++
	if l.interval == 0 || len(l.buf) >= flushBytes {
		l.flushLocked()
	}
}

// lineBuffers are the scratch buffers records are encoded into, outside
// the ledger's lock.
var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// flushLocked writes the buffer with one write(2). Records it could not
// write are counted in WriteErrors: a record is lost when its line did
// not reach the file whole. l.mu is held.
func (l *Ledger) flushLocked() {
	if len(l.buf) == 0 {
		return
	}
	defer func() { l.buf, l.pending = l.buf[:0], 0 }()
	if l.w == nil && l.path != "-" {
		if err := l.open(); err != nil {
			l.writeErrors.Add(int64(l.pending))
			return
		}
	}
	n, err := l.w.Write(l.buf)
	l.size += int64(n)
	if err == nil {
		return
	}
	if n > len(l.buf) || n < 0 {
		n = 0
	}
	l.writeErrors.Add(int64(bytes.Count(l.buf[n:], []byte{'\n'})))
	if n > 0 && l.buf[n-1] != '\n' {
		// End the fragment so the next record starts on a line of its
		// own; readers stop at the one broken line, naming it.
		m, _ := l.w.Write([]byte{'\n'})
		l.size += int64(m)
	}
}

// prepare makes l.f ready to take n more bytes after those buffered: it
// reopens the file if an earlier rotation or Reopen lost it, and, when
// they would push a non-empty file past MaxBytes, writes the buffer and
// rotates. l.mu is held.
func (l *Ledger) prepare(n int64) error {
	if l.f == nil {
		if err := l.open(); err != nil {
			return err
		}
	}
	if have := l.size + int64(len(l.buf)); have > 0 && have+n > l.maxBytes {
		l.flushLocked()
		return l.rotate()
	}
	return nil
}

// rotate closes the file, shifts Path.(N-1) to Path.N ... Path to Path.1 and
// opens a fresh Path. A rename that fails leaves the full file under Path,
// and the ledger keeps appending to it: larger than MaxBytes, but no record
// is lost. Only failing to open Path loses the record at hand. l.mu is held.
func (l *Ledger) rotate() error {
	l.f.Sync()
	l.f.Close() // every byte was handed over by write(2); nothing to lose here
	l.f, l.w = nil, nil
	for i := l.maxBackups - 1; i >= 1; i-- {
		os.Rename(l.backup(i), l.backup(i+1)) // missing backups are fine
	}
	os.Rename(l.path, l.backup(1))
	return l.open()
}

func (l *Ledger) backup(i int) string { return l.path + "." + strconv.Itoa(i) }

// Reopen closes the ledger file and opens Path again, creating it if it has
// gone. It is for external rotation (logrotate's rename followed by SIGHUP):
// records written before Reopen stay in the renamed file, later ones go to
// the new one. In stdout mode, with no ledger, or after Close it does
// nothing.
func (l *Ledger) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.path == "" || l.path == "-" {
		return nil
	}
	l.flushLocked()
	var err error
	if l.f != nil {
		l.f.Sync()
		err = l.f.Close()
		l.f, l.w = nil, nil
	}
	if oerr := l.open(); oerr != nil {
		return errors.Join(err, oerr) // the next Record tries again
	}
	if err != nil {
		return fmt.Errorf("close usage ledger: %w", err)
	}
	return nil
}

// Close writes what is buffered, then syncs and closes the ledger file.
// Records that arrive after Close are dropped and counted by Dropped.
// Stdout is never closed. Closing twice is harmless.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.stop != nil {
		close(l.stop)
		// The flusher may be waiting for l.mu: let it go, then wait.
		l.mu.Unlock()
		<-l.done
		l.mu.Lock()
	}
	l.flushLocked()
	if l.f == nil {
		return nil
	}
	serr := l.f.Sync()
	cerr := l.f.Close()
	l.f, l.w = nil, nil
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("close usage ledger: %w", err)
	}
	return nil
}

// WriteErrors is how many records were lost because they could not be
// encoded, written, or because the file could not be opened or rotated.
// Export it as a counter (prometheus.NewCounterFunc) and alert on it.
func (l *Ledger) WriteErrors() int64 { return l.writeErrors.Load() }

// Dropped is how many records arrived after Close and were not written.
// Nonzero means shutdown closed the ledger before the last request finished.
func (l *Ledger) Dropped() int64 { return l.dropped.Load() }

// millis is d in milliseconds, rounded to the microsecond.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// Sinks sends each Record to every sink in order (a Ledger, Metrics, ...),
// so that the proxy, which takes one usage sink, feeds all of them.
type Sinks []interface{ Record(Record) }

// Record passes r to each sink.
func (s Sinks) Record(r Record) {
	for _, sink := range s {
		sink.Record(r)
	}
}
