package fakeaws

// SigV4 verification, written from the Signature Version 4 specification
// ("Create a signed AWS API request", AWS IAM User Guide) rather than from
// the SDK signer, so that the fake catches signing bugs the SDK would share
// with itself.

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	algorithm    = "AWS4-HMAC-SHA256"
	amzDateFmt   = "20060102T150405Z"
	scopeDateFmt = "20060102"
	terminator   = "aws4_request"
	// maxSkew is how far X-Amz-Date may be from the server clock: AWS
	// refuses signatures more than 5 minutes old or in the future
	// ("Signature expired: ... (... - 5 min.)").
	maxSkew = 5 * time.Minute
)

// authorization is a parsed SigV4 Authorization header.
type authorization struct {
	accessKeyID   string
	date          string // yyyymmdd
	region        string
	service       string
	signedHeaders []string // lower-case, sorted, unique
	signature     []byte   // 32 bytes
}

// credential renders the Credential= component (no secret in it).
func (a authorization) credential() string {
	return a.accessKeyID + "/" + a.scope()
}

// scope is the credential scope: date/region/service/aws4_request.
func (a authorization) scope() string {
	return a.date + "/" + a.region + "/" + a.service + "/" + terminator
}

// String renders the header in the form the SDKs send.
func (a authorization) String() string {
	return algorithm + " Credential=" + a.credential() + ", SignedHeaders=" + strings.Join(a.signedHeaders, ";") + ", Signature=" + hex.EncodeToString(a.signature)
}

// errMalformedAuth is wrapped by every parseAuthorization error. The
// messages name the faulty component but never repeat its value: the
// header carries a signature.
var errMalformedAuth = errors.New("malformed authorization header")

