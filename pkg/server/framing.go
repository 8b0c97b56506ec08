package server

// Request smuggling. A request whose framing two HTTP/1.x parsers may read
// differently lets a client hide a second request in the first one's body,
// past a load balancer that frames it otherwise. net/http hides the worst
// case from handlers: for a request with both Content-Length and
// Transfer-Encoding it deletes Content-Length, reads the body as chunked
// and keeps the connection open (RFC 9112 section 6.1 allows serving it
// only if the connection is closed after). So the check lives below
// net/http: every connection Serve accepts is wrapped in a conn whose Read
// follows the HTTP/1.x framing of the bytes net/http is about to parse,
// and guard, around the handler, answers for what it found.
//
// Refused with 400 (the connection is closed, and nothing after the
// refused request's header block is ever handed to net/http):
//   - Content-Length and Transfer-Encoding in one request, in any order
//     and case, including HTTP/1.0 (net/http frames that by
//     Content-Length and may keep the connection);
//   - Transfer-Encoding in an HTTP/1.0 request (net/http ignores it;
//     RFC 9112 section 6.1: the framing is faulty);
//   - obsolete line folding (RFC 9112 section 5.2 allows rejecting it;
//     net/http joins the lines, a proxy may not);
//   - an invalid or conflicting Content-Length (net/http answers these
//     itself before any handler runs).
//
// net/http already refuses, and closes on, more than one Transfer-Encoding
// field, any coding but "chunked", two different Content-Lengths and
// malformed field names; HTTP/2 forbids Transfer-Encoding (net/http's
// HTTP/2 server answers 400).
//
// The watcher skips a Content-Length body by count. It does not parse
// chunked bodies: after a chunked request it stops watching and the
// connection is closed after that request's answer, so that a client
// sending one pays only a reconnect.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Verdicts on a connection, in increasing order of severity; the
// refusals index refusals.
const (
	keepAlive  uint32 = iota // well framed so far
	closeAfter               // no longer watched (chunked body): close after the request being answered
	refuseCLTE
	refuseTE10
	refuseObsFold
	refuseBadCL
)

// refusals are the messages clients get, by verdict.
var refusals = [...]string{
	refuseCLTE:    "request has both Content-Length and Transfer-Encoding (RFC 9112 section 6.1)",
	refuseTE10:    "HTTP/1.0 request has Transfer-Encoding (RFC 9112 section 6.1)",
	refuseObsFold: "request header uses obsolete line folding (RFC 9112 section 5.2)",
	refuseBadCL:   "request has an invalid or conflicting Content-Length (RFC 9112 section 6.3)",
}

// RefusalReasons are the reasons Options.Refused is given, by verdict:
// short, fixed labels for a metric.
var RefusalReasons = [...]string{
	refuseCLTE:    "content_length_and_transfer_encoding",
	refuseTE10:    "transfer_encoding_http10",
	refuseObsFold: "obsolete_line_folding",
	refuseBadCL:   "bad_content_length",
}

// Parser states.
const (
	stPreface     uint8 = iota // a plain connection's first bytes: the HTTP/2 preface, or a request line
	stStart                    // before a request line; blank lines are skipped (net/http skips some after a POST)
	stRequestLine              // in the request line
	stLineStart                // at the start of a header line, or of the blank line ending the block
	stLineCR                   // after a CR at the start of a header line
	stName                     // matching a field name against name
	stSkipLine                 // in a line whose rest does not matter
	stCLValue                  // in a Content-Length value
	stBody                     // in a Content-Length body
	stOff                      // not watching: HTTP/2, a chunked body, or refused
)

// What the current header block holds.
const (
	hasCL uint8 = 1 << iota
	hasTE
	hasObsFold
	hasBadCL
	isHTTP10
)

// h2Preface opens an HTTP/2 connection with prior knowledge (RFC 9113
// section 3.4); net/http serves HTTP/2 on a plain connection that opens
// with it.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// http10 is "HTTP/1.0" as eight bytes, big-endian.
const http10 = 'H'<<56 | 'T'<<48 | 'T'<<40 | 'P'<<32 | '/'<<24 | '1'<<16 | '.'<<8 | '0'

// framing follows the HTTP/1.x framing of one connection's requests. Its
// parser never buffers: it keeps a few counters across reads, so a header
// block may arrive a byte at a time.
type framing struct {
	// verdict is read by guard in the handler's goroutine.
	verdict atomic.Uint32

	// The rest is the parser's, used only by Read: http.Server never
	// reads a connection from two goroutines at once.
	st    uint8
	block uint8 // has* and isHTTP10 bits of the current header block
	vst   uint8 // in a Content-Length value: 0 before the digits, 1 in them, 2 after
	cut   bool  // refused: Read returns EOF from now on
	i     int   // bytes of h2Preface or of name matched
	name  string
	// tail holds the last 8 bytes of the request line, prev the 8 before
	// its last byte (in case that is the CR of CRLF).
	tail, prev uint64
	cl         int64 // the block's Content-Length, then the body bytes left
	v          int64 // the Content-Length value being read
}

