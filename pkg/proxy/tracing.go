package proxy

// OpenTelemetry spans of a request. With Config.TracerProvider unset or
// no-op, Proxy.tracer is nil and none of this runs: the data path pays one
// nil check per step. With it, each request gets:
//
//	<operation>                 server span; parent: the caller's traceparent
//	├── authenticate            method, key ID, outcome
//	├── session                 cache hit or miss, session name, role
//	│   └── STS.AssumeRole      one per attempt on a miss: admission wait
//	└── BedrockRuntime.<op>     client span: status, request ID, first
//	                            byte, stream duration, tokens
//
// No attribute or event carries a credential: not the caller's key or
// token (only the key's non-secret ID), not the session's keys, token or
// signature, not an Authorization header. Error texts stay in the log;
// spans get the error's type and the message the client was given.
// The caller's traceparent is honoured inbound but not sent to Bedrock:
// the outbound header set is an allow-list of what Bedrock binds.

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/aws/smithy-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// tracerName is the instrumentation scope of the proxy's spans.
const tracerName = "github.com/bedrock-gateway/gateway/pkg/proxy"

// Attribute keys: OpenTelemetry semantic conventions where they have
// one (HTTP, RPC, GenAI, error.type), gateway.* for the rest.
const (
	attrHTTPMethod      = attribute.Key("http.request.method")
	attrHTTPStatus      = attribute.Key("http.response.status_code")
	attrErrorType       = attribute.Key("error.type")
	attrServerAddress   = attribute.Key("server.address")
	attrRPCSystem       = attribute.Key("rpc.system")
	attrRPCService      = attribute.Key("rpc.service")
	attrRPCMethod       = attribute.Key("rpc.method")
	attrAWSRequestID    = attribute.Key("aws.request_id")
	attrGenAISystem     = attribute.Key("gen_ai.system")
	attrGenAIProvider   = attribute.Key("gen_ai.provider.name")
	attrGenAIOperation  = attribute.Key("gen_ai.operation.name")
	attrGenAIModel      = attribute.Key("gen_ai.request.model")
	attrInputTokens     = attribute.Key("gen_ai.usage.input_tokens")
	attrOutputTokens    = attribute.Key("gen_ai.usage.output_tokens")
	attrCacheReadTokens = attribute.Key("gen_ai.usage.cache_read.input_tokens")
	attrCacheWriteToks  = attribute.Key("gen_ai.usage.cache_creation.input_tokens")

	attrRequestID    = attribute.Key("gateway.request_id")
	attrOperation    = attribute.Key("gateway.operation")
	attrUser         = attribute.Key("gateway.user")
	attrTeam         = attribute.Key("gateway.team")
	attrTenant       = attribute.Key("gateway.tenant")
	attrCostCenter   = attribute.Key("gateway.cost_center")
	attrAuthMethod   = attribute.Key("gateway.auth.method")
	attrKeyID        = attribute.Key("gateway.auth.key_id")
	attrAuthOutcome  = attribute.Key("gateway.auth.outcome")
	attrCacheHit     = attribute.Key("gateway.session.cache_hit")
	attrStaleKept    = attribute.Key("gateway.session.stale")
	attrSessionName  = attribute.Key("gateway.session.name")
	attrRoleARN      = attribute.Key("gateway.session.role_arn")
	attrAttempt      = attribute.Key("gateway.sts.attempt")
	attrSTSClass     = attribute.Key("gateway.sts.class")
	attrAdmission    = attribute.Key("gateway.sts.admission_wait_ms")
	attrTTFB         = attribute.Key("gateway.time_to_first_byte_ms")
	attrStream       = attribute.Key("gateway.stream")
	attrStreamDur    = attribute.Key("gateway.stream.duration_ms")
	attrCost         = attribute.Key("gateway.cost_usd")
	attrClientGone   = attribute.Key("gateway.client_gone")
	attrUpstreamHost = attrServerAddress
)

// bedrockSystem is the GenAI semantic conventions' name for Bedrock.
const bedrockSystem = "aws.bedrock"

// errorOther is error.type's value for an error without a better name
// (OpenTelemetry semantic conventions).
const errorOther = "_OTHER"

// propagator reads the caller's W3C traceparent (and tracestate). Baggage
// is not read: it would let callers put arbitrary attributes on the
// gateway's telemetry.
var propagator = propagation.TraceContext{}

// newTracer returns tp's tracer for the proxy, or nil when there is none
// or it is OpenTelemetry's no-op provider: tracing off costs nothing.
func newTracer(tp trace.TracerProvider) trace.Tracer {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return nil
	}
	return tp.Tracer(tracerName)
}

