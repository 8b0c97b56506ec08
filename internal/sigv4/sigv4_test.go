package sigv4

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	bedrockHost = "bedrock-runtime.us-east-1.amazonaws.com"
	modelPath   = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
	bodyHash    = "7f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100"
)

var signTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// sessionToken is an STS session token of the usual size, about 1 KiB.
var sessionToken = "IQoJb3JpZ2luX2VjE" + strings.Repeat("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/", 27) + "=="

var sessionCreds = aws.Credentials{
	AccessKeyID:     "ASIAEXAMPLEEXAMPLE01",
	SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	SessionToken:    sessionToken,
}

var staticCreds = aws.Credentials{
	AccessKeyID:     "AKIDEXAMPLEEXAMPLE01",
	SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}

// bedrockHeader is the header the gateway hands the signer for a Converse
// call: what prepare builds, with Host and Content-Length as a client would
// have sent them (neither is signed from the header).
func bedrockHeader() http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	h.Set("X-Amzn-Bedrock-Request-Metadata", `{"team":"data-science","cost-center":"12345"}`)
	h.Set("User-Agent", "bedrock-gateway/1.0 (+https://example.com) aws-sdk-go-v2/1.48.0")
	h.Set("Host", bedrockHost)
	h.Set("Content-Length", "1234")
	return h
}

func bedrockInput() input {
	return input{
		method:        http.MethodPost,
		urlHost:       bedrockHost,
		path:          modelPath,
		header:        bedrockHeader(),
		contentLength: 1234,
		payloadHash:   bodyHash,
		creds:         sessionCreds,
		service:       "bedrock",
		region:        "us-east-1",
		t:             signTime,
	}
}

// with returns the Bedrock input changed by fn.
func with(fn func(*input)) input {
	in := bedrockInput()
	fn(&in)
	return in
}

func withHeader(fn func(h http.Header)) input {
	return with(func(in *input) { fn(in.header) })
}

