package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// forward hands a prepared request to the ReverseProxy. The upstream
// exchange is cancelled when the client goes away (the request context)
// or when Bedrock goes quiet for StreamIdleTimeout once its response has
// started; until then ResponseHeaderTimeout applies instead.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, st *reqState, out *outbound) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out.idle = time.AfterFunc(p.cfg.StreamIdleTimeout, func() {
		st.idleFired.Store(true)
		cancel()
	})
	out.idle.Stop() // tapResponse starts it
	defer out.idle.Stop()
	st.out = out
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// rewrite builds the upstream request from the prepared outbound state. It
// runs only for requests prepare has fully vetted.
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
	// prepare built the header for this request alone; the signing
	// transport works on its own copy.
	pr.Out.Header = o.header

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
	// The signer writes the header and Host and reads the rest, so a
	// shallow copy with its own header is the clone it needs; a deep
	// Request.Clone would copy the URL, path values and more besides.
	out := req.WithContext(req.Context())
	out.Header = req.Header.Clone()
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
