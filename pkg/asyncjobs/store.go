// Package asyncjobs remembers who started each Bedrock asynchronous
// invocation, so that the gateway can show a caller only its own jobs.
//
// Every caller's session is an assumed role of the same AWS account, and
// Bedrock shows every job of the account to any principal allowed to call
// GetAsyncInvoke or ListAsyncInvokes; the gateway therefore keeps its own
// record: invocation ARN → owner, written when StartAsyncInvoke succeeds.
//
// The store is a key→value map whose entries expire a fixed Retention
// after they are written (the semantics of Redis' SET key value NX PX
// ttl), so that a fleet-wide store can replace this one without changing
// its users. This one lives in memory, and is persisted to an append-only
// JSON Lines file when a path is configured:
//
//	{"arn":"arn:aws:bedrock:us-east-1:123456789012:async-invoke/abc123def456","owner":"...","time":"2026-01-02T03:04:05Z"}
//
// one line per record, written through (one write(2), then fsync) before
// Record returns, loaded at Open, where expired and unreadable lines are
// dropped by rewriting the file.
package asyncjobs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultRetention is how long an ownership record is kept when
// Config.Retention is zero. AWS does not document how long Bedrock keeps
// an asynchronous invocation listed; 30 days outlasts any job (a job runs
// for hours at most) and the time a caller plausibly comes back for it.
// An owner cannot see a job whose record has expired: the gateway then
// answers as it does for a job that does not exist.
const DefaultRetention = 30 * 24 * time.Hour

// MinRetention is the shortest Retention allowed: a record must outlive
// the job it names, or its owner would lose sight of a job still running.
const MinRetention = time.Hour

// ErrConflict means Record was asked to give an invocation a second,
// different owner. The first owner keeps it: a record is never
// transferred (a caller that reused another caller's client request token
// gets the other's invocation ARN back from Bedrock, not its job).
var ErrConflict = errors.New("invocation already has another owner")

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("ownership store is closed")

// Config configures a Store.
type Config struct {
	// Path is the JSON Lines file the records are appended to and loaded
	// from at Open. It is created with mode 0600 if missing; its
	// directory is not created. Empty keeps records in memory only: a
	// restart forgets them, and owners then no longer see their jobs.
	Path string
	// Retention is how long a record is kept after it was written, at
	// least MinRetention. Default DefaultRetention.
	Retention time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger is told what Open loaded and dropped. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports every problem in c at once (errors.Join), each message
// starting with its key in the config file's async block. It has no side
// effects and does not touch Path.
func (c Config) Validate() error {
	var errs []error
	if c.Retention < 0 || (c.Retention > 0 && c.Retention < MinRetention) {
		errs = append(errs, fmt.Errorf("ownership_retention: must be at least %v (0 means %v), got %v", MinRetention, DefaultRetention, c.Retention))
	}
	return errors.Join(errs...)
}

// Store is the ownership record: invocation ARN → owner, each entry
// expiring Retention after it was written. Memory holds the entries
// written within the last Retention (expired ones are swept as new ones
// arrive). A Store is safe for concurrent use.
type Store struct {
	path      string
	retention time.Duration
	now       func() time.Time

	// writeMu serializes Record, so that its check and its write are
	// one step (first owner wins), and guards the file.
	writeMu   sync.Mutex
	f         *os.File // nil in memory-only mode and after Close
	closed    bool
	nextSweep time.Time

	mu     sync.RWMutex // guards owners
	owners map[string]entry
}

type entry struct {
	owner   string
	expires time.Time
}

// line is one record of the file.
type line struct {
	ARN   string    `json:"arn"`
	Owner string    `json:"owner"`
	Time  time.Time `json:"time"`
}

// Open returns a store configured by cfg. With a Path it loads the file
// (creating it if missing), keeping the records not yet expired, and
// opens it for appending; a file that cannot be read or opened for
// appending is an error, so that a misconfigured path stops the gateway
// at start rather than losing every record. Lines that are not records
// (a write cut short by a machine crash) are skipped and logged.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("async ownership store: %w", err)
	}
	s := &Store{path: cfg.Path, retention: cfg.Retention, now: cfg.Now, owners: map[string]entry{}}
	if s.retention == 0 {
		s.retention = DefaultRetention
	}
	if s.now == nil {
		s.now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s.nextSweep = s.now().Add(s.sweepEvery())
	if s.path == "" {
		return s, nil
	}
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	if st.malformed > 0 {
		log.Warn("async ownership file: skipped lines that are not records", "path", s.path, "lines", st.malformed)
	}
	compacted := false
	if st.dropped() > 0 {
		if err := s.compact(); err != nil {
			// Appending still works; the file keeps its dead lines
			// until a later start manages to rewrite it.
			log.Warn("async ownership file: could not drop expired and unreadable lines", "path", s.path, "error", err)
		} else {
			compacted = true
		}
	}
	if err := s.openAppend(st.unterminated && !compacted); err != nil {
		return nil, err
	}
	log.Info("async ownership records loaded", "path", s.path, "records", len(s.owners), "expired_dropped", st.expired)
	return s, nil
}

