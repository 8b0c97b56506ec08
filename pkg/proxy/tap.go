package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// maxTapBytes bounds how much of a non-streaming response is kept to read
// its usage from; a larger body is relayed in full but not parsed.
const maxTapBytes = 8 << 20

const eventStreamType = "application/vnd.amazon.eventstream"

// responseTap watches Bedrock's response on its way to the client: it
// notes the status and request ID, meters tokens (event streams frame by
// frame, other bodies once complete), and keeps the idle timer fed. It
// never holds back a byte.
type responseTap struct {
	status    int
	requestID string
	errorType string // x-amzn-ErrorType of an error answer
	op        string
	header    http.Header

	// streamDone, if set, is called once when a relayed stream ends.
	streamDone func()

	mu     sync.Mutex // guards what the body reader writes, read by finish
	meter  *usage.StreamMeter
	buf    bytes.Buffer
	capped bool
	// end is how reading Bedrock's body ended: io.EOF, or the error that
	// cut it; nil while it is being read, or if the relay stopped first.
	end error

	// body is the response body the tap replaces, allocated with it.
	body tappedBody
	// sse is set for a server-sent-events answer; buf then holds its
	// tail.
	sse bool
}

const sseType = "text/event-stream"

// sseTail is how much of a server-sent-events stream the tap keeps: the
// usage chunk and [DONE] are well within it.
const sseTail = 16 << 10

// tapResponse installs the tap on Bedrock's response (from modifyResponse).
func (p *Proxy) tapResponse(resp *http.Response) error {
	st := stateFrom(resp.Request.Context())
	if st == nil || st.out == nil {
		return nil
	}
	// The answer is metered as the Bedrock operation that produced it:
	// an OpenAI chat completion translated to Converse is a Converse
	// answer.
	op := st.op
	if st.out.meterOp != "" {
		op = st.out.meterOp
	}
	t := &responseTap{
		status:    resp.StatusCode,
		requestID: firstNonEmpty(resp.Header.Get("X-Amzn-Requestid"), resp.Header.Get("X-Amz-Request-Id")),
		errorType: sanitizeErrorType(resp.Header.Get("X-Amzn-Errortype")),
		op:        op,
		// Read by finish, after forward is done with it; nothing
		// changes a response's header but forward removing hop-by-hop
		// headers, which no meter reads.
		header: resp.Header,
	}
	switch ct := resp.Header.Get("Content-Type"); {
	case strings.HasPrefix(ct, eventStreamType):
		t.meter = usage.NewStreamMeter(op)
	case strings.HasPrefix(ct, sseType):
		// Bedrock's native Chat Completions stream: its usage is in one
		// of the last chunks, so only the tail is kept.
		t.sse = true
	}
	if t.meter != nil || t.sse {
		// forward flushes every read of a response whose length it
		// does not know (and only those): a stream must be relayed
		// event by event even if it declared a Content-Length. The
		// header, if any, is still passed on, and the body is the same.
		resp.ContentLength = -1
		if m := p.cfg.Metrics; m != nil {
			m.streams.Inc()
			t.streamDone = m.streams.Dec
		}
	}
	if t.meter == nil && resp.ContentLength > 0 && resp.ContentLength <= maxTapBytes {
		t.buf.Grow(int(resp.ContentLength)) // once, not doubling as it arrives
	}
	st.tap = t
	if out := st.out; out.idle == nil {
		// Made here, once Bedrock has answered, not for every request
		// before it has.
		out.idle = time.AfterFunc(p.cfg.StreamIdleTimeout, func() {
			st.idleFired.Store(true)
			out.cancel()
		})
	} else {
		out.idle.Reset(p.cfg.StreamIdleTimeout)
	}
	t.body = tappedBody{rc: resp.Body, tap: t, idle: st.out.idle, idleFor: p.cfg.StreamIdleTimeout}
	resp.Body = &t.body
	return nil
}

// sanitizeErrorType takes the exception name out of x-amzn-ErrorType, as
// SDKs do: the text before ':' and after '#'.
func sanitizeErrorType(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[:i]
	}
	if i := strings.LastIndexByte(v, '#'); i >= 0 {
		v = v[i+1:]
	}
	return v
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// tappedBody passes Bedrock's body through unchanged while metering it.
type tappedBody struct {
	rc      io.ReadCloser
	tap     *responseTap
	idle    *time.Timer
	idleFor time.Duration
}

func (b *tappedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		// Reset after the timer fired does not revive the exchange: its
		// context is already cancelled.
		b.idle.Reset(b.idleFor)
		b.tap.observe(p[:n])
	}
	if err != nil {
		b.tap.ended(err)
	}
	return n, err
}

func (b *tappedBody) Close() error { return b.rc.Close() }

func (t *responseTap) observe(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.meter != nil {
		t.meter.Write(p)
		return
	}
	if t.sse {
		if t.buf.Len()+len(p) > 4*sseTail {
			tail := t.buf.Bytes()[max(0, t.buf.Len()-sseTail):]
			t.buf = *bytes.NewBuffer(append(make([]byte, 0, 4*sseTail), tail...))
		}
		t.buf.Write(p)
		return
	}
	if t.capped {
		return
	}
	if t.buf.Len()+len(p) > maxTapBytes {
		t.capped = true
		t.buf = bytes.Buffer{}
		return
	}
	t.buf.Write(p)
}

// ended notes the first error reading Bedrock's body returned.
func (t *responseTap) ended(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.end == nil {
		t.end = err
	}
}

// cut reports whether an event stream ended before Bedrock finished it:
// reading it failed (connection closed or reset mid-body), or it ended
// inside a frame. A read the gateway itself cancelled (the client went
// away, the idle timer fired) also fails; finish tells those apart.
func (t *responseTap) cut() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.meter == nil || t.end == nil {
		return false
	}
	return t.end != io.EOF || t.meter.Pending() > 0
}

// tokens returns the usage Bedrock reported and, for streams, the
// exception that ended one after HTTP 200.
func (t *responseTap) tokens() (usage.Tokens, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.meter != nil {
		tok, _ := t.meter.Tokens()
		return tok, t.meter.Exception()
	}
	if t.status != http.StatusOK || t.capped {
		return usage.Tokens{}, ""
	}
	if t.sse {
		return sseUsage(t.buf.Bytes()), ""
	}
	switch t.op {
	case opConverse:
		tok, _ := usage.FromConverse(t.buf.Bytes())
		return tok, ""
	case opInvoke:
		tok, _ := usage.FromInvoke(t.header, t.buf.Bytes())
		return tok, ""
	}
	return usage.Tokens{}, ""
}

// sseUsage finds the usage of an OpenAI-style stream in its tail: the
// last "data:" chunk whose usage is an object (stream_options.include_usage
// puts it in a chunk of its own before data: [DONE]).
func sseUsage(tail []byte) usage.Tokens {
	for len(tail) > 0 {
		i := bytes.LastIndexByte(tail[:len(tail)-1], '\n') + 1
		line := bytes.TrimSpace(tail[i:])
		tail = tail[:i]
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok || !bytes.Contains(data, []byte(`"usage"`)) {
			continue
		}
		if tok, ok := usage.FromInvoke(nil, bytes.TrimSpace(data)); ok {
			return tok
		}
	}
	return usage.Tokens{}
}