// reqTrace is the spans of one request; nil when tracing is off or the
// request is not sampled, and then its methods do nothing.
type reqTrace struct {
	tracer   trace.Tracer
	server   trace.Span
	upstream trace.Span // nil until the request is sent to Bedrock
	// sentAt and headersAt are when the request went to Bedrock and its
	// response headers came back (zero: not yet, or it failed).
	sentAt, headersAt time.Time
}

// startTrace starts the request's server span, a child of the caller's
// span when its traceparent names one, and returns ctx carrying it. A
// request the sampler drops gets no reqTrace.
func (p *Proxy) startTrace(ctx context.Context, r *http.Request, st *reqState) context.Context {
	ctx = propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	// The name is the operation, known once routed; finish sets it.
	ctx, span := p.tracer.Start(ctx, "request", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attrHTTPMethod.String(r.Method), attrRequestID.String(st.id)))
	if span.IsRecording() {
		st.trace = &reqTrace{tracer: p.tracer, server: span}
	}
	return ctx
}

// The methods of *reqTrace and *sessionTrace that the data path calls
// check for nil and return at once, small enough to be inlined: when not
// tracing they cost a comparison. The work is in the functions they call.

// startAuth starts the authentication span; nil when not tracing.
func (t *reqTrace) startAuth() trace.Span {
	if t == nil {
		return nil
	}
	return t.startChild("authenticate")
}

func (t *reqTrace) startChild(name string) trace.Span {
	_, span := t.tracer.Start(trace.ContextWithSpan(context.Background(), t.server), name)
	return span
}

// endAuth ends the authentication span with who the caller is (the
// key's ID, never the key) or why it was refused.
func endAuth(span trace.Span, id *auth.Identity, err error) {
	if span != nil {
		endAuthSpan(span, id, err)
	}
}

func endAuthSpan(span trace.Span, id *auth.Identity, err error) {
	if err != nil {
		e := authError(err)
		span.SetAttributes(attrAuthOutcome.String(authReason(err)), attrErrorType.String(e.Type))
		if e.Status >= 500 {
			span.SetStatus(codes.Error, e.Msg)
		}
	} else {
		span.SetAttributes(attrAuthOutcome.String("ok"), attrAuthMethod.String(id.Method))
		if id.KeyID != "" {
			span.SetAttributes(attrKeyID.String(id.KeyID))
		}
	}
	span.End()
}

// sessionTrace is the session span of one credentials lookup and the
// sessioncache.Trace that reports into it.
type sessionTrace struct {
	tracer trace.Tracer
	span   trace.Span
	miss   bool // set by hooks.Miss, on the caller's goroutine
	stale  bool
	// sts is the AssumeRole attempt in progress: touched only by the
	// fill's goroutine, through hooks, one call at a time.
	sts   trace.Span
	hooks sessioncache.Trace
}

// startSession starts the session span under the request's server span
// and returns ctx carrying the sessioncache.Trace that fills it in; nil
// when the request is not traced.
func startSession(ctx context.Context, spec tenancy.SessionSpec) (context.Context, *sessionTrace) {
	st := stateFrom(ctx)
	if st == nil || st.trace == nil {
		return ctx, nil
	}
	t := st.trace
	// ctx is the request's: its span is the server span.
	ctx, span := t.tracer.Start(ctx, "session",
		trace.WithAttributes(attrSessionName.String(spec.SessionName), attrRoleARN.String(spec.RoleARN)))
	s := &sessionTrace{tracer: t.tracer, span: span}
	parent := trace.ContextWithSpan(context.Background(), span)
	s.hooks = sessioncache.Trace{
		Miss: func(stale bool) { s.miss, s.stale = true, stale },
		AssumeRoleStart: func(attempt int, active bool) {
			class := "new"
			if active {
				class = "active"
			}
			_, s.sts = s.tracer.Start(parent, "STS.AssumeRole", trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attrRPCSystem.String("aws-api"), attrRPCService.String("STS"),
					attrRPCMethod.String("AssumeRole"), attrAttempt.Int(attempt), attrSTSClass.String(class)))
		},
		Admitted: func(wait time.Duration, err error) {
			if s.sts == nil {
				return
			}
			s.sts.SetAttributes(attrAdmission.Float64(ms(wait)))
			if err != nil {
				s.sts.SetAttributes(attrErrorType.String(stsErrorType(err)))
				s.sts.SetStatus(codes.Error, "not admitted by the STS budget")
				s.sts.End()
				s.sts = nil
				return
			}
			s.sts.AddEvent("admitted")
		},
		AssumeRoleDone: func(err error) {
			if s.sts == nil {
				return
			}
			if err != nil {
				s.sts.SetAttributes(attrErrorType.String(stsErrorType(err)))
				s.sts.SetStatus(codes.Error, "AssumeRole failed")
			}
			s.sts.End()
			s.sts = nil
		},
	}
	return sessioncache.WithTrace(ctx, &s.hooks), s
}

