package sigv4

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/logging"
	"github.com/google/go-cmp/cmp"
)

// input is one request as both signers see it.
type input struct {
	method  string
	scheme  string // "https" if empty
	urlHost string // URL.Host
	reqHost string // http.Request.Host
	// path is the escaped path. Without opaque the SDK request carries it
	// as URL.RawPath (with URL.Path its unescaping) and Sign gets
	// URL.EscapedPath(), which is path itself whenever path is a valid
	// encoding; with opaque it is carried in URL.Opaque, the SDK's
	// documented way to hand it an exact escaped path.
	path          string
	opaque        bool
	query         string
	header        http.Header
	contentLength int64
	payloadHash   string
	creds         aws.Credentials
	service       string
	region        string
	t             time.Time
}

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// result is what a signer leaves on the request.
type result struct {
	Header   http.Header
	RawQuery string
	Host     string // the host the request goes out with
}

// errUnsignable marks an input the SDK cannot be given.
type errUnsignable string

func (e errUnsignable) Error() string { return string(e) }

func (in *input) url() (*url.URL, string, error) {
	u := &url.URL{Scheme: in.scheme, Host: in.urlHost, RawQuery: in.query}
	if u.Scheme == "" {
		u.Scheme = "https"
	}
	if in.opaque {
		// GetURIPath takes the opaque part after "//", from its first '/'
		// to its first '?'.
		if strings.ContainsAny(in.urlHost, "/?") || strings.Contains(in.path, "?") || (in.path != "" && in.path[0] != '/') {
			return nil, "", errUnsignable("opaque form cannot carry this host and path")
		}
		u.Opaque = "//" + in.urlHost + in.path
		return u, in.path, nil
	}
	if in.path != "" {
		p, err := url.PathUnescape(in.path)
		if err != nil {
			return nil, "", errUnsignable("path: " + err.Error())
		}
		u.Path, u.RawPath = p, in.path
	}
	return u, u.EscapedPath(), nil
}

// signSDK signs in with the SDK, returning what it left on the request and
// the canonical request and string to sign it logged.
func signSDK(in *input) (result, string, error) {
	u, _, err := in.url()
	if err != nil {
		return result{}, "", err
	}
	req := &http.Request{
		Method:        in.method,
		URL:           u,
		Host:          in.reqHost,
		Header:        in.header.Clone(),
		ContentLength: in.contentLength,
	}
	var logged string
	logger := logging.LoggerFunc(func(_ logging.Classification, format string, v ...any) {
		logged = fmt.Sprintf(format, v...)
	})
	// A new signer each time: the SDK's key cache is keyed by access key
	// ID, not secret, so a shared one would sign with a stale key when a
	// test reuses an ID with another secret.
	s := v4.NewSigner(func(o *v4.SignerOptions) { o.LogSigning, o.Logger = true, logger })
	if err := s.SignHTTP(context.Background(), in.creds, req, in.payloadHash, in.service, in.region, in.t); err != nil {
		return result{}, "", err
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	return result{Header: req.Header, RawQuery: req.URL.RawQuery, Host: host}, logged, nil
}

// signOurs signs in with Sign's machinery, returning what it left on the
// request and its canonical request and string to sign.
func signOurs(in *input, keys *keyCache) (result, string, error) {
	u, path, err := in.url()
	if err != nil {
		return result{}, "", err
	}
	host := in.reqHost
	if host == "" {
		host = in.urlHost
	}
	r := &Request{
		Method:        in.method,
		Host:          SigningHost(u.Scheme, host),
		Path:          path,
		RawQuery:      in.query,
		Header:        in.header.Clone(),
		ContentLength: in.contentLength,
		PayloadHash:   in.payloadHash,
	}
	st := new(state)
	signer{keys: keys}.signWith(st, r, in.creds, in.service, in.region, in.t)
	debug := fmt.Sprintf("canonical request:\n%s\nstring to sign:\n%s", st.buf, st.sts[blockSize:])
	return result{Header: r.Header, RawQuery: r.RawQuery, Host: r.Host}, debug, nil
}

// caseCollision reports whether two signed header keys of h lower-case
// alike, counting the X-Amz-Date and X-Amz-Security-Token keys the SDK
// adds: the SDK then joins their values in map iteration order, so its
// signature varies from run to run.
func caseCollision(h http.Header, token string) bool {
	seen := map[string]string{"x-amz-date": "X-Amz-Date"}
	if token != "" {
		seen["x-amz-security-token"] = "X-Amz-Security-Token"
	}
	for k := range h {
		switch k {
		case "Authorization", "User-Agent", "X-Amzn-Trace-Id", "Expect", "Transfer-Encoding":
			continue
		}
		if strings.EqualFold(k, "content-length") {
			continue
		}
		l := strings.ToLower(k)
		if l == "host" {
			continue
		}
		if other, ok := seen[l]; ok && other != k {
			return true
		}
		seen[l] = k
	}
	return false
}

// checkSame signs in with both signers and fails t unless they leave the
// same headers, query and host. It reports false, without failing, for an
// input the SDK cannot be given.
func checkSame(t testing.TB, in *input) bool {
	t.Helper()
	ours, ourDebug, err := signOurs(in, nil)
	if _, ok := err.(errUnsignable); ok {
		return false
	} else if err != nil {
		t.Fatal(err)
	}
	// With the key cache as well: same answer, twice (miss, then hit).
	for range 2 {
		cached, _, err := signOurs(in, newKeyCache(4))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ours, cached); diff != "" {
			t.Fatalf("with key cache (-without +with):\n%s", diff)
		}
	}

	// When keys collide by case the SDK has several right answers; Sign's
	// must be one of them. 64 tries make missing it a 2^-64 event for two
	// keys.
	tries := 1
	if caseCollision(in.header, in.creds.SessionToken) {
		tries = 64
	}
	var sdk result
	var sdkDebug string
	for range tries {
		sdk, sdkDebug, err = signSDK(in)
		if err != nil {
			t.Fatal(err)
		}
		if cmp.Equal(sdk, ours) {
			return true
		}
	}
	t.Errorf("Sign differs from the SDK (-sdk +ours):\n%s\nSDK:\n%s\nours:\n%s", cmp.Diff(sdk, ours), sdkDebug, ourDebug)
	return true
}
