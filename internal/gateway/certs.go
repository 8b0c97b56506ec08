package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the data plane's TLS certificate and picks up new
// certificate and key files (cert-manager, a Kubernetes Secret update)
// without a restart. At most once per interval, a handshake checks whether
// either file changed (identity, size or modification time; a Secret
// volume swaps a symlink, which changes the identity) and, if so, loads
// the pair. A pair that does not load (say the certificate was replaced
// and the key not yet) is logged once and the previous certificate kept.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time
	logger            *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	certSeen os.FileInfo // files behind cert
	keySeen  os.FileInfo
	checked  time.Time
	failed   string // the last load error logged
}

// newCertReloader loads the pair; it fails if it cannot, so a broken
// certificate stops the start.
func newCertReloader(certFile, keyFile string, interval time.Duration, now func() time.Time, logger *slog.Logger) (*certReloader, error) {
	if now == nil {
		now = time.Now
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile, interval: interval, now: now, logger: logger}
	cfi, kfi, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.certSeen, r.keySeen, r.checked = &cert, cfi, kfi, now()
	return r, nil
}

func (r *certReloader) stat() (cert, key os.FileInfo, err error) {
	cert, err = os.Stat(r.certFile)
	if err != nil {
		return nil, nil, err
	}
	key, err = os.Stat(r.keyFile)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= r.interval {
		r.checked = now
		if err := r.reloadLocked(); err != nil && err.Error() != r.failed {
			r.failed = err.Error()
			r.logger.Error("TLS certificate reload refused; keeping the previous certificate", "error", err)
		}
	}
	if r.cert == nil {
		return nil, errors.New("no certificate")
	}
	return r.cert, nil
}

// reloadLocked loads the pair if either file changed; r.mu is held.
func (r *certReloader) reloadLocked() error {
	cfi, kfi, err := r.stat()
	if err != nil {
		return err
	}
	if sameFile(cfi, r.certSeen) && sameFile(kfi, r.keySeen) {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	r.cert, r.certSeen, r.keySeen, r.failed = &cert, cfi, kfi, ""
	attrs := []any{"cert_file", r.certFile}
	if cert.Leaf != nil {
		attrs = append(attrs, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	r.logger.Info("TLS certificate reloaded", attrs...)
	return nil
}

// notAfter is the current certificate's expiry as Unix seconds (0 if
// unknown), for the expiry gauge.
func (r *certReloader) notAfter() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cert == nil || r.cert.Leaf == nil {
		return 0
	}
	return float64(r.cert.Leaf.NotAfter.Unix())
}