func TestSignMatchesSDK(t *testing.T) {
	cases := map[string]input{
		"bedrock converse":             bedrockInput(),
		"static credentials, no token": with(func(in *input) { in.creds = staticCreds }),
		"empty body": with(func(in *input) {
			in.contentLength = 0
			in.payloadHash = emptySHA256
			in.header.Del("Content-Length")
		}),
		"negative content length (unknown)": with(func(in *input) { in.contentLength = -1 }),
		"content length without header":     with(func(in *input) { in.header.Del("Content-Length") }),
		"content-length header in lower case": withHeader(func(h http.Header) {
			h.Del("Content-Length")
			h["content-length"] = []string{"99"}
		}),
		"GET, no body, no query": with(func(in *input) {
			in.method = http.MethodGet
			in.path = "/async-invoke"
			in.contentLength = 0
			in.payloadHash = emptySHA256
		}),
		"empty method":  with(func(in *input) { in.method = "" }),
		"empty path":    with(func(in *input) { in.path = "" }),
		"root path":     with(func(in *input) { in.path = "/" }),
		"opaque path":   with(func(in *input) { in.opaque = true }),
		"opaque, empty": with(func(in *input) { in.opaque, in.path = true, "" }),
		"inference profile ARN in path": with(func(in *input) {
			in.path = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fab12cd34/invoke-with-response-stream"
		}),
		"escapes of every kind in path": with(func(in *input) {
			in.path = "/a%20b/c+d/e%2Bf/%7Euser/%25/%C3%A9t%C3%A9/!$&'()*,;=:@/x"
		}),
		"escaped path, opaque form": with(func(in *input) {
			in.opaque = true
			in.path = "/a%20b/c d/%ZZ/é/\x01\x7f/../."
		}),
		"path that needs escaping, not valid RawPath": with(func(in *input) { in.path = "/a b/c\"d/é" }),
		"double slashes and dots":                     with(func(in *input) { in.path = "//model/./../x//" }),
		"query": with(func(in *input) {
			in.method = http.MethodGet
			in.path = "/async-invoke"
			in.query = "maxResults=10&statusEquals=InProgress&sortOrder=Descending"
		}),
		"query, repeated keys and escapes": with(func(in *input) {
			in.query = "b=2&a=3&a=1&a=2&c=x%20y&c=x+y&d=%2F&d=-&e=%7E~&f=&g&h=a%3Db&%C3%A9=%E2%82%AC&sp ace=1&*=!&z=%41"
		}),
		"query, already canonical": with(func(in *input) { in.query = "a=1&b=%20&c=%2A" }),
		"query, pairs ParseQuery rejects": with(func(in *input) {
			in.query = "a=1;b=2&c=%zz&d=%4&&=x&e=ok&f=%&g=1%2"
		}),
		"query, only rejected pairs": with(func(in *input) { in.query = "a=%zz&b;c" }),
		"query, encoded order differs from decoded": with(func(in *input) {
			in.query = "k=a/b&k=a-b&k/=1&k-=2"
		}),
		"query, key without value and empty key": with(func(in *input) { in.query = "flag&=v&x=" }),
		"query, lone ampersands":                 with(func(in *input) { in.query = "&&&" }),
		"header with several values": withHeader(func(h http.Header) {
			h.Add("X-Amz-Meta-List", "one")
			h.Add("X-Amz-Meta-List", " two ")
			h.Add("X-Amz-Meta-List", "")
			h.Add("X-Amz-Meta-List", "three  four")
		}),
		"spaces in values": withHeader(func(h http.Header) {
			h.Set("X-Leading", "   lead")
			h.Set("X-Trailing", "trail   ")
			h.Set("X-Inner", "a  b   c    d e")
			h.Set("X-All", "  a  b  ")
			h.Set("X-Only-Spaces", "     ")
			h.Set("X-Empty", "")
			h.Set("X-Tabs", "\t a \t  b\t")
			h.Set("X-Unicode-Space", "\u00a0 x \u3000  y\u2003")
			h.Set("X-Newlines", "a\r\n  b\n")
			h.Set("X-Invalid-Utf8", "\xff  \xfe ")
		}),
		"header key with no values": withHeader(func(h http.Header) {
			h["X-Nil"] = nil
			h["X-Empty-Slice"] = []string{}
		}),
		"mixed-case and odd header names": withHeader(func(h http.Header) {
			h["x-lower"] = []string{"1"}
			h["X-UPPER"] = []string{"2"}
			h["x-MiXeD_under.score"] = []string{"3"}
			h["Zz"] = []string{"4"}
			h["0-digit"] = []string{"5"}
			h["A"] = []string{"6"}
		}),
		"non-ASCII header names": withHeader(func(h http.Header) {
			h["X-Ünïcode"] = []string{"1"}
			h["\u212aelvin"] = []string{"2"} // KELVIN SIGN lower-cases to 'k'
			h["İstanbul"] = []string{"3"}
			h["X-\xff-Bad"] = []string{"4"}
		}),
		"ignored headers present": withHeader(func(h http.Header) {
			h.Set("Authorization", "AWS4-HMAC-SHA256 Credential=old")
			h.Set("X-Amzn-Trace-Id", "Root=1-abc")
			h.Set("Expect", "100-continue")
			h.Set("Transfer-Encoding", "chunked")
		}),
		"ignored headers in non-canonical case are signed": withHeader(func(h http.Header) {
			h.Del("User-Agent")
			h["user-agent"] = []string{"lower/1.0"}
			h["authorization"] = []string{"stale"}
			h["EXPECT"] = []string{"100-continue"}
		}),
		"stale signing headers present": withHeader(func(h http.Header) {
			h.Set("Authorization", "old")
			h.Set("X-Amz-Date", "20000101T000000Z")
			h.Add("X-Amz-Date", "second")
			h.Set("X-Amz-Security-Token", "old-token")
		}),
		"token header present, credentials without token": with(func(in *input) {
			in.creds = staticCreds
			in.header.Set("X-Amz-Security-Token", "  caller's  token ")
		}),
		"token with spaces": with(func(in *input) { in.creds.SessionToken = "  tok  en  " }),
		"host header variants ignored": withHeader(func(h http.Header) {
			h.Set("Host", "other.example.com")
			h["host"] = []string{"lower.example.com"}
			h["HOST"] = []string{"upper.example.com"}
		}),
		"Request.Host overrides URL.Host": with(func(in *input) { in.reqHost = "vpce-1234.bedrock-runtime.us-east-1.vpce.amazonaws.com" }),
		"host with default https port":    with(func(in *input) { in.urlHost = bedrockHost + ":443" }),
		"host with other port":            with(func(in *input) { in.urlHost = "127.0.0.1:8443" }),
		"http with default port": with(func(in *input) {
			in.scheme = "http"
			in.urlHost = "localhost:80"
		}),
		"http with port 443 kept": with(func(in *input) {
			in.scheme = "HTTP"
			in.urlHost = "localhost:443"
		}),
		"IPv6 host with default port": with(func(in *input) { in.urlHost = "[::1]:443" }),
		"IPv6 host with port":         with(func(in *input) { in.urlHost = "[::1]:8443" }),
		"req host with spaces":        with(func(in *input) { in.reqHost = "  a  b  " }),
		"X-Amzn-Bedrock headers": withHeader(func(h http.Header) {
			h.Set("X-Amzn-Bedrock-GuardrailIdentifier", "gr-abc123")
			h.Set("X-Amzn-Bedrock-GuardrailVersion", "DRAFT")
			h.Set("X-Amzn-Bedrock-Trace", "ENABLED")
			h.Set("X-Amzn-Bedrock-PerformanceConfig-Latency", "optimized")
			h.Set("X-Amzn-Bedrock-Service-Tier", "priority")
			h.Set("X-Amz-Content-Sha256", bodyHash)
			h.Set("X-Amz-Client-Context", "e30=")
		}),
		"many headers (more than sixteen)": withHeader(func(h http.Header) {
			for i := range 40 {
				h.Set(fmt.Sprintf("X-Custom-%02d", 39-i), fmt.Sprint(i))
			}
		}),
		"no headers at all": with(func(in *input) { in.header = http.Header{} }),
		"secret longer than a block": with(func(in *input) {
			in.creds.SecretAccessKey = strings.Repeat("s", 61)
		}),
		"secret exactly filling a block": with(func(in *input) {
			in.creds.SecretAccessKey = strings.Repeat("s", 60)
		}),
		"empty secret and key ID": with(func(in *input) { in.creds = aws.Credentials{} }),
		"other region and service": with(func(in *input) {
			in.region = "eu-central-2"
			in.service = "bedrock-runtime"
		}),
		"time not in UTC": with(func(in *input) {
			in.t = time.Date(2026, 1, 1, 22, 30, 0, 999, time.FixedZone("EST", -5*3600))
		}),
		"time at the end of a year": with(func(in *input) {
			in.t = time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
		}),
		"year 10000": with(func(in *input) {
			in.t = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		}),
		"year -1": with(func(in *input) {
			in.t = time.Date(-1, 6, 1, 0, 0, 0, 0, time.UTC)
		}),
		"year 0": with(func(in *input) {
			in.t = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
		}),
		"year 9999": with(func(in *input) {
			in.t = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
		}),
		"query at the parameter limit": with(func(in *input) {
			in.query = strings.Repeat("a=1&", maxQueryParams-1) + "b=2"
		}),
		"query over the parameter limit (url.ParseQuery yields nothing)": with(func(in *input) {
			in.query = strings.Repeat("a=1&", maxQueryParams) + "b=2"
		}),
		"zero time": with(func(in *input) { in.t = time.Time{} }),
		"keys colliding by case": withHeader(func(h http.Header) {
			h["X-Dup"] = []string{"upper"}
			h["x-dup"] = []string{"lower", "second"}
			h["x-DUP"] = []string{}
		}),
		"invalid UTF-8 keys, both lower-cased to U+FFFD": withHeader(func(h http.Header) {
			h["\x80"] = []string{"a", "b"}
			h["\xd6"] = []string{"c"}
			h["\ufffd"] = []string{"d"}
		}),
		"key colliding with X-Amz-Date": withHeader(func(h http.Header) {
			h["x-amz-date"] = []string{"lower"}
		}),
		"key colliding with X-Amz-Security-Token": withHeader(func(h http.Header) {
			h["x-amz-security-token"] = []string{"lower"}
		}),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if !checkSame(t, &in) {
				t.Fatal("the SDK cannot be given this input; fix the case")
			}
		})
	}
}

