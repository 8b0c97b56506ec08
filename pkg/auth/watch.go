package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultKeyWatchInterval is how often a KeyWatcher polls its file unless
// told otherwise: a revocation written by any replica takes effect on
// every replica within about this long.
const DefaultKeyWatchInterval = time.Second

// racyWindow is how close to the moment of reading a file's mtime must be
// for the read to be "racy": a file system with coarse timestamps (2 s on
// FAT, 1 s on some network file systems) may give a later write the same
// mtime and size, so such a file is re-read until its mtime is safely in
// the past (the trick git uses for its index).
const racyWindow = 2 * time.Second

// KeyWatcher keeps the current KeyStore of a key store file, reloading it
// when the file changes, so that keys created, revoked, expired or edited
// by `gateway keys` (on any replica sharing the file) take effect without
// a restart. Pass Current to NewDynamicKeyVerifier.
//
// A file that changes into something invalid (or disappears) is refused
// and logged, and the last valid store stays current: a typo must not
// lock every caller out. Safe for concurrent use.
type KeyWatcher struct {
	path     string
	interval time.Duration
	logger   *slog.Logger
	current  atomic.Pointer[KeyStore]

	mu       sync.Mutex // guards the fields below; serialises polls
	seen     os.FileInfo
	seenRacy bool
	readSum  [sha256.Size]byte // hash of the content last read
	readErr  error             // why that content was refused, or nil
	logged   string            // the error last logged, to log each once
}

// NewKeyWatcher loads the key store at path (an invalid or missing file is
// an error: the gateway should not start without its keys) and returns a
// watcher that polls it every interval (DefaultKeyWatchInterval if
// interval <= 0) once Run is called. Reload failures are logged to logger
// (nil discards them).
func NewKeyWatcher(path string, interval time.Duration, logger *slog.Logger) (*KeyWatcher, error) {
	if interval <= 0 {
		interval = DefaultKeyWatchInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &KeyWatcher{path: path, interval: interval, logger: logger}
	w.mu.Lock()
	_, err := w.poll()
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Current returns the most recent valid store. It never returns nil.
func (w *KeyWatcher) Current() *KeyStore {
	return w.current.Load()
}

// Run polls the file until ctx is done, then returns. Run it in its own
// goroutine; at most one Run per watcher is useful.
func (w *KeyWatcher) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Reload()
		}
	}
}

// Reload checks the file once now and makes its content current if it
// changed and is valid. It reports whether the current store changed and,
// while the file cannot be used, why; the error is also logged, once per
// distinct problem. It is what Run calls each interval; call it directly
// for a reload on demand (SIGHUP, say).
func (w *KeyWatcher) Reload() (changed bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed, err = w.poll()
	switch {
	case err == nil:
		w.logged = ""
	case err.Error() != w.logged:
		w.logged = err.Error()
		// Errors from decodeKeyStore describe records by index and field,
		// never a hash or a key.
		w.logger.Error("key store reload refused; keeping the previous keys",
			slog.String("path", w.path), slog.Any("error", err))
	}
	return changed, err
}

// poll is one check of the file; w.mu is held. The file is read only if
// its identity, size or mtime changed since the last read, or the last
// read was racy; it is parsed only if its content hash changed. Until the
// file changes again, a refused content keeps being reported.
func (w *KeyWatcher) poll() (bool, error) {
	fi, err := os.Stat(w.path)
	if err != nil {
		w.seen = nil
		return false, fmt.Errorf("key store: %w", err)
	}
	if w.seen != nil && !w.seenRacy && os.SameFile(w.seen, fi) &&
		fi.Size() == w.seen.Size() && fi.ModTime().Equal(w.seen.ModTime()) {
		return false, w.readErr
	}
	readAt := time.Now()
	data, err := os.ReadFile(w.path)
	if err != nil {
		w.seen = nil
		return false, fmt.Errorf("key store: %w", err)
	}
	// The stat describes what was read only if it still holds after the
	// read; otherwise look again next poll.
	after, err := os.Stat(w.path)
	stable := err == nil && os.SameFile(fi, after) && fi.Size() == after.Size() && fi.ModTime().Equal(after.ModTime())
	w.seen = fi
	w.seenRacy = !stable || !fi.ModTime().Before(readAt.Add(-racyWindow))

	sum := sha256.Sum256(data)
	if sum == w.readSum && (w.readErr != nil || w.current.Load() != nil) {
		return false, w.readErr
	}
	w.readSum = sum
	ks, err := decodeKeyStore(data)
	if err != nil {
		w.readErr = fmt.Errorf("load key store %s: %w", w.path, err)
		return false, w.readErr
	}
	w.readErr = nil
	w.current.Store(ks)
	return true, nil
}
