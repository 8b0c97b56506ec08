package proxy

import (
	"bytes"
	"io"
	"log/slog"
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
}

// tapResponse is the ReverseProxy's ModifyResponse hook.
func (p *Proxy) tapResponse(resp *http.Response) error {
	st := stateFrom(resp.Request.Context())
	if st == nil || st.out == nil {
		return nil
	}
	t := &responseTap{
		status:    resp.StatusCode,
		requestID: firstNonEmpty(resp.Header.Get("X-Amzn-Requestid"), resp.Header.Get("X-Amz-Request-Id")),
		errorType: sanitizeErrorType(resp.Header.Get("X-Amzn-Errortype")),
		op:        st.op,
		header:    resp.Header.Clone(),
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), eventStreamType) {
		t.meter = usage.NewStreamMeter(st.op)
		if m := p.cfg.Metrics; m != nil {
			m.streams.Inc()
			t.streamDone = m.streams.Dec
		}
	}
	st.tap = t
	st.out.idle.Reset(p.cfg.StreamIdleTimeout)
	resp.Body = &tappedBody{rc: resp.Body, tap: t, idle: st.out.idle, idleFor: p.cfg.StreamIdleTimeout}
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

// finish runs once per request, after the answer: it writes the usage
// record and the access log line.
func (p *Proxy) finish(rec *recorder, r *http.Request, st *reqState) {
	end := p.cfg.Now()
	u := usage.Record{
		Time:      st.start,
		RequestID: st.id,
		Operation: st.op,
		Model:     st.modelID,
		Status:    rec.statusCode(),
		Latency:   end.Sub(st.start),
		// The server cancels the request context when the client's
		// connection goes away; before this handler returns, nothing
		// else does.
		ClientGone: r.Context().Err() != nil,
	}
	if u.Operation == "" {
		u.Operation = "other"
	}
	if !rec.firstByte.IsZero() {
		u.TimeToFirstByte = rec.firstByte.Sub(st.start)
	}
	if id := st.identity; id != nil {
		u.User, u.Team, u.Tenant, u.CostCenter, u.AuthMethod = id.User, id.Team, id.Tenant, id.CostCenter, id.Method
	}
	if st.spec != nil {
		u.SessionName, u.RoleARN = st.spec.SessionName, st.spec.RoleARN
	}
	if rec.err != nil {
		u.ErrorType = rec.err.Type
	}
	if t := st.tap; t != nil {
		if t.streamDone != nil {
			t.streamDone()
		}
		u.UpstreamRequestID = t.requestID
		var exception string
		u.Tokens, exception = t.tokens()
		switch {
		case t.errorType != "":
			u.ErrorType = t.errorType
		case exception != "":
			u.ErrorType = exception
		}
	}
	if st.idleFired.Load() {
		u.ErrorType = "StreamIdleTimeout"
	}
	if u.ClientGone && u.Status < 400 && rec.status == 0 {
		u.Status = statusClientClosed
	}
	if p.cfg.Policy != nil && st.identity != nil && u.Tokens != (usage.Tokens{}) {
		p.cfg.Policy.Spent(*st.identity, u.Tokens)
	}
	if p.cfg.Usage != nil {
		p.cfg.Usage.Record(u)
	}
	p.accessLog(r, rec, st, &u)
}

func (p *Proxy) accessLog(r *http.Request, rec *recorder, st *reqState, u *usage.Record) {
	attrs := []slog.Attr{
		slog.String("request_id", u.RequestID),
		slog.String("method", r.Method),
		slog.String("operation", u.Operation),
		slog.Int("status", u.Status),
		slog.Duration("duration", u.Latency),
		slog.Int64("bytes_out", rec.bytes),
	}
	if u.Model != "" {
		attrs = append(attrs, slog.String("model", u.Model))
	}
	if st.identity != nil {
		attrs = append(attrs, slog.String("user", u.User), slog.String("key_id", st.identity.KeyID),
			slog.String("team", u.Team), slog.String("tenant", u.Tenant))
	}
	if u.SessionName != "" {
		attrs = append(attrs, slog.String("session_name", u.SessionName))
	}
	if u.UpstreamRequestID != "" {
		attrs = append(attrs, slog.String("upstream_request_id", u.UpstreamRequestID))
	}
	if u.Input+u.Output+u.CacheRead+u.CacheWrite > 0 {
		attrs = append(attrs, slog.Int64("input_tokens", u.Input), slog.Int64("output_tokens", u.Output),
			slog.Int64("cache_read_tokens", u.CacheRead), slog.Int64("cache_write_tokens", u.CacheWrite))
	}
	if u.TimeToFirstByte > 0 {
		attrs = append(attrs, slog.Duration("ttfb", u.TimeToFirstByte))
	}
	if u.ClientGone {
		attrs = append(attrs, slog.Bool("client_gone", true))
	}
	level := slog.LevelInfo
	if u.ErrorType != "" {
		attrs = append(attrs, slog.String("error_type", u.ErrorType))
	}
	if rec.err != nil {
		if rec.err.Err != nil {
			attrs = append(attrs, slog.String("error", rec.err.Err.Error()))
		}
		if rec.err.Status >= 500 {
			level = slog.LevelWarn
		}
	}
	p.log.LogAttrs(r.Context(), level, "request", attrs...)
}
