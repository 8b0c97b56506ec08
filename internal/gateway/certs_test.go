package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/devcert"
	"github.com/bedrock-gateway/gateway/internal/fakeclock"
)

// newCert writes a fresh self-signed pair into its own directory and
// returns the files' contents.
func newCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	dir := t.TempDir()
	cf, kf, err := devcert.Write(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err = os.ReadFile(cf)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err = os.ReadFile(kf)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// install writes a pair over certFile and keyFile, with a modification
// time of mtime, so that the change is visible whatever the file system's
// timestamp resolution.
func install(t *testing.T, certFile, keyFile string, certPEM, keyPEM []byte, mtime time.Time) {
	t.Helper()
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// handshakeCert connects to addr and returns the certificate it is shown.
func handshakeCert(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw
}

// pemDER returns the DER bytes of the first certificate in certPEM.
func pemDER(t *testing.T, certPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	return block.Bytes
}

// TestCertReload: a new certificate and key are served from the first
// handshake after the check interval; a broken pair is refused, logged
// once, and the last good certificate kept.
func TestCertReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certA, keyA := newCert(t)
	certB, keyB := newCert(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	install(t, certFile, keyFile, certA, keyA, t0)

	clk := fakeclock.At(time.Unix(1_700_000_000, 0))
	var logs strings.Builder
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	r, err := newCertReloader(certFile, keyFile, 5*time.Second, clk.Now, logger)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	addr := ln.Addr().String()
	derA, derB := pemDER(t, certA), pemDER(t, certB)

	steps := []struct {
		name    string
		change  func()
		advance time.Duration
		want    []byte
	}{
		{"initial", nil, 0, derA},
		{"new pair, before the interval", func() { install(t, certFile, keyFile, certB, keyB, t0.Add(time.Minute)) }, 4 * time.Second, derA},
		{"new pair, after the interval", nil, time.Second, derB},
		{"mismatched pair refused", func() { install(t, certFile, keyFile, certA, keyB, t0.Add(2*time.Minute)) }, 5 * time.Second, derB},
		{"still refused, logged once", nil, 5 * time.Second, derB},
		{"good pair again", func() { install(t, certFile, keyFile, certA, keyA, t0.Add(3*time.Minute)) }, 5 * time.Second, derA},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		clk.Advance(s.advance)
		if got := handshakeCert(t, addr); !bytes.Equal(got, s.want) {
			t.Errorf("%s: served the wrong certificate", s.name)
		}
	}
	if n := strings.Count(logs.String(), "TLS certificate reload refused"); n != 1 {
		t.Errorf("refusals logged %d times, want 1:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), `"msg":"TLS certificate reloaded"`); n != 2 {
		t.Errorf("reloads logged %d times, want 2:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("logs contain key material")
	}
}
