package proxy

import (
	"bytes"
	"errors"
	"math/bits"
	"sync"
	"unsafe"
)

// Request bodies are the gateway's largest allocations: each is read
// whole (SigV4 signs it) and, for Converse, copied once more to stamp the
// caller's identity in, so a 4 KiB prompt cost 8 KiB of garbage and a
// 100 KiB one 200 KiB, most of what the collector had to chase. Buffers
// from 4 KiB to 1 MiB, in power-of-two classes, are kept for reuse.
//
// A buffer goes back only when nothing can read it any more: the read
// buffer once the body sent upstream no longer aliases it, the upstream
// body once the transport closes it (its promise not to read it again).
// pooledBody's mutex keeps a Read still in flight on a cancelled request
// from copying out of a buffer already handed to another caller's
// request.
const (
	minShift  = 12 // 4 KiB
	maxShift  = 20 // 1 MiB
	minPooled = 1 << minShift
	maxPooled = 1 << maxShift
)

var bodyClasses [maxShift - minShift + 1]sync.Pool

// class returns the pool index for a buffer of capacity n, or -1.
func class(n int) int {
	if n < minPooled || n > maxPooled {
		return -1
	}
	return max(bits.Len(uint(n-1))-minShift, 0)
}

// getBuf returns a buffer of length n: pooled when n is in range, the
// capacity rounded up to its class.
func getBuf(n int) *[]byte {
	c := class(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if p, ok := bodyClasses[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, minPooled<<c)
	return &b
}

// putBuf gives p back to its pool. The caller must hold the only
// reference to the buffer.
func putBuf(p *[]byte) {
	if p == nil {
		return
	}
	c := cap(*p)
	if c&(c-1) != 0 { // not a class capacity: from make, let it go
		return
	}
	if i := class(c); i >= 0 {
		*p = (*p)[:0]
		bodyClasses[i].Put(p)
	}
}

// aliases reports whether a and b share a backing array start.
func aliases(a []byte, b *[]byte) bool {
	return b != nil && cap(a) > 0 && cap(*b) > 0 && unsafe.SliceData(a) == unsafe.SliceData(*b)
}

var errBodyClosed = errors.New("request body read after close")

// pooledBody is the upstream request body; Close returns its buffer.
type pooledBody struct {
	mu     sync.Mutex
	r      bytes.Reader
	buf    *[]byte
	closed bool
}

func (b *pooledBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	return b.r.Read(p)
}

// Close returns the buffer to its pool, once; later reads fail.
func (b *pooledBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.r.Reset(nil)
		putBuf(b.buf)
		b.buf = nil
	}
	return nil
}
