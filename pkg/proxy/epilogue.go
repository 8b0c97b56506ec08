package proxy

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/bedrock-gateway/gateway/internal/logjson"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// statusWriter notes the status, size and first-byte time of an answer,
// and the gateway's own error if it gave one, for the epilogue. It
// implements Flush and Unwrap: without them forward could not
// flush event streams through it and streaming would silently stop.
type statusWriter struct {
	http.ResponseWriter
	now       func() time.Time
	status    int
	bytes     int64
	firstByte time.Time
	err       *Error
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.firstByte.IsZero() && len(b) > 0 {
		w.firstByte = w.now()
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// finish runs once per request, after the answer: it writes the usage
// record and the access log line.
func (p *Proxy) finish(sw *statusWriter, r *http.Request, st *reqState) {
	end := p.cfg.Now()
	u := usage.Record{
		Time:      st.start,
		RequestID: st.id,
		Operation: st.op,
		Model:     st.modelID,
		Status:    sw.statusCode(),
		Latency:   end.Sub(st.start),
		// The server cancels the request context when the client's
		// connection goes away; before this handler returns, nothing
		// else does, except the body deadline the gateway set (HTTP/1
		// cancels on any read error), which it answered itself.
		ClientGone: r.Context().Err() != nil && (sw.err == nil || sw.err.Type != typeRequestTimeout),
	}
	if u.Operation == "" {
		u.Operation = "other"
	}
	if !sw.firstByte.IsZero() {
		u.TimeToFirstByte = sw.firstByte.Sub(st.start)
	}
	if id := st.identity; id != nil {
		u.User, u.Team, u.Tenant, u.CostCenter, u.AuthMethod = id.User, id.Team, id.Tenant, id.CostCenter, id.Method
	}
	if st.spec != nil {
		u.SessionName, u.RoleARN = st.spec.SessionName, st.spec.RoleARN
	}
	if sw.err != nil {
		u.ErrorType = sw.err.Type
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
		case !u.ClientGone && t.cut():
			u.ErrorType = usage.ErrorUpstreamStreamCut
		}
	}
	if d := st.direct; d != nil {
		u.Tokens = u.Tokens.Add(d.tokens)
		u.UpstreamRequestID = firstNonEmpty(d.requestID, u.UpstreamRequestID)
		if d.errorType != "" {
			u.ErrorType = d.errorType
		}
	}
	if st.idleFired.Load() {
		u.ErrorType = "StreamIdleTimeout"
	}
	if u.ClientGone && u.Status < 400 && sw.status == 0 {
		u.Status = statusClientClosed
	}
	u.Region = p.cfg.Region
	u.Cost = p.cost(&u)
	if p.cfg.Budgets != nil && st.identity != nil && u.Cost != nil && *u.Cost > 0 {
		p.cfg.Budgets.Spend(*st.identity, *u.Cost)
	}
	if p.cfg.Policy != nil && st.identity != nil && u.Tokens != (usage.Tokens{}) {
		p.cfg.Policy.Spent(*st.identity, u.Tokens)
	}
	if p.cfg.Usage != nil {
		p.cfg.Usage.Record(u)
	}
	p.accessLog(r, sw, st, &u)
	st.trace.end(r.Method, sw, st, &u)
}

// noCost is the cost of every request that consumed no tokens, shared
// (sinks only read a Record) so that most refusals allocate nothing.
var noCost pricing.Money

// cost is what u's tokens cost, or nil when they have no price. The
// tokens of an operation Bedrock does not bill (CountTokens' estimate)
// cost nothing.
func (p *Proxy) cost(u *usage.Record) *pricing.Money {
	if u.Tokens == (usage.Tokens{}) || !usage.Billed(u.Operation) {
		return &noCost
	}
	if p.cfg.Prices == nil {
		return nil
	}
	c, ok := p.cfg.Prices.Cost(u.Region, u.Model, pricing.Tokens{u.Input, u.Output, u.CacheRead, u.CacheWrite})
	if !ok {
		return nil
	}
	return &c
}

// accessLog writes the request's one log line: who called, what, the
// outcome and the cause of a refusal; never a credential.
func (p *Proxy) accessLog(r *http.Request, sw *statusWriter, st *reqState, u *usage.Record) {
	// Room for every attribute the line can have: appending never
	// reallocates.
	attrs := make([]slog.Attr, 0, 23)
	attrs = append(attrs,
		slog.String("request_id", u.RequestID),
		slog.String("method", r.Method),
		slog.String("operation", u.Operation),
		slog.Int("status", u.Status),
		slog.Duration("duration", u.Latency),
		slog.Int64("bytes_out", sw.bytes),
	)
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
	if st.trace != nil {
		// The line and the request's trace find each other.
		attrs = append(attrs, slog.String("trace_id", st.trace.server.SpanContext().TraceID().String()))
	}
	level := slog.LevelInfo
	if u.ErrorType != "" {
		attrs = append(attrs, slog.String("error_type", u.ErrorType))
	}
	if sw.err != nil {
		if sw.err.Err != nil {
			attrs = append(attrs, slog.String("error", sw.err.Err.Error()))
		}
		if sw.err.Status >= 500 {
			level = slog.LevelWarn
		}
	}
	// What LogAttrs does, without the call-site lookup it makes for
	// AddSource, which the gateway's handlers do not use: the line costs
	// a runtime.Callers less.
	ctx := r.Context()
	if !p.log.Enabled(ctx, level) {
		return
	}
	// The gateway's JSON handler writes the line straight from attrs.
	if h, ok := p.log.Handler().(*logjson.Handler); ok {
		_ = h.WriteAttrs(ctx, time.Now(), level, "request", attrs)
		return
	}
	rec := slog.NewRecord(time.Now(), level, "request", 0)
	rec.AddAttrs(attrs...)
	_ = p.log.Handler().Handle(ctx, rec)
}
