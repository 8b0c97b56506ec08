// Package logbuf is the log sink tests read back: a buffer safe for the
// concurrent writers a server's logger has.
package logbuf

import (
	"strings"
	"sync"
)

// Buffer collects everything written to it. The zero value is ready.
type Buffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
