package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// outbound is the upstream request prepare builds. Once prepare succeeds
// it is complete; after a refusal it holds what was learned before it.
type outbound struct {
	model string               // model ID for metering and logs ("" if none, or not parsed yet)
	spec  *tenancy.SessionSpec // the caller's session; nil until resolved

	creds       aws.Credentials
	method      string
	rawPath     string // escaped upstream path
	rawQuery    string
	header      http.Header
	body        []byte
	payloadHash string // hex SHA-256 of body
	// meterOp is the Bedrock operation whose answer the tap meters, when
	// it is not the request's own (an OpenAI call sent as Converse).
	meterOp string
	// respond, if set, answers the client from Bedrock's response
	// instead of relaying it as it is (an OpenAI call translated to
	// Converse); the tap is on resp.Body either way.
	respond func(w http.ResponseWriter, resp *http.Response) error
	// readBuf and bodyBuf are the pooled buffers behind the request
	// body as read and as sent (the same one when it was not
	// rewritten); see bodypool.go for when each goes back.
	readBuf, bodyBuf *[]byte
	// idle cancels the upstream exchange (cancel) when Bedrock goes
	// quiet once its response has started; tapResponse starts it, and
	// forward stops it.
	idle   *time.Timer
	cancel context.CancelFunc
}

// prepare runs every check a request must pass before it may go upstream,
// cheapest and least privileged first: nothing asks STS for credentials
// until the request is known to be well formed and admitted. It returns
// the prepared request; with a refusal it also returns the request as far
// as it got (never nil), whose model and session the epilogue records.
func (p *Proxy) prepare(w http.ResponseWriter, r *http.Request, rt route, st *reqState) (*outbound, *Error) {
	id := st.identity
	out := &st.outVal
	out.method = rt.method
	body, err := p.readBody(w, r, out)
	if err != nil {
		return out, err
	}
	t, err := parseTarget(rt, r, body)
	if err != nil {
		return out, err
	}
	out.model, out.rawQuery = t.model, t.query
	out.rawPath = strings.TrimSuffix(p.cfg.Endpoint.EscapedPath(), "/") + t.path
	if !t.body {
		body = nil
	}
	spec, err := p.resolve(*id)
	if err != nil {
		return out, err
	}
	st.specVal = spec
	out.spec = &st.specVal
	if err = p.admit(r.Context(), *id, rt.op, t.model); err != nil {
		return out, err
	}
	if err = p.checkAsyncOwner(r.Context(), rt.op, t, out.spec); err != nil {
		return out, err
	}
	if out.header, out.body, err = p.buildOutbound(r.Header, body, rt.stamp, id, out.spec, out); err != nil {
		return out, err
	}
	return out, p.seal(r.Context(), out)
}

// seal finishes a request whose body is final: it gives back the buffer
// the body was read into unless the body sent is still in it, hashes the
// body for SigV4 and, last, gets the caller's session credentials (an STS
// call on a cache miss), so that only requests that passed every check
// cost one.
func (p *Proxy) seal(ctx context.Context, out *outbound) *Error {
	if aliases(out.body, out.readBuf) {
		out.bodyBuf, out.readBuf = out.readBuf, nil
	} else {
		putBuf(out.readBuf) // the body as read is no longer referenced
		out.readBuf = nil
	}
	sum := sha256.Sum256(out.body)
	out.payloadHash = hex.EncodeToString(sum[:])
	var err *Error
	out.creds, err = p.credentials(ctx, *out.spec)
	return err
}

// release gives back the pooled buffers of a request that is not sent:
// nothing refers to its body any more.
func (o *outbound) release() {
	putBuf(o.readBuf)
	putBuf(o.bodyBuf)
	o.readBuf, o.bodyBuf = nil, nil
}

// readBody reads the whole request body, which SigV4 signs, up to
// MaxBodyBytes. A compressed body is refused: Bedrock Runtime does not
// take one, and the gateway could not stamp it. A body declared larger
// than MaxBodyBytes is refused before any of it is read, and the body
// must arrive within bodyAllowance: the read deadline is lifted once it
// is in, since the response may stream for minutes.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request, out *outbound) ([]byte, *Error) {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, errValidation("Content-Encoding is not supported", nil)
	}
	if r.ContentLength > p.cfg.MaxBodyBytes {
		return nil, errTooLarge(p.cfg.MaxBodyBytes)
	}
	if r.Body != nil && r.Body != http.NoBody {
		// A wall-clock I/O deadline, not Config.Now. A ResponseWriter
		// that cannot set one (http.ErrNotSupported: a test recorder)
		// reads without it.
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(p.cfg.bodyAllowance(r.ContentLength))) == nil {
			defer rc.SetReadDeadline(time.Time{})
		}
	}
	body, buf, err := readSized(http.MaxBytesReader(w, r.Body, p.cfg.MaxBodyBytes), r.ContentLength)
	out.readBuf = buf
	if err != nil {
		return nil, bodyError(err, p.cfg.MaxBodyBytes)
	}
	if st := stateFrom(r.Context()); st != nil {
		st.bodyRead = true
	}
	return body, nil
}