// loadStats says what load found.
type loadStats struct {
	expired, malformed, repeats int
	// unterminated: the file does not end in a newline.
	unterminated bool
}

// dropped is how many lines load did not keep.
func (st loadStats) dropped() int { return st.expired + st.malformed + st.repeats }

// load reads the file into owners. A missing file is empty.
func (s *Store) load() (loadStats, error) {
	var st loadStats
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("open async ownership file: %w", err)
	}
	defer f.Close()
	now := s.now()
	br := bufio.NewReader(f)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			st.unterminated = b[len(b)-1] != '\n'
			var l line
			switch {
			case json.Unmarshal(b, &l) != nil || l.ARN == "" || l.Owner == "" || l.Time.IsZero():
				st.malformed++
			case !now.Before(l.Time.Add(s.retention)):
				st.expired++
			default:
				if e, ok := s.owners[l.ARN]; ok && now.Before(e.expires) {
					st.repeats++ // the first owner keeps it
					continue
				}
				s.owners[l.ARN] = entry{owner: l.Owner, expires: l.Time.Add(s.retention)}
			}
		}
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("read async ownership file: %w", err)
		}
	}
}

// compact replaces the file with one holding only the loaded records:
// written beside it, synced, then renamed over it.
func (s *Store) compact() error {
	var buf bytes.Buffer
	for arn, e := range s.owners {
		b, err := json.Marshal(line{ARN: arn, Owner: e.owner, Time: e.expires.Add(-s.retention).UTC()})
		if err != nil {
			return err
		}
		buf.Write(append(b, '\n'))
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync() // the rename itself survives a machine crash; best effort
		d.Close()
	}
	return nil
}

// openAppend opens the file for appending. If the file may still end in
// a line cut short, a newline is written first, so that the next record
// starts a line of its own.
func (s *Store) openAppend(terminate bool) error {
	f, err := os.OpenFile(s.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open async ownership file: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err == nil && terminate {
		_, err = f.Write([]byte{'\n'})
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("open async ownership file %s: %w", s.path, err)
	}
	s.f = f
	return nil
}

// Owner returns the owner recorded for arn; ok is false when there is
// none: never recorded, or expired. It never fails; the error is for
// stores that can.
func (s *Store) Owner(_ context.Context, arn string) (owner string, ok bool, err error) {
	now := s.now()
	s.mu.RLock()
	e, found := s.owners[arn]
	s.mu.RUnlock()
	if !found || !now.Before(e.expires) {
		return "", false, nil
	}
	return e.owner, true, nil
}

// Record notes that owner started arn, for Retention. Recording the same
// owner again does nothing; another owner is ErrConflict and changes
// nothing. With a file, Record returns once the record is written and
// synced; if that fails the record is still kept in memory (until the
// next restart) and the error is returned.
func (s *Store) Record(ctx context.Context, arn, owner string) error {
	if arn == "" || owner == "" {
		return errors.New("record async ownership: empty invocation ARN or owner")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("record async ownership: %w", err)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	now := s.now()
	s.mu.RLock()
	e, found := s.owners[arn]
	s.mu.RUnlock()
	if found && now.Before(e.expires) {
		if e.owner == owner {
			return nil
		}
		return fmt.Errorf("record async ownership of %s: %w", arn, ErrConflict)
	}
	var werr error
	if s.f != nil {
		werr = s.write(line{ARN: arn, Owner: owner, Time: now.UTC()})
	}
	s.mu.Lock()
	s.owners[arn] = entry{owner: owner, expires: now.Add(s.retention)}
	if now.After(s.nextSweep) {
		for k, e := range s.owners {
			if !now.Before(e.expires) {
				delete(s.owners, k)
			}
		}
		s.nextSweep = now.Add(s.sweepEvery())
	}
	s.mu.Unlock()
	return werr
}

// write appends l to the file and syncs it. s.writeMu is held.
func (s *Store) write(l line) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("record async ownership: %w", err)
	}
	b = append(b, '\n')
	n, err := s.f.Write(b)
	if err != nil {
		if n > 0 && n < len(b) {
			s.f.Write([]byte{'\n'}) // end the fragment; Open skips it
		}
		return fmt.Errorf("write async ownership file: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync async ownership file: %w", err)
	}
	return nil
}

// sweepEvery is how often Record drops expired entries from memory: a
// small fraction of Retention, so memory holds little more than the
// records of the last Retention.
func (s *Store) sweepEvery() time.Duration { return min(s.retention/16, time.Hour) }

// Len is how many records memory holds, expired ones not yet swept
// included.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.owners)
}

// Close syncs and closes the file. Owner keeps answering from memory;
// Record fails with ErrClosed. Closing twice is harmless.
func (s *Store) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := errors.Join(s.f.Sync(), s.f.Close())
	s.f = nil
	if err != nil {
		return fmt.Errorf("close async ownership file: %w", err)
	}
	return nil
}
