// Package proxy forwards Bedrock Runtime calls, re-signed with the calling
// user's own AWS session, so AWS billing attributes each call to that user.
//
// A request is authenticated, mapped to a session spec and given session
// credentials before anything is sent upstream; if any step fails the
// request is answered by the gateway with a Bedrock-shaped error and reaches
// neither STS nor Bedrock. Nothing the caller sends chooses the upstream
// host, the path (it is rebuilt from the parsed model ID) or the headers
// (an allow-list).
package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/go-chi/chi/v5"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
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

// DefaultMaxBodyBytes bounds a request body the gateway buffers to sign.
// InvokeModel accepts payloads up to 25,000,000 bytes (Bedrock Runtime
// service model); the rest is headroom for JSON framing.
const DefaultMaxBodyBytes = 26 << 20

// signingName is the SigV4 service name for Bedrock Runtime (the service
// model's signingName; not "bedrock-runtime").
const signingName = "bedrock"

// Config configures a Proxy. Authenticator, Resolver, Credentials, Endpoint
// and Region are required.
type Config struct {
	// Endpoint is the Bedrock Runtime base URL, e.g.
	// https://bedrock-runtime.us-east-1.amazonaws.com. A path, if any, is
	// kept as a prefix of every upstream path.
	Endpoint *url.URL
	// Region is the SigV4 signing region.
	Region string

	Authenticator Authenticator
	Resolver      Resolver
	Credentials   CredentialSource

	// BasePath is an optional prefix the gateway is served under, such as
	// "/bedrock"; SDKs keep the path of a custom endpoint. Default none.
	BasePath string
	// MaxBodyBytes bounds the request body. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Transport sends upstream requests. Default: a clone of
	// http.DefaultTransport with compression off, so bytes pass verbatim.
	Transport http.RoundTripper
	// Logger receives one line per request; default slog.Default().
	Logger *slog.Logger
	// Now is the clock used for signing; default time.Now.
	Now func() time.Time
	// UserAgent is sent upstream; default "bedrock-gateway".
	UserAgent string
	// StampMetadata writes the caller's identity into Bedrock request
	// metadata (Converse requestMetadata, X-Amzn-Bedrock-Request-Metadata)
	// so that Bedrock's own invocation logs are attributable. On unless
	// DisableMetadataStamp.
	DisableMetadataStamp bool
	// Usage receives one record per request. Optional.
	Usage Recorder
	// Policy admits or refuses authenticated requests (model allow-lists,
	// request and token limits). Optional.
	Policy Policy
	// Metrics receives the proxy's metrics (in-flight requests and streams,
	// auth failures, gateway overhead). Optional; build it once per
	// process with NewMetrics.
	Metrics *Metrics
	// ResponseHeaderTimeout bounds the wait for Bedrock's response
	// headers (a non-streaming call sends them only when the model is
	// done). Default 10m. Used only for the default Transport.
	ResponseHeaderTimeout time.Duration
	// StreamIdleTimeout cancels a response when Bedrock sends nothing for
	// this long. Default 5m (Claude Code's own idle watchdog).
	StreamIdleTimeout time.Duration
}

// Recorder receives the usage record of each request.
type Recorder interface {
	Record(usage.Record)
}

// Proxy is the data-plane http.Handler.
type Proxy struct {
	cfg    Config
	router http.Handler
	rp     *httputil.ReverseProxy
	log    *slog.Logger
}