// readSized reads all of r, which declared length bytes (-1: unknown). A
// declared length (at most MaxBodyBytes: readBody checked) is read into a
// buffer of that size from the body pool (bodypool.go), returned as buf,
// where io.ReadAll grows a new buffer step by step (for 4 KiB, nine
// allocations and 2.5 times the bytes). A body shorter than it declared
// is an error, as net/http's server makes it; one longer (which that
// server never delivers) is read on, still bounded by r, into a buffer of
// its own (buf is then nil and the pooled one already back).
func readSized(r io.Reader, length int64) (body []byte, buf *[]byte, err error) {
	if length <= 0 {
		body, err = io.ReadAll(r)
		return body, nil, err
	}
	buf = getBuf(int(length))
	if n, err := io.ReadFull(r, *buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return (*buf)[:n], buf, err
	}
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	if n == 0 {
		if err == io.EOF {
			return *buf, buf, nil
		}
		return *buf, buf, err
	}
	rest, err := io.ReadAll(r)
	body = append(append(append([]byte(nil), *buf...), one[0]), rest...)
	putBuf(buf)
	return body, nil, err
}

// parseTarget builds where the request goes upstream from its parsed path,
// query and (for StartAsyncInvoke) body.
func parseTarget(rt route, r *http.Request, body []byte) (target, *Error) {
	t, err := rt.target(r, body)
	if err != nil {
		return target{}, errValidation(err.Error(), err)
	}
	return t, nil
}

// resolve maps the caller to the session that will be billed.
func (p *Proxy) resolve(id auth.Identity) (tenancy.SessionSpec, *Error) {
	spec, err := p.cfg.Resolver.Resolve(id)
	if err != nil {
		return tenancy.SessionSpec{}, resolveError(err)
	}
	return spec, nil
}

// admit asks the Policy, if any, whether the caller may make the call,
// then the Budgets whether the caller has budget left for a billed one.
func (p *Proxy) admit(ctx context.Context, id auth.Identity, op, model string) *Error {
	if p.cfg.Policy != nil {
		if err := p.cfg.Policy.Admit(id, op, model); err != nil {
			return policyError(err)
		}
	}
	if p.cfg.Budgets != nil && usage.Billed(op) {
		if err := p.cfg.Budgets.Check(ctx, id); err != nil {
			return budgetError(err)
		}
	}
	return nil
}

// buildOutbound builds the upstream header set, removes the caller's keys
// in the gateway's namespace from the request metadata and, unless
// disabled, stamps the caller's identity into it, in the body or a header
// as the operation carries it. The header is forwarded on every route (an
// X-Amzn-Bedrock-* header): where it is not stamped, its gateway keys are
// removed all the same.
func (p *Proxy) buildOutbound(in http.Header, body []byte, stamp stampKind, id *auth.Identity, spec *tenancy.SessionSpec, out *outbound) (http.Header, []byte, *Error) {
	header := outboundHeader(in, p.cfg.UserAgent)
	var md map[string]string
	if !p.cfg.DisableMetadataStamp {
		md = identityMetadata(id, spec)
	}
	var err error
	switch stamp {
	case stampConverseBody:
		// Stamped into a pooled buffer, which is kept when the
		// stamped body is in it (not when the body is unchanged or
		// outgrew it).
		dst := getBuf(len(body) + metadataJSONLen(md) + 64)
		body, err = stampConverseInto((*dst)[:0], body, md)
		if aliases(body, dst) {
			out.bodyBuf = dst
		} else {
			putBuf(dst)
		}
	case stampInvokeHeader:
		err = stampInvoke(header, md)
	}
	if err == nil && stamp != stampInvokeHeader {
		err = stampInvoke(header, nil)
	}
	if err != nil {
		return nil, nil, errValidation(err.Error(), err)
	}
	return header, body, nil
}

// credentials gets the caller's own session credentials (an STS call on
// a cache miss): the last step, so that only admitted requests cost one.
func (p *Proxy) credentials(ctx context.Context, spec tenancy.SessionSpec) (aws.Credentials, *Error) {
	var span *sessionTrace
	if p.tracer != nil {
		ctx, span = startSession(ctx, spec)
	}
	creds, err := p.cfg.Credentials.Get(ctx, spec)
	span.end(ctx, err)
	if err != nil {
		return aws.Credentials{}, credentialError(ctx, err)
	}
	return creds, nil
}

// outboundHeader builds the upstream header set from the allow-list.
func outboundHeader(in http.Header, userAgent string) http.Header {
	h := make(http.Header, 8)
	// One backing array for every value (and User-Agent), each header's
	// slice capped so that appending to one cannot spill into the next.
	n := 1
	for name, vals := range in {
		if allowedHeader(http.CanonicalHeaderKey(name)) {
			n += len(vals)
		}
	}
	all := make([]string, 0, n)
	for name, vals := range in {
		if c := http.CanonicalHeaderKey(name); allowedHeader(c) {
			from := len(all)
			all = append(all, vals...)
			h[c] = all[from:len(all):len(all)]
		}
	}
	all = append(all, userAgent)
	h["User-Agent"] = all[len(all)-1:]
	return h
}

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