// parseAuthorization parses
//
//	AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/service/aws4_request, SignedHeaders=h1;h2, Signature=hex
//
// Components may be separated by "," with optional spaces, in any order,
// each exactly once.
func parseAuthorization(v string) (authorization, error) {
	var a authorization
	rest, ok := strings.CutPrefix(v, algorithm)
	if !ok {
		return a, fmt.Errorf("unsupported algorithm, want %s: %w", algorithm, errMalformedAuth)
	}
	if rest == "" || rest[0] != ' ' {
		return a, fmt.Errorf("missing components: %w", errMalformedAuth)
	}
	var haveCred, haveSH, haveSig bool
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.Trim(part, " ")
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return a, fmt.Errorf("component without '=': %w", errMalformedAuth)
		}
		switch name {
		case "Credential":
			if haveCred {
				return a, fmt.Errorf("duplicate Credential: %w", errMalformedAuth)
			}
			haveCred = true
			f := strings.Split(val, "/")
			if len(f) != 5 {
				return a, fmt.Errorf("credential must have 5 slash-separated parts, has %d: %w", len(f), errMalformedAuth)
			}
			a.accessKeyID, a.date, a.region, a.service = f[0], f[1], f[2], f[3]
			if !isAccessKeyID(a.accessKeyID) {
				return a, fmt.Errorf("invalid access key ID in credential: %w", errMalformedAuth)
			}
			if len(a.date) != 8 || !isDigits(a.date) {
				return a, fmt.Errorf("credential date must be yyyymmdd: %w", errMalformedAuth)
			}
			if _, err := time.Parse(scopeDateFmt, a.date); err != nil {
				return a, fmt.Errorf("credential date must be yyyymmdd: %w", errMalformedAuth)
			}
			if !isScopeToken(a.region) || !isScopeToken(a.service) {
				return a, fmt.Errorf("credential region and service must be non-empty [a-z0-9-]: %w", errMalformedAuth)
			}
			if f[4] != terminator {
				return a, fmt.Errorf("credential must end in %s: %w", terminator, errMalformedAuth)
			}
		case "SignedHeaders":
			if haveSH {
				return a, fmt.Errorf("duplicate SignedHeaders: %w", errMalformedAuth)
			}
			haveSH = true
			a.signedHeaders = strings.Split(val, ";")
			for i, h := range a.signedHeaders {
				if !isLowerToken(h) {
					return a, fmt.Errorf("signed header %d is not a lower-case header name: %w", i, errMalformedAuth)
				}
				if i > 0 && a.signedHeaders[i-1] >= h {
					return a, fmt.Errorf("signed headers must be sorted and unique: %w", errMalformedAuth)
				}
			}
		case "Signature":
			if haveSig {
				return a, fmt.Errorf("duplicate Signature: %w", errMalformedAuth)
			}
			haveSig = true
			if len(val) != 64 || strings.ToLower(val) != val {
				return a, fmt.Errorf("signature must be 64 lower-case hex digits: %w", errMalformedAuth)
			}
			sig, err := hex.DecodeString(val)
			if err != nil {
				return a, fmt.Errorf("signature must be 64 lower-case hex digits: %w", errMalformedAuth)
			}
			a.signature = sig
		default:
			return a, fmt.Errorf("unknown component: %w", errMalformedAuth)
		}
	}
	switch {
	case !haveCred:
		return a, fmt.Errorf("missing Credential: %w", errMalformedAuth)
	case !haveSH:
		return a, fmt.Errorf("missing SignedHeaders: %w", errMalformedAuth)
	case !haveSig:
		return a, fmt.Errorf("missing Signature: %w", errMalformedAuth)
	}
	return a, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isAccessKeyID: AccessKeyId is 16-128 characters of [\w] (STS API
// reference, Credentials).
func isAccessKeyID(s string) bool {
	if len(s) < 16 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isLowerToken reports whether s is a non-empty HTTP header name (RFC 9110
// token) without upper-case letters.
func isLowerToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// authErrKind classifies why a request was not authenticated; each service
// maps it to its own error code.
type authErrKind int

const (
	authMissing    authErrKind = iota // no Authorization header
	authBearer                        // Authorization: Bearer (API key)
	authIncomplete                    // malformed header or required parts not signed
	authUnknownKey                    // access key or session token not recognised
	authExpired                       // credentials expired
	authSignature                     // scope, date or signature wrong
)

// authError is a refused authentication. msg is safe to send to the
// client: it never contains a key, token or signature.
type authError struct {
	kind authErrKind
	msg  string
}

func (e *authError) Error() string { return e.msg }

const (
	msgInvalidToken = "The security token included in the request is invalid."
	msgExpiredToken = "The security token included in the request is expired"
	msgSigMismatch  = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

// authenticate verifies the SigV4 signature of r, whose body has already
// been read into body, for service, and returns the signing credential.
func (s *Server) authenticate(r *http.Request, body []byte, service string) (*credential, *authError) {
	authz := r.Header.Values("Authorization")
	if len(authz) == 0 {
		return nil, &authError{authMissing, "Missing Authentication Token"}
	}
	if len(authz) > 1 {
		return nil, &authError{authIncomplete, "Only one Authorization header may be sent."}
	}
	if scheme, _, _ := strings.Cut(authz[0], " "); strings.EqualFold(scheme, "Bearer") {
		return nil, &authError{authBearer, "Bearer tokens (Bedrock API keys) are not accepted here; sign the request with SigV4 using session credentials."}
	}
	a, err := parseAuthorization(authz[0])
	if err != nil {
		return nil, &authError{authIncomplete, "Authorization header is malformed: " + err.Error()}
	}

	c := s.lookup(a.accessKeyID)
	if c == nil {
		return nil, &authError{authUnknownKey, msgInvalidToken}
	}
	tokens := r.Header.Values("X-Amz-Security-Token")
	switch {
	case c.sessionToken == "" && len(tokens) > 0,
		c.sessionToken != "" && len(tokens) != 1,
		c.sessionToken != "" && subtle.ConstantTimeCompare([]byte(tokens[0]), []byte(c.sessionToken)) != 1:
		return nil, &authError{authUnknownKey, msgInvalidToken}
	}
	now := s.opts.Now()
	if !c.expires.IsZero() && !now.Before(c.expires) {
		return nil, &authError{authExpired, msgExpiredToken}
	}

	if a.service != service {
		return nil, &authError{authSignature, fmt.Sprintf("Credential should be scoped to correct service: '%s'. ", service)}
	}
	if a.region != s.opts.Region {
		return nil, &authError{authSignature, "Credential should be scoped to a valid region. "}
	}
	for _, h := range []string{"host", "x-amz-date"} {
		if _, found := slices.BinarySearch(a.signedHeaders, h); !found {
			return nil, &authError{authIncomplete, fmt.Sprintf("'%s' must be a 'SignedHeader' in the AWS Authorization.", h)}
		}
	}
	if c.sessionToken != "" {
		if _, found := slices.BinarySearch(a.signedHeaders, "x-amz-security-token"); !found {
			return nil, &authError{authIncomplete, "'x-amz-security-token' must be a 'SignedHeader' in the AWS Authorization."}
		}
	}

	dates := r.Header.Values("X-Amz-Date")
	if len(dates) != 1 {
		return nil, &authError{authIncomplete, "Exactly one X-Amz-Date header is required."}
	}
	t, err := time.Parse(amzDateFmt, dates[0])
	if err != nil {
		return nil, &authError{authIncomplete, "X-Amz-Date must be in ISO 8601 basic format, e.g. 20150830T123600Z."}
	}
	if dates[0][:8] != a.date {
		return nil, &authError{authSignature, fmt.Sprintf("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", a.date, dates[0][:8], dates[0])}
	}
	nowUTC := now.UTC()
	if t.Before(nowUTC.Add(-maxSkew)) {
		return nil, &authError{authSignature, fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 5 min.)", dates[0], nowUTC.Add(-maxSkew).Format(amzDateFmt), nowUTC.Format(amzDateFmt))}
	}
	if t.After(nowUTC.Add(maxSkew)) {
		return nil, &authError{authSignature, fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + 5 min.)", dates[0], nowUTC.Add(maxSkew).Format(amzDateFmt), nowUTC.Format(amzDateFmt))}
	}

	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if h := r.Header.Values("X-Amz-Content-Sha256"); len(h) > 0 && (len(h) != 1 || h[0] != payloadHash) {
		// Also refuses UNSIGNED-PAYLOAD: the gateway must sign the body.
		return nil, &authError{authSignature, "The provided 'x-amz-content-sha256' header does not match what was computed."}
	}

	canonical, err := canonicalRequest(r, a.signedHeaders, payloadHash)
	if err != nil {
		return nil, &authError{authSignature, msgSigMismatch}
	}
	want := signature(c.secret, a, dates[0], canonical)
	if !hmac.Equal(want, a.signature) {
		return nil, &authError{authSignature, msgSigMismatch}
	}
	return c, nil
}

// canonicalRequest builds the SigV4 canonical request:
//
//	method \n canonical URI \n canonical query \n canonical headers \n signed headers \n payload hash
func canonicalRequest(r *http.Request, signedHeaders []string, payloadHash string) (string, error) {
	query, err := canonicalQuery(r.URL.RawQuery)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(r.URL))
	b.WriteByte('\n')
	b.WriteString(query)
	b.WriteByte('\n')
	for _, h := range signedHeaders {
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(canonicalHeaderValue(r, h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signedHeaders, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String(), nil
}

// canonicalURI is the path as it arrived on the wire, URI-encoded once
// more: for every AWS service but S3 the canonical URI encodes each path
// segment twice (aws-wire-facts §1.4), so
// /model/x-v1%3A0/invoke becomes /model/x-v1%253A0/invoke.
func canonicalURI(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	return uriEncode(p, false)
}

// canonicalQuery sorts the query parameters by name, then value, and
// URI-encodes both.
func canonicalQuery(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return "", err
	}
	type kv struct{ k, v string }
	var pairs []kv
	for k, vs := range vals {
		for _, v := range vs {
			pairs = append(pairs, kv{uriEncode(k, true), uriEncode(v, true)})
		}
	}
	slices.SortFunc(pairs, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&"), nil
}

// canonicalHeaderValue returns the values of header h, each trimmed with
// inner runs of spaces collapsed, joined with ",". host comes from r.Host
// and content-length from r.ContentLength when the server consumed the
// header.
func canonicalHeaderValue(r *http.Request, h string) string {
	var vals []string
	switch h {
	case "host":
		vals = []string{r.Host}
	default:
		vals = r.Header.Values(h)
		if len(vals) == 0 && h == "content-length" && r.ContentLength >= 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.TrimSpace(collapseSpaces(v))
	}
	return strings.Join(out, ",")
}

// collapseSpaces replaces each run of spaces in s with one space.
func collapseSpaces(s string) string {
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	prevSpace := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' && prevSpace {
			continue
		}
		prevSpace = c == ' '
		b.WriteByte(c)
	}
	return b.String()
}

// uriEncode percent-encodes every byte of s except the unreserved
// characters A-Z a-z 0-9 - . _ ~ and, unless encodeSlash, '/', using
// upper-case hex (SigV4 UriEncode).
func uriEncode(s string, encodeSlash bool) string {
	const hexUpper = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexUpper[c>>4])
		b.WriteByte(hexUpper[c&0x0f])
	}
	return b.String()
}

// signature computes the SigV4 signature of canonical under a's scope.
func signature(secret string, a authorization, amzDate, canonical string) []byte {
	sum := sha256.Sum256([]byte(canonical))
	stringToSign := algorithm + "\n" + amzDate + "\n" + a.scope() + "\n" + hex.EncodeToString(sum[:])
	k := hmacSHA256([]byte("AWS4"+secret), a.date)
	k = hmacSHA256(k, a.region)
	k = hmacSHA256(k, a.service)
	k = hmacSHA256(k, terminator)
	return hmacSHA256(k, stringToSign)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