// New validates cfg and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	var errs []error
	if cfg.Endpoint == nil || cfg.Endpoint.Scheme == "" || cfg.Endpoint.Host == "" {
		errs = append(errs, errors.New("proxy: endpoint must be an absolute URL"))
	}
	if cfg.Region == "" {
		errs = append(errs, errors.New("proxy: region is required"))
	}
	if cfg.Authenticator == nil || cfg.Resolver == nil || cfg.Credentials == nil {
		errs = append(errs, errors.New("proxy: authenticator, resolver and credentials are required"))
	}
	if cfg.BasePath != "" && (!strings.HasPrefix(cfg.BasePath, "/") || strings.HasSuffix(cfg.BasePath, "/")) {
		errs = append(errs, fmt.Errorf("proxy: base path %q must start with / and not end with /", cfg.BasePath))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 10 * time.Minute
	}
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = 5 * time.Minute
	}
	if cfg.Transport == nil {
		// No compression: bytes pass verbatim. The Transport never
		// replays a POST that may have been sent: it retries only requests
		// that were not written at all, or that carry Idempotency-Key,
		// which the header allow-list drops.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DisableCompression = true
		t.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
		cfg.Transport = t
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "bedrock-gateway"
	}

	p := &Proxy{cfg: cfg, log: cfg.Logger}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		ModifyResponse: p.tapResponse,
		Transport: &signingTransport{next: cfg.Transport, signer: v4.NewSigner(), region: cfg.Region, now: cfg.Now,
			sent: func(st *reqState) { cfg.Metrics.observeOverhead(st.op, cfg.Now().Sub(st.start)) }},
		FlushInterval: -1, // event streams: every read is flushed to the client at once
		ErrorHandler:  p.upstreamError,
		ErrorLog:      slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}

	notFound := func(w http.ResponseWriter, r *http.Request) {
		p.fail(w, r, &Error{Status: http.StatusNotFound, Type: typeUnknownOp, Msg: "unknown operation: this gateway serves the Bedrock Runtime API"})
	}
	methodNotAllowed := func(w http.ResponseWriter, r *http.Request) {
		p.fail(w, r, &Error{Status: http.StatusMethodNotAllowed, Type: typeValidation, Msg: "method not allowed for this operation"})
	}
	api := chi.NewRouter()
	// Claude Code probes the control plane at startup without credentials
	// (its embedded AWS SDK does not send the gateway token there): a
	// clean 404 for everyone, which reveals nothing.
	inferenceProfiles := func(w http.ResponseWriter, r *http.Request) {
		stateFrom(r.Context()).op = opInferenceProfiles
		p.fail(w, r, &Error{Status: http.StatusNotFound, Type: typeNotFound,
			Msg: "inference profiles are a Bedrock control-plane API; this gateway serves Bedrock Runtime only"})
	}
	api.HandleFunc("/inference-profiles", inferenceProfiles)
	api.HandleFunc("/inference-profiles/*", inferenceProfiles)
	api.Group(func(api chi.Router) {
		api.Use(p.authenticate)
		for _, rt := range routes {
			api.Method(rt.method, rt.pattern, p.handle(rt))
		}
		api.Post("/model/{modelId}/invoke-with-bidirectional-stream", func(w http.ResponseWriter, r *http.Request) {
			stateFrom(r.Context()).op = opBidirectional
			p.fail(w, r, &Error{Status: http.StatusNotImplemented, Type: typeValidation,
				Msg: "InvokeModelWithBidirectionalStream is not supported by this gateway yet"})
		})
		api.Get("/gateway/whoami", p.whoami)
	})
	api.NotFound(notFound)
	api.MethodNotAllowed(methodNotAllowed)
	if cfg.BasePath == "" {
		p.router = api
	} else {
		root := chi.NewRouter()
		root.NotFound(notFound)
		root.MethodNotAllowed(methodNotAllowed)
		root.Mount(cfg.BasePath, api)
		p.router = root
	}
	return p, nil
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{id: newRequestID(), start: p.cfg.Now()}
	rec := &recorder{ResponseWriter: w, now: p.cfg.Now}
	rec.Header().Set("X-Gateway-Request-Id", st.id)
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	if m := p.cfg.Metrics; m != nil {
		m.inFlight.Inc()
		defer m.inFlight.Dec()
	}
	defer p.finish(rec, r, st)
	p.router.ServeHTTP(rec, r)
}

// reqState is what the gateway learns about a request on its way through;
// it travels in the request context under an unexported key.
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
	// idleFired is set when Bedrock went quiet for StreamIdleTimeout.
	idleFired atomic.Bool
}

// outbound is the fully prepared upstream request.
type outbound struct {
	creds       aws.Credentials
	method      string
	rawPath     string // escaped upstream path
	rawQuery    string
	header      http.Header
	body        []byte
	payloadHash string // hex SHA-256 of body
	// idle cancels the upstream exchange when Bedrock goes quiet once
	// its response has started.
	idle *time.Timer
}

type stateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

func (p *Proxy) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := p.cfg.Authenticator.Authenticate(r)
		if err != nil {
			e := authError(err)
			p.cfg.Metrics.authFailure(e)
			p.fail(w, r, e)
			return
		}
		stateFrom(r.Context()).identity = &id
		next.ServeHTTP(w, r)
	})
}

