package fakeaws

import (
	"bytes"
	"net/http"
	"regexp"
	"sync"
)

var issuedSecretElem = regexp.MustCompile(`<(SecretAccessKey|SessionToken)>([^<]+)</`)

// RecordIssued wraps an STS handler (STSHandler) and remembers every
// secret it hands out: the secret access keys and session tokens of the
// credentials in its answers. The fake otherwise keeps issued secrets to
// itself; tests that scan logs, ledgers or a shared store for leaks use
// this to know what to look for.
func RecordIssued(h http.Handler) (http.Handler, func() []string) {
	var mu sync.Mutex
	var secrets []string
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &teeWriter{ResponseWriter: w}
		h.ServeHTTP(tw, r)
		mu.Lock()
		defer mu.Unlock()
		for _, m := range issuedSecretElem.FindAllSubmatch(tw.buf.Bytes(), -1) {
			secrets = append(secrets, string(m[2]))
		}
	})
	return wrapped, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), secrets...)
	}
}

// teeWriter copies what a handler writes.
type teeWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	return w.ResponseWriter.Write(p)
}