// end ends the session span with the lookup's outcome; err is what the
// credential source returned.
func (s *sessionTrace) end(ctx context.Context, err error) {
	if s != nil {
		s.finish(ctx, err)
	}
}

func (s *sessionTrace) finish(ctx context.Context, err error) {
	s.span.SetAttributes(attrCacheHit.Bool(!s.miss))
	if s.stale {
		s.span.SetAttributes(attrStaleKept.Bool(true))
	}
	if err != nil {
		e := credentialError(ctx, err)
		s.span.SetAttributes(attrErrorType.String(e.Type))
		if e.Status >= 500 {
			s.span.SetStatus(codes.Error, e.Msg)
		}
	}
	s.span.End()
}

// stsErrorType names an STS failure: STS's error code, or the gateway's
// reason for not calling it.
func stsErrorType(err error) string {
	var ae smithy.APIError
	switch {
	case errors.As(err, &ae):
		return ae.ErrorCode()
	case errors.Is(err, sessioncache.ErrOverloaded):
		return "STSBudgetExhausted"
	case errors.Is(err, context.DeadlineExceeded):
		return "Timeout"
	case errors.Is(err, context.Canceled):
		return "Canceled"
	}
	return errorOther
}

// startUpstream starts the client span of the call to Bedrock, just
// before it is sent.
func (t *reqTrace) startUpstream(ctx context.Context, host string, st *reqState) {
	if t != nil {
		t.startUpstreamSpan(ctx, host, st)
	}
}

func (t *reqTrace) startUpstreamSpan(ctx context.Context, host string, st *reqState) {
	op := st.op
	if m := st.out.meterOp; m == opConverse || m == opConverseStream {
		op = m // an OpenAI chat completion sent as Converse
	}
	_, t.upstream = t.tracer.Start(ctx, "BedrockRuntime."+op,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrRPCSystem.String("aws-api"), attrRPCService.String("BedrockRuntime"),
			attrRPCMethod.String(op), attrUpstreamHost.String(host), attrGenAISystem.String(bedrockSystem)))
	if st.modelID != "" {
		t.upstream.SetAttributes(attrGenAIModel.String(st.modelID))
	}
	t.sentAt = time.Now()
}

// startCall starts the client span of one of the Bedrock calls a request
// makes by itself rather than through forward (embeddings: one InvokeModel
// per batch of texts), each its own span under the server span; nil when
// not tracing. endCall ends it.
func (t *reqTrace) startCall(ctx context.Context, host, op, model string) trace.Span {
	if t == nil {
		return nil
	}
	_, span := t.tracer.Start(ctx, "BedrockRuntime."+op,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrRPCSystem.String("aws-api"), attrRPCService.String("BedrockRuntime"),
			attrRPCMethod.String(op), attrUpstreamHost.String(host), attrGenAISystem.String(bedrockSystem),
			attrGenAIModel.String(model)))
	return span
}

// endCall ends a startCall span: resp is Bedrock's answer (nil when there
// was none), inputTokens what it counted, failed why the gateway gave up
// on the call (nil: it did not; Bedrock's exception is read from resp).
func endCall(span trace.Span, resp *http.Response, inputTokens int64, failed *Error) {
	if span == nil {
		return
	}
	if resp != nil {
		span.SetAttributes(attrHTTPStatus.Int(resp.StatusCode))
		if id := firstNonEmpty(resp.Header.Get("X-Amzn-Requestid"), resp.Header.Get("X-Amz-Request-Id")); id != "" {
			span.SetAttributes(attrAWSRequestID.String(id))
		}
		if resp.StatusCode != http.StatusOK {
			span.SetAttributes(attrErrorType.String(sanitizeErrorType(resp.Header.Get("X-Amzn-Errortype"))))
			span.SetStatus(codes.Error, "Bedrock refused the call")
		}
	}
	if inputTokens > 0 {
		span.SetAttributes(attrInputTokens.Int64(inputTokens))
	}
	if failed != nil {
		span.SetAttributes(attrErrorType.String(failed.Type))
		if failed.Status != statusClientClosed {
			span.SetStatus(codes.Error, failed.Msg)
		}
	}
	span.End()
}

// roundTripped notes the end of the exchange's first half: Bedrock's
// response headers, or the failure to get them.
func (t *reqTrace) roundTripped(ctx context.Context, err error) {
	if t != nil && t.upstream != nil {
		t.upstreamAnswered(ctx, err)
	}
}

func (t *reqTrace) upstreamAnswered(ctx context.Context, err error) {
	if err != nil {
		e := upstreamError(ctx, err)
		t.upstream.SetAttributes(attrErrorType.String(e.Type))
		if e.Status != statusClientClosed {
			t.upstream.SetStatus(codes.Error, e.Msg)
		}
		return
	}
	t.headersAt = time.Now()
	t.upstream.AddEvent("response headers")
}

