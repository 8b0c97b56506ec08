// Package proxy forwards Bedrock Runtime calls, re-signed with the calling
// user's own AWS session, so AWS billing attributes each call to that user.
//
// A request is authenticated, mapped to a session spec and given session
// credentials before anything is sent upstream; if any step fails the
// request is answered by the gateway with a Bedrock-shaped error and reaches
// neither STS nor Bedrock. Nothing the caller sends chooses the upstream
// host, the path (it is rebuilt from the parsed model ID) or the headers
// (an allow-list).
//
// The path of a request through the package, file by file: proxy.go
// (ServeHTTP, authenticate, handle), prepare.go (every check, before
// anything leaves), forward.go (sign, send, relay), tap.go (meter the
// response), epilogue.go (usage record and access log); errors.go maps
// every refusal to its answer; async.go keeps each caller to the
// asynchronous invocations it started.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.opentelemetry.io/otel/trace"

	"github.com/bedrock-gateway/gateway/internal/sigv4"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/budget"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// Authenticator establishes who is calling from the request's credentials.
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Identity, error)
}

// Resolver maps an identity to the STS session that will be billed.
type Resolver interface {
	Resolve(id auth.Identity) (tenancy.SessionSpec, error)
}

// CredentialSource returns credentials for exactly the given session.
type CredentialSource interface {
	Get(ctx context.Context, spec tenancy.SessionSpec) (aws.Credentials, error)
}

// UsageSink receives the usage record of each request, refused or
// forwarded, once its answer is complete.
type UsageSink interface {
	Record(usage.Record)
}

// Pricer prices tokens of a model in a Region: *pricing.Catalogue. ok
// is false when it has no price for the model.
type Pricer interface {
	Cost(region, model string, t pricing.Tokens) (cost pricing.Money, ok bool)
}

// Budgets holds the callers' spend budgets: *budget.Tracker.
type Budgets interface {
	// Check returns nil, or a *budget.ExceededError when a hard budget
	// that applies to id is spent.
	Check(ctx context.Context, id auth.Identity) error
	// Spend charges what one of id's requests cost.
	Spend(id auth.Identity, cost pricing.Money)
	// Describe lists the budgets that apply to id, for /gateway/whoami.
	Describe(ctx context.Context, id auth.Identity) []budget.Status
}

// Policy decides whether an authenticated caller may make a request
// (model allow-lists, request and token limits) and learns what each
// request consumed. Optional: without one every caller may call every
// model without limits.
type Policy interface {
	// Admit returns nil, policy.ErrModelNotAllowed, or a
	// *policy.ThrottledError.
	Admit(id auth.Identity, operation, model string) error
	// Spent reports the tokens a request used, for token budgets.
	Spent(id auth.Identity, tokens usage.Tokens)
	// Describe returns what applies to id (limits, allowed models), for
	// /gateway/whoami. It must hold no secret.
	Describe(id auth.Identity) any
}

// signingName is the SigV4 service name for Bedrock Runtime (the service
// model's signingName; not "bedrock-runtime").
const signingName = "bedrock"

// Proxy is the data-plane http.Handler.
type Proxy struct {
	cfg    Config
	router http.Handler
	log    *slog.Logger
	// upstream sends signed requests to Bedrock.
	upstream http.RoundTripper
	// transport is the upstream transport New built, which Close closes;
	// nil when Config.Transport was injected.
	transport *http.Transport
	// signingHost is the Host every upstream request is signed for and
	// sent with.
	signingHost string
	buffers     copyBuffers
	// tracer traces requests (tracing.go); nil when tracing is off.
	tracer trace.Tracer
}

// New validates cfg and returns a Proxy. The Proxy owns the upstream
// transport it builds: call Close when retiring it.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	cfg = cfg.withDefaults()
	p := &Proxy{cfg: cfg, log: cfg.Logger, upstream: cfg.Transport,
		signingHost: sigv4.SigningHost(cfg.Endpoint.Scheme, cfg.Endpoint.Host)}
	if p.upstream == nil {
		p.transport = newTransport(cfg.ResponseHeaderTimeout, cfg.RootCAs, cfg.MaxIdleConnsPerHost)
		p.upstream = p.transport
	}
	p.router = p.newRouter()
	p.tracer = newTracer(cfg.TracerProvider)
	return p, nil
}