// TestSignSetsHeaders pins the output for the Bedrock request, so that a
// change in both the SDK and Sign cannot pass unnoticed, and checks what
// Sign leaves on the request.
func TestSignSetsHeaders(t *testing.T) {
	in := bedrockInput()
	r := &Request{Method: in.method, Host: bedrockHost, Path: modelPath, Header: bedrockHeader(), ContentLength: 1234, PayloadHash: bodyHash}
	if err := Sign(r, sessionCreds, "bedrock", "us-east-1", signTime); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Header.Get("X-Amz-Date"), "20260102T030405Z"; got != want {
		t.Errorf("X-Amz-Date = %q, want %q", got, want)
	}
	if got := r.Header.Get("X-Amz-Security-Token"); got != sessionToken {
		t.Errorf("X-Amz-Security-Token = %q", got)
	}
	const wantPrefix = "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEEXAMPLE01/20260102/us-east-1/bedrock/aws4_request, " +
		"SignedHeaders=accept;content-length;content-type;host;x-amz-date;x-amz-security-token;x-amzn-bedrock-request-metadata, Signature="
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, wantPrefix) || len(auth) != len(wantPrefix)+64 {
		t.Errorf("Authorization = %q", auth)
	}
	// The three slices must not share room: an append to one must not
	// write into another.
	r.Header["X-Amz-Date"] = append(r.Header["X-Amz-Date"], "x")
	if r.Header.Get("X-Amz-Security-Token") != sessionToken || r.Header.Get("Authorization") != auth {
		t.Error("appending to X-Amz-Date changed another header")
	}

	if err := Sign(&Request{}, sessionCreds, "bedrock", "us-east-1", signTime); err == nil {
		t.Error("Sign with a nil Header: no error")
	}
}