// end ends the request's spans with what finish learned: u is its usage
// record.
func (t *reqTrace) end(method string, sw *statusWriter, st *reqState, u *usage.Record) {
	if t != nil {
		t.endSpans(method, sw, st, u)
	}
}

func (t *reqTrace) endSpans(method string, sw *statusWriter, st *reqState, u *usage.Record) {
	now := time.Now()
	tok := []attribute.KeyValue{attrInputTokens.Int64(u.Input), attrOutputTokens.Int64(u.Output)}
	if u.CacheRead > 0 {
		tok = append(tok, attrCacheReadTokens.Int64(u.CacheRead))
	}
	if u.CacheWrite > 0 {
		tok = append(tok, attrCacheWriteToks.Int64(u.CacheWrite))
	}
	hasTokens := u.Tokens != (usage.Tokens{})
	if up := t.upstream; up != nil {
		attrs := make([]attribute.KeyValue, 0, 10) // one SetAttributes call
		if tap := st.tap; tap != nil {
			stream := tap.meter != nil || tap.sse
			attrs = append(attrs, attrHTTPStatus.Int(tap.status), attrStream.Bool(stream))
			if tap.requestID != "" {
				attrs = append(attrs, attrAWSRequestID.String(tap.requestID))
			}
			if stream && !t.headersAt.IsZero() {
				attrs = append(attrs, attrStreamDur.Float64(ms(now.Sub(t.headersAt))))
			}
			// Without a tap the exchange failed before Bedrock
			// answered: roundTripped said so. With one, finish's error
			// type is Bedrock's (an exception, a cut or idle stream).
			if u.ErrorType != "" {
				attrs = append(attrs, attrErrorType.String(u.ErrorType))
				if !u.ClientGone {
					up.SetStatus(codes.Error, "the answer failed")
				}
			}
		}
		if hasTokens {
			attrs = append(attrs, tok...)
		}
		up.SetAttributes(attrs...)
		if !sw.firstByte.IsZero() {
			up.AddEvent("first byte", trace.WithTimestamp(sw.firstByte))
		}
		up.End(trace.WithTimestamp(now))
	}

	s := t.server
	if st.op != "" {
		s.SetName(st.op)
	} else {
		// Refused before it was routed (authentication): the HTTP
		// semantic conventions' name for a span without a route.
		s.SetName(method)
	}
	attrs := make([]attribute.KeyValue, 0, 24)
	attrs = append(attrs,
		attrOperation.String(u.Operation),
		attrHTTPStatus.Int(u.Status),
		attrGenAISystem.String(bedrockSystem),
		attrGenAIProvider.String(bedrockSystem),
		attrGenAIOperation.String(genAIOperation(u.Operation)),
	)
	if u.Model != "" {
		attrs = append(attrs, attrGenAIModel.String(u.Model))
	}
	if id := st.identity; id != nil {
		attrs = append(attrs, attrUser.String(id.User), attrAuthMethod.String(id.Method))
		for _, kv := range [...]struct {
			k attribute.Key
			v string
		}{{attrTeam, id.Team}, {attrTenant, id.Tenant}, {attrCostCenter, id.CostCenter}} {
			if kv.v != "" {
				attrs = append(attrs, kv.k.String(kv.v))
			}
		}
	}
	if hasTokens {
		attrs = append(attrs, tok...)
	}
	if u.Cost != nil && hasTokens {
		attrs = append(attrs, attrCost.Float64(u.Cost.Float64()))
	}
	if u.TimeToFirstByte > 0 {
		attrs = append(attrs, attrTTFB.Float64(ms(u.TimeToFirstByte)))
	}
	if u.ClientGone {
		attrs = append(attrs, attrClientGone.Bool(true))
	}
	if u.ErrorType != "" {
		attrs = append(attrs, attrErrorType.String(u.ErrorType))
	}
	s.SetAttributes(attrs...)
	// A server span is an error for 5xx, and for an answer that failed
	// after it began (a stream cut, idle or ended by an exception); a 4xx
	// is the caller's (OpenTelemetry HTTP semantic conventions).
	switch {
	case u.Status >= 500:
		s.SetStatus(codes.Error, http.StatusText(u.Status))
	case u.Status < 400 && u.ErrorType != "" && !u.ClientGone:
		s.SetStatus(codes.Error, "the answer failed after it began")
	}
	s.End(trace.WithTimestamp(now))
}

// genAIOperation is gen_ai.operation.name for a gateway operation: the
// GenAI semantic conventions' name where one fits, else the Bedrock
// operation's own.
func genAIOperation(op string) string {
	switch op {
	case opConverse, opConverseStream, opChatCompletions:
		return "chat"
	case opEmbeddings:
		return "embeddings"
	}
	return op
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