// Close closes the idle upstream connections of the transport New built;
// for an injected Config.Transport it does nothing, that transport's owner
// closes it. The caller calls Close when it retires the proxy (a config
// reload replacing it, or shutdown), once the proxy serves no more
// requests: a connection still in use when Close runs goes back to the
// pool afterwards and stays open until the transport's idle timeout.
func (p *Proxy) Close() {
	if p.transport != nil {
		p.transport.CloseIdleConnections()
	}
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{id: newRequestID(), start: p.cfg.Now()}
	st.w = statusWriter{ResponseWriter: w, now: p.cfg.Now}
	sw := &st.w
	sw.Header().Set("X-Gateway-Request-Id", st.id)
	ctx := r.Context()
	if p.tracer != nil {
		ctx = p.startTrace(ctx, r, st)
	}
	r = r.WithContext(context.WithValue(ctx, stateKey{}, st))
	if m := p.cfg.Metrics; m != nil {
		m.inFlight.Inc()
		defer m.inFlight.Dec()
	}
	defer p.finish(sw, r, st)
	p.router.ServeHTTP(sw, r)
}

// copyBuffer is the size of the buffers response bodies are relayed with.
const copyBuffer = 32 << 10

// copyBuffers keeps relay buffers for reuse: without it every response
// relayed would allocate 32 KiB. A buffer is scratch space, handed to one
// copy at a time.
type copyBuffers struct{ pool sync.Pool }

func (c *copyBuffers) Get() []byte {
	if b, ok := c.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, copyBuffer)
}

func (c *copyBuffers) Put(b []byte) {
	if cap(b) == copyBuffer {
		b = b[:copyBuffer]
		c.pool.Put(&b)
	}
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reqState is what the gateway learns about a request on its way through,
// for the epilogue; it travels in the request context under an unexported
// key.
type reqState struct {
	id       string
	start    time.Time
	identity *auth.Identity
	spec     *tenancy.SessionSpec
	op       string
	modelID  string
	// Set only once a request is ready to go upstream.
	out *outbound
	// Set when Bedrock's response arrives.
	tap *responseTap
	// dialect is the API shape the request speaks (its errors' shape).
	dialect dialect
	// direct is set when the handler called Bedrock itself instead of
	// forwarding (embeddings).
	direct *directUsage
	// idleFired is set when Bedrock went quiet for StreamIdleTimeout.
	idleFired atomic.Bool
	// bodyRead is set once the whole request body has been read; a
	// refusal before that closes an HTTP/1 connection (see fail).
	bodyRead bool
	// trace is the request's spans; nil unless it is traced.
	trace *reqTrace

	// Storage for what the pointers above point to, allocated with the
	// state: a request costs one allocation for all of them.
	w       statusWriter
	idVal   auth.Identity
	specVal tenancy.SessionSpec
	outVal  outbound
}

type stateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// authenticate establishes the caller's identity for every route behind
// it; a caller it refuses reaches no other step.
func (p *Proxy) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateFrom(r.Context())
		span := st.trace.startAuth()
		id, err := p.cfg.Authenticator.Authenticate(r)
		endAuth(span, &id, err)
		if err != nil {
			p.cfg.Metrics.authFailure(err)
			p.fail(w, r, authError(err))
			return
		}
		st.idVal = id
		st.identity = &st.idVal
		next.ServeHTTP(w, r)
	})
}

// handle serves one forwarded operation: prepare does everything that can
// refuse the request, before anything is sent upstream.
func (p *Proxy) handle(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st := stateFrom(r.Context())
		st.op = rt.op
		out, err := p.prepare(w, r, rt, st)
		p.dispatch(w, r, st, out, err)
	}
}

// dispatch sends a prepared request on, or answers its refusal. A
// refusal is recorded with what was learned before it, so the ledger says
// who was refused which model.
func (p *Proxy) dispatch(w http.ResponseWriter, r *http.Request, st *reqState, out *outbound, err *Error) {
	st.modelID, st.spec = out.model, out.spec
	if err != nil {
		out.release()
		p.fail(w, r, err)
		return
	}
	p.forward(w, r, st, out)
}