// scan follows p, the next bytes read from the connection. If a header
// block in p is refused it returns the length of p up to the end of that
// block, else -1.
func (f *framing) scan(p []byte) int {
	i := 0
	for i < len(p) {
		switch f.st {
		case stPreface:
			if p[i] == h2Preface[f.i] {
				i++
				if f.i++; f.i == len(h2Preface) {
					f.st = stOff
					return -1
				}
				continue
			}
			// HTTP/1.x: what matched so far starts the first request,
			// and has neither Content-Length nor Transfer-Encoding.
			f.st = stStart
			f.scan(h2Preface[:f.i])
		case stStart:
			if p[i] == '\r' || p[i] == '\n' {
				i++
				continue
			}
			f.st, f.block, f.cl, f.tail, f.prev = stRequestLine, 0, 0, 0, 0
		case stRequestLine:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				f.fold(p[i:])
				return -1
			}
			f.fold(p[i : i+j])
			if t := f.tail; t == http10 || byte(t) == '\r' && f.prev == http10 {
				f.block |= isHTTP10
			}
			i += j + 1
			f.st = stLineStart
		case stLineStart:
			b := p[i]
			i++
			switch b {
			case '\n':
				if f.endBlock() {
					return i
				}
			case '\r':
				f.st = stLineCR
			case ' ', '\t':
				f.block |= hasObsFold
				f.st = stSkipLine
			case 'c', 'C':
				f.name, f.i, f.st = "content-length", 1, stName
			case 't', 'T':
				f.name, f.i, f.st = "transfer-encoding", 1, stName
			default:
				f.st = stSkipLine
			}
		case stLineCR:
			if p[i] != '\n' {
				f.st = stSkipLine // net/http refuses such a line
				continue
			}
			i++
			if f.endBlock() {
				return i
			}
		case stName:
			for ; f.i < len(f.name) && i < len(p); f.i, i = f.i+1, i+1 {
				b := p[i]
				if 'A' <= b && b <= 'Z' {
					b += 'a' - 'A'
				}
				if b != f.name[f.i] {
					break
				}
			}
			switch {
			case i == len(p):
			case f.i == len(f.name) && p[i] == ':':
				i++
				if f.name[0] == 't' {
					f.block |= hasTE
					f.st = stSkipLine
				} else {
					f.v, f.vst, f.st = 0, 0, stCLValue
				}
			default:
				f.st = stSkipLine
			}
		case stSkipLine:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return -1
			}
			i += j + 1
			f.st = stLineStart
		case stCLValue:
			// As net/http reads it: 1*DIGIT up to 2^63-1, between
			// optional whitespace.
			b := p[i]
			i++
			switch {
			case b == '\n':
				f.endContentLength()
				f.st = stLineStart
			case b == ' ' || b == '\t' || b == '\r':
				if f.vst == 1 {
					f.vst = 2
				}
			case '0' <= b && b <= '9' && f.vst < 2 && f.v <= (math.MaxInt64-int64(b-'0'))/10:
				f.v = f.v*10 + int64(b-'0')
				f.vst = 1
			default:
				f.block |= hasBadCL
				f.st = stSkipLine
			}
		case stBody:
			if n := int64(len(p) - i); n < f.cl {
				f.cl -= n
				return -1
			}
			i += int(f.cl)
			f.st = stStart
		default: // stOff
			return -1
		}
	}
	return -1
}

// fold adds b, more of the request line, to tail and prev.
func (f *framing) fold(b []byte) {
	if len(b) > 9 {
		b = b[len(b)-9:]
	}
	for _, c := range b {
		f.prev, f.tail = f.tail, f.tail<<8|uint64(c)
	}
}

func (f *framing) endContentLength() {
	if f.vst == 0 || f.block&hasCL != 0 && f.v != f.cl {
		f.block |= hasBadCL
	}
	f.block |= hasCL
	f.cl = f.v
}

// endBlock judges a header block at its blank line. It reports whether
// the request is refused.
func (f *framing) endBlock() bool {
	var v uint32
	switch b := f.block; {
	case b&hasObsFold != 0:
		v = refuseObsFold
	case b&hasBadCL != 0:
		v = refuseBadCL
	case b&hasTE != 0 && b&hasCL != 0:
		v = refuseCLTE
	case b&hasTE != 0 && b&isHTTP10 != 0:
		v = refuseTE10
	case b&hasTE != 0:
		// Chunked (net/http refuses any other coding).
		f.verdict.Store(closeAfter)
		f.st = stOff
		return false
	case f.cl > 0:
		f.st = stBody
		return false
	default:
		f.st = stStart
		return false
	}
	f.verdict.Store(v)
	f.st, f.cut = stOff, true
	return true
}

// conn is an accepted connection whose HTTP/1.x framing is watched.
type conn struct {
	net.Conn
	f framing
}

