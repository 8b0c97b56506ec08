package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/bedrock-gateway/gateway/internal/sigv4"
)

// forward sends a prepared request to Bedrock, signed with the caller's
// own session, and relays the answer. The upstream exchange is cancelled
// when the client goes away (the request context) or when Bedrock goes
// quiet for StreamIdleTimeout once its response has started; until then
// ResponseHeaderTimeout applies instead.
//
// It does what httputil.ReverseProxy would, for the one kind of request
// the gateway makes: prepare has already built the whole outbound request
// (path, allow-listed header, body), so there is nothing of the caller's
// to clone, rewrite or strip, and a response is relayed with its
// hop-by-hop headers removed, event streams flushed event by event, and
// trailers passed on. The request is sent once: nothing here retries, and
// a body the transport has started to send is never sent again (no
// GetBody), so Bedrock cannot bill a POST twice.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, st *reqState, out *outbound) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out.cancel = cancel
	defer func() {
		if out.idle != nil {
			out.idle.Stop()
		}
	}()
	st.out = out

	req, err := p.upstreamRequest(ctx, out)
	if err != nil {
		out.release() // nothing was sent: the body is ours again
		p.fail(w, r, proxyError(ctx, err))
		return
	}
	p.cfg.Metrics.observeOverhead(st.op, p.cfg.Now().Sub(st.start))
	st.trace.startUpstream(ctx, p.cfg.Endpoint.Host, st)
	resp, err := p.upstream.RoundTrip(req)
	st.trace.roundTripped(ctx, err)
	if err != nil {
		p.fail(w, r, proxyError(ctx, err))
		return
	}
	if err := p.modifyResponse(resp); err != nil {
		resp.Body.Close()
		p.fail(w, r, proxyError(ctx, err))
		return
	}
	defer resp.Body.Close()
	respond := p.relayAnswer
	if out.respond != nil {
		respond = out.respond
	}
	if err := respond(w, resp); err != nil {
		p.relayFailed(ctx, w, r, err)
		return
	}
	// An HTTP/1.x answer of declared length is complete: send it now,
	// rather than when the handler returns after the epilogue (usage
	// record, access line), which the client need not wait for. Without
	// a length, flushing would turn the answer chunked; over HTTP/2 it
	// would send the end of the stream in a frame of its own.
	if r.ProtoMajor == 1 && w.Header().Get("Content-Length") != "" {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// relayAnswer passes Bedrock's answer on as it is: its status, its header
// without hop-by-hop fields, its body and its trailers.
func (p *Proxy) relayAnswer(w http.ResponseWriter, resp *http.Response) error {
	removeHopByHop(resp.Header)
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = append(h[k], vv...)
	}
	if len(resp.Trailer) > 0 {
		// Announce the trailers Bedrock declared, so that an HTTP/1.1
		// response is chunked and carries them.
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h.Add("Trailer", strings.Join(names, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	// A response of unknown length (an event stream: tapResponse makes
	// sure of it) is flushed after every read, so each event reaches the
	// client as Bedrock sends it; one of known length (Bedrock's JSON
	// answers) goes through the server's buffer and is flushed once.
	if err := p.relay(w, resp.Body, resp.ContentLength == -1); err != nil {
		return err
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	return nil
}

// relayFailed ends an answer whose status line is already out after
// reading Bedrock's body or writing the client's failed: the only way
// left to tell the client the answer is incomplete is to break the
// connection (HTTP/1) or reset the stream (HTTP/2). net/http does that
// for ErrAbortHandler without logging it; finish, deferred, still records
// the request. A test ResponseWriter has no connection to break.
func (p *Proxy) relayFailed(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		p.log.DebugContext(ctx, "relay stopped", "error", err)
	} else {
		p.log.WarnContext(ctx, "relaying Bedrock's answer failed", "error", err)
	}
	if r.Context().Value(http.ServerContextKey) != nil {
		panic(http.ErrAbortHandler)
	}
}

// upstreamRequest builds the request to Bedrock from prepare's outbound
// state and signs it with the caller's session credentials. A request
// without them is refused: the gateway has no other credentials to sign
// with, and must never have.
func (p *Proxy) upstreamRequest(ctx context.Context, o *outbound) (*http.Request, error) {
	if !o.creds.HasKeys() {
		return nil, errNoSession
	}
	// The path is sent exactly as prepare escaped it: as Opaque, which
	// RequestURI (the request line, HTTP/2's :path) returns as it is,
	// where Path and RawPath would be unescaped and checked against each
	// other on every use.
	u := &url.URL{
		Scheme: p.cfg.Endpoint.Scheme,
		Host:   p.cfg.Endpoint.Host,
		Opaque: o.rawPath,
	}
	// Built on the stack and copied once by WithContext, the only way to
	// give a Request its context.
	req := (&http.Request{
		Method:     o.method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		// prepare built the header for this request alone: it is signed
		// in place.
		Header: o.header,
		Host:   p.signingHost,
		Body:   http.NoBody,
	}).WithContext(ctx)
	if len(o.body) > 0 {
		// The transport closes the body when it is done with it, even
		// on error, and the buffer then goes back to the pool.
		b := &pooledBody{buf: o.bodyBuf}
		o.bodyBuf = nil
		b.r.Reset(o.body)
		req.Body = b
		req.ContentLength = int64(len(o.body))
	}
	sr := sigv4.Request{
		Method:        o.method,
		Host:          p.signingHost,
		Path:          o.rawPath, // what goes on the wire
		RawQuery:      o.rawQuery,
		Header:        o.header,
		ContentLength: req.ContentLength,
		PayloadHash:   o.payloadHash,
	}
	if err := sigv4.Sign(&sr, o.creds, signingName, p.cfg.Region, p.cfg.Now()); err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	u.RawQuery = sr.RawQuery
	return req, nil
}

var errNoSession = errors.New("no session credentials for this request")

// relay copies Bedrock's body to the client, flushing after every write
// when flush is set. It returns nil at the body's end, or the first read
// or write error.
func (p *Proxy) relay(w http.ResponseWriter, body io.Reader, flush bool) error {
	buf := p.buffers.Get()
	defer p.buffers.Put(buf)
	f, _ := w.(http.Flusher)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush && f != nil {
				f.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110, section 7.6.1): a proxy must not pass them on.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers from h, and those the
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textprotoTrim(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
}

func textprotoTrim(s string) string { return strings.Trim(s, " \t") }