// handle serves one route: everything that can fail is done here, before
// the ReverseProxy is involved, because its Rewrite hook cannot refuse a
// request.
func (p *Proxy) handle(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st := stateFrom(r.Context())
		st.op = rt.op

		if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
			p.fail(w, r, errValidation("Content-Encoding is not supported", nil))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.cfg.MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				p.fail(w, r, &Error{Status: http.StatusRequestEntityTooLarge, Type: typeRequestTooBig,
					Msg: fmt.Sprintf("request body is larger than %d bytes", p.cfg.MaxBodyBytes)})
				return
			}
			p.fail(w, r, errValidation("could not read the request body", err))
			return
		}
		t, err := rt.target(r, body)
		if err != nil {
			p.fail(w, r, errValidation(err.Error(), err))
			return
		}
		st.modelID = t.model
		if !t.body {
			body = nil
		}

		spec, err := p.cfg.Resolver.Resolve(*st.identity)
		if err != nil {
			p.fail(w, r, resolveError(err))
			return
		}
		st.spec = &spec
		if p.cfg.Policy != nil {
			if err := p.cfg.Policy.Admit(*st.identity, rt.op, t.model); err != nil {
				p.fail(w, r, policyError(err))
				return
			}
		}

		header := outboundHeader(r.Header, p.cfg.UserAgent)
		if !p.cfg.DisableMetadataStamp {
			md := identityMetadata(st.identity, st.spec)
			switch rt.stamp {
			case stampConverseBody:
				body, err = stampConverse(body, md)
			case stampInvokeHeader:
				err = stampInvoke(header, md)
			}
			if err != nil {
				p.fail(w, r, errValidation(err.Error(), err))
				return
			}
		}

		creds, err := p.cfg.Credentials.Get(r.Context(), spec)
		if err != nil {
			p.fail(w, r, credentialError(r.Context(), err))
			return
		}

		// The upstream exchange is cancelled when the client goes away
		// (the request context) or when Bedrock goes quiet too long.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		sum := sha256.Sum256(body)
		st.out = &outbound{
			creds:       creds,
			method:      rt.method,
			rawPath:     strings.TrimSuffix(p.cfg.Endpoint.EscapedPath(), "/") + t.path,
			rawQuery:    t.query,
			header:      header,
			body:        body,
			payloadHash: hex.EncodeToString(sum[:]),
			idle: time.AfterFunc(p.cfg.StreamIdleTimeout, func() {
				st.idleFired.Store(true)
				cancel()
			}),
		}
		// Until the response starts, ResponseHeaderTimeout applies instead.
		st.out.idle.Stop()
		defer st.out.idle.Stop()
		p.rp.ServeHTTP(w, r.WithContext(ctx))
	}
}

const msgNoCredentials = "missing credentials: send your gateway API key as \"Authorization: Bearer <key>\" (AWS_BEARER_TOKEN_BEDROCK) or \"x-api-key\", or an identity-provider token as a bearer token"

// authError maps an authentication failure to the client's answer. The
// cause, which may say why a credential was refused, goes to the log.
func authError(err error) *Error {
	switch {
	case errors.Is(err, auth.ErrBadRequest):
		return &Error{Status: http.StatusBadRequest, Type: typeValidation,
			Msg: "the request's credentials or identity headers are malformed or ambiguous: send exactly one credential, and identity headers only with a platform key", Err: err}
	case errors.Is(err, auth.ErrForbidden):
		return &Error{Status: http.StatusForbidden, Type: typeAccessDenied, Msg: "your key may not act for this tenant or user", Err: err}
	case errors.Is(err, auth.ErrNoCredentials):
		return &Error{Status: http.StatusUnauthorized, Type: typeAccessDenied,
			Msg: msgNoCredentials, Err: err}
	default:
		return &Error{Status: http.StatusUnauthorized, Type: typeAccessDenied, Msg: "the credentials are not valid", Err: err}
	}
}

// resolveError maps a failure to turn an identity into a session.
func resolveError(err error) *Error {
	if errors.Is(err, tenancy.ErrInexpressible) {
		return &Error{Status: http.StatusForbidden, Type: typeAccessDenied,
			Msg: "your identity cannot be expressed as an AWS session (session name or tags): ask the gateway operator", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Type: typeInternal, Msg: "the gateway could not map your identity to an AWS session", Err: err}
}

// outboundHeader builds the upstream header set from the allow-list.
func outboundHeader(in http.Header, userAgent string) http.Header {
	h := make(http.Header, 8)
	for name, vals := range in {
		if c := http.CanonicalHeaderKey(name); allowedHeader(c) {
			h[c] = append([]string(nil), vals...)
		}
	}
	h.Set("User-Agent", userAgent)
	return h
}

// credentialError maps a session-cache failure to the client's answer. The
// cause (which may name ARNs) goes to the log only.
func credentialError(ctx context.Context, err error) *Error {
	switch {
	case ctx.Err() != nil:
		return &Error{Status: statusClientClosed, Type: typeValidation, Msg: "client closed the request", Err: err}
	case errors.Is(err, sessioncache.ErrAccessDenied):
		return &Error{Status: http.StatusForbidden, Type: typeAccessDenied, Msg: "the gateway is not allowed to create an AWS session for you: ask the gateway operator", Err: err}
	case errors.Is(err, sessioncache.ErrInvalidSession):
		return &Error{Status: http.StatusInternalServerError, Type: typeInternal, Msg: "AWS refused the session the gateway built for you: ask the gateway operator", Err: err}
	case errors.Is(err, sessioncache.ErrOverloaded):
		e := &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Msg: "the gateway is creating AWS sessions for many users at once; retry shortly", Err: err}
		var oe *sessioncache.OverloadedError
		if errors.As(err, &oe) {
			e.RetryAfter = oe.RetryAfter
		}
		return e
	case errors.Is(err, sessioncache.ErrThrottled), errors.Is(err, sessioncache.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Msg: "the gateway could not obtain AWS credentials for you right now; retry later", Err: err}
	default:
		return &Error{Status: http.StatusInternalServerError, Type: typeInternal, Msg: "internal error while obtaining AWS credentials", Err: err}
	}
}

