package usage

import (
	"encoding/json"
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
	// Now stamps records whose Time is zero. Default time.Now.
	Now func() time.Time
}

// Ledger is the append-only JSON Lines usage ledger: one line per Record.
//
// It writes through: each record is encoded and handed to the kernel with a
// single write(2), with no buffering in the process, so a record is on its
// way to disk (in the page cache) when Record returns. A crash of the
// gateway, a kill -9 or a graceful shutdown therefore loses no record that
// Record accepted; only a crash of the machine itself can lose the page
// cache, and Close (and rotation) fsync to narrow that window. One syscall
// per request is cheap next to a model call that takes seconds, and it buys
// a ledger that needs no flush goroutine and no drain on shutdown.
//
// A Ledger is safe for concurrent use. Record never fails the request: a
// record that cannot be written is counted (WriteErrors, Dropped) and the
// ledger carries on, reopening its file on the next record if it lost it.
type Ledger struct {
	path       string
	maxBytes   int64
	maxBackups int
	now        func() time.Time

	mu     sync.Mutex
	w      io.Writer // f, or the stdout writer; nil when Path is ""
	f      *os.File  // nil in stdout mode, and after a failed reopen
	size   int64     // bytes in f
	closed bool

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
	return l, nil
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
	return nil
}

// Record appends r to the ledger as one JSON line. It fills in Time (if
// zero), LatencyMS and TTFBMS (from Latency and TimeToFirstByte, when set).
// It returns once the line has been written, or counted as lost. It waits
// only for write(2) (its own and other records'): no timer, no queue. A
// file write does not block for long; a stdout pipe whose reader stalls
// stalls it, so point "-" at a collector that keeps reading.
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
	line, err := json.Marshal(r)
	if err != nil { // a Time outside years 0-9999, or a NaN LatencyMS
		l.writeErrors.Add(1)
		return
	}
	line = append(line, '\n')

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	if l.path != "-" {
		if err := l.prepare(int64(len(line))); err != nil {
			l.writeErrors.Add(1)
			return
		}
	}
	n, err := l.w.Write(line)
	l.size += int64(n)
	if err != nil {
		l.writeErrors.Add(1)
		if n > 0 && n < len(line) {
			// End the fragment so the next record starts on a line of its
			// own; a reader skips the one broken line.
			m, _ := l.w.Write([]byte{'\n'})
			l.size += int64(m)
		}
	}
}

// prepare makes l.f ready to take n more bytes: it reopens the file if an
// earlier rotation or Reopen lost it, and rotates when the write would push
// a non-empty file past MaxBytes. l.mu is held.
func (l *Ledger) prepare(n int64) error {
	if l.f == nil {
		if err := l.open(); err != nil {
			return err
		}
	}
	if l.size > 0 && l.size+n > l.maxBytes {
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

// Close syncs and closes the ledger file. Records that arrive after Close
// are dropped and counted by Dropped. Stdout is never closed. Closing twice
// is harmless.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
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
