package memnet

import (
	"bytes"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// bufferSize is how many bytes one direction of a connection holds before
// Write blocks: the in-memory stand-in for a kernel socket buffer. Any
// size keeps HTTP correct; 64 KiB lets a request or an AssumeRole response
// be written in one go, as it would be over loopback TCP.
const bufferSize = 64 << 10

// Addr is the address of an in-memory endpoint. Its String form is
// "host:port" so that code calling net.SplitHostPort on
// http.Request.RemoteAddr keeps working; the host is not an IP address.
type Addr struct {
	Host string
	Port int
}

// Network returns "memnet".
func (Addr) Network() string { return "memnet" }

// String returns "host:port".
func (a Addr) String() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// pipe is the state shared by the two ends of one connection.
//
// Every wait is a sync.Cond.Wait and mu is never held across one, so a
// goroutine blocked in Read or Write is durably blocked in a
// testing/synctest bubble, and fake time advances past it. Deadlines are
// time.AfterFunc timers that broadcast on cond; inside a bubble they run
// on the bubble's fake clock.
//
// net.Pipe is almost as good but not quite: it serializes Writes with a
// sync.Mutex held while the writer waits for the reader, and a goroutine
// waiting in sync.Mutex.Lock is not durably blocked, so two concurrent
// Writes with no reader yet stop fake time for good (the bubble hangs
// instead of advancing or reporting a deadlock). It is also unbuffered,
// so every Write waits for a matching Read, which TCP does not do.
type pipe struct {
	mu   sync.Mutex
	cond sync.Cond
	// dir[i] carries the bytes written by end i to end 1-i.
	dir [2]direction
	end [2]endState
}

type direction struct {
	buf bytes.Buffer
	// eof is set when the writer closed or half-closed: the reader gets
	// io.EOF once buf is drained, the writer gets an error.
	eof bool
	// gone is set when the reader closed: further writes fail and
	// buffered bytes are dropped, as a TCP reset would.
	gone bool
}

type endState struct {
	closed        bool
	writing       bool // a Write is in progress
	read, write   deadline
	local, remote Addr
}

// deadline is one of an end's two deadlines.
type deadline struct {
	expired bool
	timer   *time.Timer
	// gen invalidates the callback of a timer that was replaced but had
	// already fired and is waiting for mu.
	gen uint64
}

// newPipe returns the two ends of a connection: c0 is the dialing side
// with address local, c1 the accepting side with address remote.
func newPipe(local, remote Addr) (c0, c1 *conn) {
	p := &pipe{}
	p.cond.L = &p.mu
	p.end[0].local, p.end[0].remote = local, remote
	p.end[1].local, p.end[1].remote = remote, local
	return &conn{p: p, i: 0}, &conn{p: p, i: 1}
}

// conn is one end of a pipe. It implements net.Conn and, like
// *net.TCPConn, CloseWrite.
type conn struct {
	p *pipe
	i int
}

var _ net.Conn = (*conn)(nil)

func (c *conn) opError(op string, err error) error {
	e := &c.p.end[c.i]
	return &net.OpError{Op: op, Net: "memnet", Source: e.local, Addr: e.remote, Err: err}
}

// Read reads what the peer wrote. It returns io.EOF once the peer has
// closed (or half-closed) and everything it wrote has been read.
func (c *conn) Read(b []byte) (int, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	in := &p.dir[1-c.i]
	me := &p.end[c.i]
	for {
		switch {
		case me.closed:
			return 0, c.opError("read", net.ErrClosed)
		case in.buf.Len() > 0:
			if len(b) == 0 {
				return 0, nil
			}
			n, _ := in.buf.Read(b)
			p.cond.Broadcast() // room for the peer's Write
			return n, nil
		case in.eof:
			return 0, io.EOF
		case me.read.expired:
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		case len(b) == 0:
			return 0, nil
		}
		p.cond.Wait()
	}
}

// Write writes all of b unless the connection is closed or the write
// deadline passes; it blocks while the peer's receive buffer is full.
// Concurrent Writes do not interleave, as with a TCP connection.
func (c *conn) Write(b []byte) (int, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	out := &p.dir[c.i]
	me := &p.end[c.i]
	n := 0
	turn := false // whether this call holds me.writing
	defer func() {
		if turn {
			me.writing = false
			p.cond.Broadcast()
		}
	}()
	for {
		switch {
		case me.closed:
			return n, c.opError("write", net.ErrClosed)
		case out.eof, out.gone:
			return n, c.opError("write", io.ErrClosedPipe)
		case me.write.expired:
			return n, c.opError("write", os.ErrDeadlineExceeded)
		}
		if !turn && me.writing {
			p.cond.Wait()
			continue
		}
		turn, me.writing = true, true
		if room := bufferSize - out.buf.Len(); room > 0 {
			k := min(room, len(b))
			out.buf.Write(b[:k])
			b = b[k:]
			n += k
			p.cond.Broadcast()
			if len(b) == 0 {
				return n, nil
			}
			continue
		}
		p.cond.Wait()
	}
}

// Close closes this end. The peer reads what was already written, then
// io.EOF; its writes fail.
func (c *conn) Close() error {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	me := &p.end[c.i]
	if me.closed {
		return c.opError("close", net.ErrClosed)
	}
	me.closed = true
	me.read.stop()
	me.write.stop()
	p.dir[c.i].eof = true
	in := &p.dir[1-c.i]
	in.gone = true
	in.buf.Reset()
	p.cond.Broadcast()
	return nil
}

// CloseWrite shuts down the writing side, as (*net.TCPConn).CloseWrite
// does: the peer reads io.EOF after the bytes already written. net/http's
// server calls it before closing a connection whose request body it did
// not read (and then sleeps 500ms, its rstAvoidanceDelay: fake time in a
// bubble).
func (c *conn) CloseWrite() error {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.end[c.i].closed {
		return c.opError("close", net.ErrClosed)
	}
	p.dir[c.i].eof = true
	p.cond.Broadcast()
	return nil
}

func (c *conn) LocalAddr() net.Addr  { return c.p.end[c.i].local }
func (c *conn) RemoteAddr() net.Addr { return c.p.end[c.i].remote }

func (c *conn) SetDeadline(t time.Time) error {
	return c.setDeadlines(t, true, true)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	return c.setDeadlines(t, true, false)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	return c.setDeadlines(t, false, true)
}

func (c *conn) setDeadlines(t time.Time, read, write bool) error {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	me := &p.end[c.i]
	if me.closed {
		return c.opError("set deadline", net.ErrClosed)
	}
	if read {
		me.read.set(p, t)
	}
	if write {
		me.write.set(p, t)
	}
	return nil
}

// set arms d for t (zero: no deadline). p.mu is held.
func (d *deadline) set(p *pipe, t time.Time) {
	d.stop()
	d.expired = false
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		d.expired = true
		p.cond.Broadcast()
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(dur, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if d.gen == gen {
			d.expired = true
			p.cond.Broadcast()
		}
	})
}

// stop disarms d's timer. p.mu is held.
func (d *deadline) stop() {
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}