func (c *conn) Read(p []byte) (int, error) {
	if c.f.st == stOff {
		if c.f.cut {
			return 0, io.EOF
		}
		return c.Conn.Read(p)
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if cut := c.f.scan(p[:n]); cut >= 0 {
			return cut, nil
		}
	}
	return n, err
}

// CloseWrite lets http.Server half-close a connection before closing one
// whose request it did not read to the end, so that the client reads the
// answer rather than a reset.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) framing() *framing { return &c.f }

// tlsConn is a watched *tls.Conn that negotiated HTTP/1.x; http.Server
// sets Request.TLS from its ConnectionState.
type tlsConn struct {
	*conn
	tls *tls.Conn
}

func (c tlsConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

type framingKey struct{}

// connContext gives the requests of a watched connection its framing.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if w, ok := c.(interface{ framing() *framing }); ok {
		return context.WithValue(ctx, framingKey{}, w.framing())
	}
	return ctx
}

// guard answers a request on a connection whose framing was refused with
// 400 and Connection: close, in the shape Bedrock uses, without calling h;
// on a connection no longer watched it has the connection closed after
// the answer.
func guard(h http.Handler, log *slog.Logger, refused func(reason string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := r.Context().Value(framingKey{}).(*framing); ok {
			switch v := f.verdict.Load(); v {
			case keepAlive:
			case closeAfter:
				w.Header().Set("Connection", "close")
			default:
				log.Warn("refused a request with ambiguous framing", "remote", r.RemoteAddr, "reason", refusals[v])
				if refused != nil {
					refused(RefusalReasons[v])
				}
				refuse(w, refusals[v])
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func refuse(w http.ResponseWriter, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", "ValidationException")
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusBadRequest)
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	w.Write(body)
}

// listener wraps each connection it accepts in a conn. A *tls.Conn (the
// listener is tls.NewListener) is handshaken first, here rather than by
// http.Server: the plaintext is only seen above TLS, but http.Server
// serves HTTP/2 only on a bare *tls.Conn whose ALPN picked "h2", so only
// connections that negotiated HTTP/1.x are wrapped. The handshake keeps
// http.Server's behaviour: its timeout, its log line, its answer to plain
// HTTP.
type listener struct {
	net.Listener
	timeout time.Duration
	log     *slog.Logger
	conns   chan accepted
	done    <-chan struct{} // closed by Close
	stop    context.CancelFunc
	once    sync.Once
	err     error // of closing the listener
	wg      sync.WaitGroup
}

type accepted struct {
	c   net.Conn
	err error
}

// newListener serves ln's connections wrapped; handshakeTimeout bounds a
// TLS handshake.
func newListener(ln net.Listener, handshakeTimeout time.Duration, log *slog.Logger) *listener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{Listener: ln, timeout: handshakeTimeout, log: log,
		conns: make(chan accepted), done: ctx.Done(), stop: cancel}
	l.wg.Add(1)
	go l.acceptLoop(ctx)
	return l
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.conns:
		return a.c, a.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listener and any connection still in its handshake,
// and returns once its goroutines have.
func (l *listener) Close() error {
	l.once.Do(func() {
		l.stop()
		l.err = l.Listener.Close()
		l.wg.Wait()
	})
	return l.err
}

func (l *listener) acceptLoop(ctx context.Context) {
	defer l.wg.Done()
	for {
		c, err := l.Listener.Accept()
		switch tc, isTLS := c.(*tls.Conn); {
		case err != nil:
			// http.Server retries a temporary error and closes the
			// listener on any other.
			if !l.deliver(nil, err) {
				return
			}
		case isTLS:
			l.wg.Add(1)
			go l.handshake(ctx, tc)
		default:
			if !l.deliver(&conn{Conn: c, f: framing{st: stPreface}}, nil) {
				return
			}
		}
	}
}

// deliver hands c (or err) to Accept; once the listener is closed it
// closes c instead and reports false.
func (l *listener) deliver(c net.Conn, err error) bool {
	select {
	case l.conns <- accepted{c, err}:
		return true
	case <-l.done:
		if c != nil {
			c.Close()
		}
		return false
	}
}

func (l *listener) handshake(ctx context.Context, tc *tls.Conn) {
	defer l.wg.Done()
	if l.timeout > 0 {
		tc.SetDeadline(time.Now().Add(l.timeout))
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		reason := err.Error()
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			reason = "client sent an HTTP request to an HTTPS server"
		}
		tc.Close()
		if ctx.Err() == nil {
			l.log.Warn("http: TLS handshake error", "remote", tc.RemoteAddr().String(), "error", reason)
		}
		return
	}
	tc.SetDeadline(time.Time{})
	var c net.Conn = tc
	switch tc.ConnectionState().NegotiatedProtocol {
	case "", "http/1.1", "http/1.0": // http.Server speaks HTTP/1.x on these
		c = tlsConn{&conn{Conn: tc, f: framing{st: stStart}}, tc}
	}
	l.deliver(c, nil)
}

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP request, as net/http tells.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}