// statusClientClosed is the de-facto status (nginx) for a client that went
// away before the answer; it is logged, the client never sees it.
const statusClientClosed = 499

// allowedHeader reports whether an inbound header may be forwarded: the
// headers Bedrock Runtime binds (Content-Type, Accept, X-Amzn-Bedrock-*).
// Everything else, notably Authorization, X-Amz-*, X-Api-Key, Host,
// X-Forwarded-*, Idempotency-Key and hop-by-hop headers, is dropped.
func allowedHeader(canonicalName string) bool {
	switch canonicalName {
	case "Content-Type", "Accept":
		return true
	}
	return strings.HasPrefix(canonicalName, "X-Amzn-Bedrock-")
}

// rewrite builds the upstream request from the prepared outbound state. It
// runs only for requests forward has fully vetted.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	o := st.out

	u := *p.cfg.Endpoint
	u.RawPath = o.rawPath
	u.Path, _ = url.PathUnescape(o.rawPath) // escaped by escapeLabel: cannot fail
	u.RawQuery = o.rawQuery
	u.Fragment = ""
	pr.Out.URL = &u
	pr.Out.Host = ""
	pr.Out.Method = o.method
	pr.Out.Header = o.header.Clone()

	pr.Out.TransferEncoding = nil
	if o.body == nil {
		pr.Out.Body = http.NoBody
		pr.Out.ContentLength = 0
		pr.Out.GetBody = nil
		return
	}
	pr.Out.Body = io.NopCloser(bytes.NewReader(o.body))
	pr.Out.ContentLength = int64(len(o.body))
	pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(o.body)), nil }
}

// upstreamError answers when the upstream exchange failed before a response
// arrived. It never echoes the transport error's text.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case r.Context().Err() != nil:
		p.fail(w, r, &Error{Status: statusClientClosed, Type: typeValidation, Msg: "client closed the request", Err: err})
	case errors.Is(err, context.DeadlineExceeded):
		p.fail(w, r, &Error{Status: http.StatusGatewayTimeout, Type: typeUnavailable, Msg: "Bedrock did not answer in time", Err: err})
	default:
		p.fail(w, r, &Error{Status: http.StatusBadGateway, Type: typeUnavailable, Msg: "the gateway could not reach Bedrock", Err: err})
	}
}

// fail answers with e and remembers the cause for the access log.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, e *Error) {
	st := stateFrom(r.Context())
	if rec, ok := w.(*recorder); ok {
		rec.err = e
	}
	if e.Status == statusClientClosed {
		if rec, ok := w.(*recorder); ok {
			rec.status = statusClientClosed
		}
		return
	}
	id := ""
	if st != nil {
		id = st.id
	}
	writeError(w, id, e)
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// recorder notes the status and size of an answer. It implements Flush and
// Unwrap: without them the ReverseProxy could not flush event streams
// through it and streaming would silently stop.
type recorder struct {
	http.ResponseWriter
	now       func() time.Time
	status    int
	bytes     int64
	firstByte time.Time
	err       *Error
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.firstByte.IsZero() && len(b) > 0 {
		r.firstByte = r.now()
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) statusCode() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// signingTransport signs each upstream request with the credentials of the
// caller's own session, carried in the request context. A request without
// them is refused: the gateway has no other credentials to sign with, and
// must never have.
type signingTransport struct {
	next   http.RoundTripper
	signer *v4.Signer
	region string
	now    func() time.Time
	// sent, if set, is told when a request leaves for Bedrock.
	sent func(*reqState)
}

var errNoSession = errors.New("no session credentials for this request")

func (t *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateFrom(req.Context())
	if st == nil || st.out == nil || !st.out.creds.HasKeys() {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errNoSession
	}
	if t.sent != nil {
		t.sent(st)
	}
	out := req.Clone(req.Context())
	out.Header.Del("Authorization")
	out.Header.Del("X-Amz-Date")
	out.Header.Del("X-Amz-Security-Token")
	if err := t.signer.SignHTTP(req.Context(), st.out.creds, out, st.out.payloadHash, signingName, t.region, t.now()); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("sign request: %w", err)
	}
	return t.next.RoundTrip(out)
}