// TestSignQueryRewrite checks that RawQuery becomes the signed query, and
// is left alone (the same string) when it already is.
func TestSignQueryRewrite(t *testing.T) {
	r := &Request{Method: "GET", Host: bedrockHost, Path: "/async-invoke", RawQuery: "b=2&a=x+y&c=%zz", Header: http.Header{}, PayloadHash: emptySHA256}
	if err := Sign(r, sessionCreds, "bedrock", "us-east-1", signTime); err != nil {
		t.Fatal(err)
	}
	if want := "a=x%20y&b=2"; r.RawQuery != want {
		t.Errorf("RawQuery = %q, want %q", r.RawQuery, want)
	}
}

func TestSigningHost(t *testing.T) {
	for _, c := range []struct{ scheme, host, want string }{
		{"https", "example.com", "example.com"},
		{"https", "example.com:443", "example.com"},
		{"HTTPS", "example.com:443", "example.com"},
		{"https", "example.com:80", "example.com:80"},
		{"http", "example.com:80", "example.com"},
		{"http", "example.com:443", "example.com:443"},
		{"https", "[::1]:443", "::1"},
		{"https", "[::1]", "[::1]"},
		{"https", "example.com:", "example.com:"},
		{"httpſ", "example.com:443", "example.com:443"}, // ToLower, not EqualFold
	} {
		if got := SigningHost(c.scheme, c.host); got != c.want {
			t.Errorf("SigningHost(%q, %q) = %q, want %q", c.scheme, c.host, got, c.want)
		}
	}
}

// TestKeyCache checks that the cache tells apart every input of the key
// and stays within its bound.
func TestKeyCache(t *testing.T) {
	c := newKeyCache(3)
	st := new(state)
	date := []byte("20260102")
	base := c.get(st, "AKID", "secret", date, "us-east-1", "bedrock")
	for name, k := range map[string][32]byte{
		"secret":  c.get(st, "AKID", "secret2", date, "us-east-1", "bedrock"),
		"key ID":  c.get(st, "AKID2", "secret", date, "us-east-1", "bedrock"),
		"date":    c.get(st, "AKID", "secret", []byte("20260103"), "us-east-1", "bedrock"),
		"region":  c.get(st, "AKID", "secret", date, "us-west-2", "bedrock"),
		"service": c.get(st, "AKID", "secret", date, "us-east-1", "bedrock-runtime"),
	} {
		if k == base && name != "key ID" {
			t.Errorf("a different %s gave the same key", name)
		}
		if n := c.len(); n > 3 {
			t.Fatalf("cache holds %d keys, bound 3", n)
		}
	}
	if got := c.get(st, "AKID", "secret", date, "us-east-1", "bedrock"); got != base {
		t.Error("the same inputs gave another key")
	}
	if got := st.deriveKey("secret", date, "us-east-1", "bedrock"); got != base {
		t.Error("cached key differs from a derived one")
	}
	// The scratch buffer is pooled: it must not keep the secret, nor a
	// pad derived from it.
	long := strings.Repeat("S", 100)
	st.deriveKey(long, date, "us-east-1", "bedrock")
	tmp := st.tmp[:cap(st.tmp)]
	if bytes.Contains(tmp, []byte("SSSS")) || bytes.Contains(tmp, []byte("secret")) {
		t.Error("key derivation left the secret in its scratch buffer")
	}
	if !bytes.Equal(tmp[:blockSize], zeroBlock[:]) {
		t.Error("key derivation left its last pad in its scratch buffer")
	}
}

func TestSignAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items, so allocations vary")
	}
	for name, r := range map[string]*Request{
		"bedrock": {Method: "POST", Host: bedrockHost, Path: modelPath, Header: bedrockHeader(), ContentLength: 1234, PayloadHash: bodyHash},
		"query": {Method: "GET", Host: bedrockHost, Path: "/async-invoke", RawQuery: "maxResults=10&statusEquals=InProgress",
			Header: bedrockHeader(), PayloadHash: emptySHA256},
	} {
		t.Run(name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() {
				// As the gateway hands it over: without the headers Sign sets.
				r.Header.Del("Authorization")
				r.Header.Del("X-Amz-Date")
				r.Header.Del("X-Amz-Security-Token")
				if err := Sign(r, sessionCreds, "bedrock", "us-east-1", signTime); err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("%v allocations per Sign", allocs)
			if allocs > 4 {
				t.Errorf("%v allocations per Sign, want at most 4", allocs)
			}
		})
	}
}

// TestSignConcurrent runs Sign from many goroutines (meant for -race):
// every result must equal the one computed alone.
func TestSignConcurrent(t *testing.T) {
	in := bedrockInput()
	want, _, err := signSDK(&in)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var err error
			for i := range 200 {
				creds := sessionCreds
				if i%2 == 0 {
					creds.AccessKeyID = fmt.Sprintf("AKID%d", g) // cache misses too
				}
				r := &Request{Method: "POST", Host: bedrockHost, Path: modelPath, Header: bedrockHeader(), ContentLength: 1234, PayloadHash: bodyHash}
				if err = Sign(r, creds, "bedrock", "us-east-1", signTime); err != nil {
					break
				}
				if i%2 == 1 && r.Header.Get("Authorization") != want.Header.Get("Authorization") {
					err = fmt.Errorf("goroutine %d: Authorization %q", g, r.Header.Get("Authorization"))
					break
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	benchSign(b, func(r *Request) error {
		return Sign(r, sessionCreds, "bedrock", "us-east-1", signTime)
	})
}

// BenchmarkSignNoKeyCache is Sign deriving the signing key every time, as on
// a cache miss.
func BenchmarkSignNoKeyCache(b *testing.B) {
	benchSign(b, func(r *Request) error {
		return signer{}.sign(r, sessionCreds, "bedrock", "us-east-1", signTime)
	})
}

func benchSign(b *testing.B, sign func(*Request) error) {
	r := &Request{Method: "POST", Host: bedrockHost, Path: modelPath, Header: bedrockHeader(), ContentLength: 1234, PayloadHash: bodyHash}
	b.ReportAllocs()
	for b.Loop() {
		r.Header.Del("Authorization")
		r.Header.Del("X-Amz-Date")
		r.Header.Del("X-Amz-Security-Token")
		if err := sign(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignSDK signs the same request as BenchmarkSign with the SDK
// signer the gateway used, sharing one Signer (and so its key cache) as the
// gateway did.
func BenchmarkSignSDK(b *testing.B) {
	s := v4.NewSigner()
	u, err := url.Parse("https://" + bedrockHost + modelPath)
	if err != nil {
		b.Fatal(err)
	}
	req := &http.Request{Method: "POST", URL: u, Header: bedrockHeader(), ContentLength: 1234}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		req.Header.Del("Authorization")
		req.Header.Del("X-Amz-Date")
		req.Header.Del("X-Amz-Security-Token")
		if err := s.SignHTTP(ctx, sessionCreds, req, bodyHash, "bedrock", "us-east-1", signTime); err != nil {
			b.Fatal(err)
		}
	}
}
