// Package sigv4 signs HTTP requests with AWS Signature Version 4 (header
// signing, AWS4-HMAC-SHA256), producing byte for byte the Authorization,
// X-Amz-Date and X-Amz-Security-Token that aws-sdk-go-v2's
// v4.Signer.SignHTTP produces with default options for a non-S3 service.
//
// It exists because the gateway re-signs every Bedrock Runtime request with
// the caller's own session, and the SDK signer costs about fifty heap
// allocations a request (url.Values, a header map, strings.Join, hmac.New,
// hex strings...). Sign builds the canonical request and the string to sign
// in pooled buffers, hashes them with crypto/sha256.Sum256, computes the HMAC
// by hand on a stack pad, and allocates only what it leaves on the request:
// one string holding both the X-Amz-Date and the Authorization value, and
// one array backing the three header value slices.
//
// Agreement with the SDK is the contract, not the specification: where the
// SDK departs from a literal reading of the SigV4 documentation (it escapes
// the already escaped path a second time, matches IgnoredHeaders against the
// header map's keys case-sensitively, signs content-length from
// ContentLength rather than from the header, trims header values twice with
// different notions of space), Sign does the same, and the differential and
// fuzz tests hold it to that. The one place the SDK is not deterministic is
// documented on Sign.
package sigv4

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

const (
	algorithm = "AWS4-HMAC-SHA256"

	// amzDateLayout is the X-Amz-Date format (v4Internal.TimeFormat).
	amzDateLayout = "20060102T150405Z"

	// maxQueryParams mirrors net/url's default cap on the number of query
	// parameters (Go 1.26, GODEBUG urlmaxqueryparams unset): beyond it
	// url.ParseQuery, and so the SDK's URL.Query(), yields no parameters
	// at all. A process that changes the cap with GODEBUG would see the SDK
	// follow it and Sign not; the gateway does not.
	maxQueryParams = 10000

	// maxPooledBuf keeps one huge request from pinning a huge buffer in
	// the pool for the life of the process.
	maxPooledBuf = 64 << 10
)

// Request is what a signature covers. Sign needs no *http.Request, so that
// the caller can sign without building one and without the SDK's side
// effects on it.
type Request struct {
	// Method is signed verbatim (the SDK does not default "" to GET).
	Method string

	// Host is the value signed as the host header, verbatim. The SDK signs
	// http.Request.Host, or URL.Host when that is empty, after dropping a
	// default port (":443" for https, ":80" for http) and writing the result
	// back to http.Request.Host; SigningHost does that part, and the
	// request must then be sent with that Host.
	Host string

	// Path is the request's escaped path as sent on the wire,
	// URL.EscapedPath() (e.g.
	// "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse").
	// Empty signs as "/". Like the SDK without DisableURIPathEscaping,
	// Sign escapes it once more for the canonical request, so "%3A" is
	// signed as "%253A": that is what non-S3 services expect.
	Path string

	// RawQuery is the wire query, "" if none. Sign replaces it with the
	// canonical query it signed, as the SDK replaces URL.RawQuery: pairs
	// url.ParseQuery rejects (bad escapes, ';') are dropped, the rest
	// re-encoded and sorted. The request must be sent with the new value,
	// or the service computes a different canonical query from what it
	// receives. For a query that is already canonical (the usual case)
	// the string is left as it is and nothing is allocated.
	RawQuery string

	// Header is signed in place. Authorization and X-Amz-Date are set on
	// it, and X-Amz-Security-Token when the credentials carry a session
	// token; every other key is signed except the SDK's IgnoredHeaders
	// (Authorization, User-Agent, X-Amzn-Trace-Id, Expect,
	// Transfer-Encoding, matched exactly as map keys, so a non-canonical
	// "user-agent" key is signed, as by the SDK), any key equal to
	// Content-Length ignoring case, and keys that lower-case to "host".
	Header http.Header

	// ContentLength, when > 0, is signed as content-length, as the SDK
	// signs http.Request.ContentLength; a Content-Length header is never
	// signed.
	ContentLength int64

	// PayloadHash is the lowercase hex SHA-256 of the body (for an empty
	// body, of the empty string). It is signed verbatim.
	PayloadHash string
}

var errNoHeader = errors.New("sigv4: Request.Header is nil")

// Sign signs r in place for service in region at time t with creds: it
// sets X-Amz-Date (t in UTC), X-Amz-Security-Token (creds.SessionToken, if
// not empty) and Authorization on r.Header, and replaces r.RawQuery with
// the canonical query (see Request). The values are exactly those of
// aws-sdk-go-v2 v4.Signer{}.SignHTTP(ctx, creds, req, r.PayloadHash,
// service, region, t) for a req with the same method, host, escaped path,
// query, header and content length, with two documented differences in
// side effects, not in signatures:
//
//   - The SDK writes the three headers with append(h[k][:0], v), reusing
//     (and so overwriting) the backing array of a value slice already
//     there; Sign gives them fresh slices and leaves old arrays alone.
//   - When two header keys lower-case alike ("X-Foo" and "x-foo", or two
//     invalid UTF-8 keys, which strings.ToLower both turns into U+FFFD),
//     the SDK signs their values joined in map iteration order, which is
//     random, so its signature varies from call to call. Sign joins them
//     in the byte order of the keys, one of the SDK's possible outcomes,
//     always the same.
//
// Derived signing keys are cached, as the SDK caches them, but keyed by
// access key ID, secret, date, region and service together (the SDK's
// cache checks only the key ID and the day) and bounded in size.
//
// Sign is safe for concurrent use on different Requests. It reports an
// error only for a nil Header.
func Sign(r *Request, creds aws.Credentials, service, region string, t time.Time) error {
	return defaultSigner.sign(r, creds, service, region, t)
}

// SigningHost returns the host the SDK signs for a request whose scheme is
// scheme and whose host (http.Request.Host, or URL.Host when that is empty)
// is host: host itself, unless its port is the scheme's default, which the
// SDK drops (v4Internal.SanitizeHostForHeader). The SDK then sends the
// request with the result as its Host, and so must a caller of Sign. Like
// the SDK, it also drops the brackets of an IPv6 literal when it drops the
// port ("[::1]:443" gives "::1").
func SigningHost(scheme, host string) string {
	port := portOnly(host)
	if port == "" {
		return host
	}
	if (asciiEqualLower(scheme, "http") && port == "80") || (asciiEqualLower(scheme, "https") && port == "443") {
		return stripPort(host)
	}
	return host
}

// portOnly is the SDK's (Go 1.8 url.URL.Port, on a bare host:port).
func portOnly(hostport string) string {
	colon := strings.IndexByte(hostport, ':')
	if colon == -1 {
		return ""
	}
	if i := strings.Index(hostport, "]:"); i != -1 {
		return hostport[i+len("]:"):]
	}
	if strings.Contains(hostport, "]") {
		return ""
	}
	return hostport[colon+len(":"):]
}

// stripPort is the SDK's (Go 1.8 url.URL.Hostname, on a bare host:port).
func stripPort(hostport string) string {
	colon := strings.IndexByte(hostport, ':')
	if colon == -1 {
		return hostport
	}
	if i := strings.IndexByte(hostport, ']'); i != -1 {
		return strings.TrimPrefix(hostport[:i], "[")
	}
	return hostport[:colon]
}

// signer is Sign's machinery; keys is nil to derive the signing key on every
// call (tests and benchmarks compare the two).
type signer struct {
	keys *keyCache
}

var defaultSigner = signer{keys: newKeyCache(maxCachedKeys)}

// Kinds of header entry: a header from the map, or one whose value Sign
// supplies rather than reads from r.Header.
const (
	kindHeader uint8 = iota
	kindHost
	kindContentLength
	kindDate
	kindToken
)

// entry is one signed header key. name is the key as it appears in the
// map when it is ASCII, compared and written lower-cased byte by byte
// without building the lower-case string; a non-ASCII key is lower-cased
// with strings.ToLower up front, as the SDK does (it can change the length
// and even the ASCII letters, "\u212a" becomes "k").
type entry struct {
	name string
	key  string // the map key, to order merged entries (names can be equal)
	vals []string
	kind uint8
}

// qparam is one query pair, re-encoded in state.qbuf: key qbuf[k:m], value
// qbuf[m:e].
type qparam struct{ k, m, e int }

// state is the per-call scratch, pooled so that a steady stream of requests
// allocates none of it.
type state struct {
	buf  []byte // the canonical request
	sts  []byte // blockSize bytes of HMAC pad, then the string to sign
	tmp  []byte // key derivation scratch
	hdrs []entry
	qs   []qparam
	qbuf []byte
}

var statePool = sync.Pool{New: func() any { return new(state) }}

func (st *state) release() {
	clear(st.hdrs) // drop references to the caller's header values
	st.hdrs = st.hdrs[:0]
	if cap(st.buf) > maxPooledBuf || cap(st.sts) > maxPooledBuf || cap(st.qbuf) > maxPooledBuf || cap(st.tmp) > maxPooledBuf || cap(st.hdrs) > 1024 || cap(st.qs) > 1024 {
		return
	}
	statePool.Put(st)
}

func (s signer) sign(r *Request, creds aws.Credentials, service, region string, t time.Time) error {
	if r.Header == nil {
		return errNoHeader
	}
	st := statePool.Get().(*state)
	s.signWith(st, r, creds, service, region, t)
	st.release()
	return nil
}

// signWith is sign with the scratch state given, in which it leaves the
// canonical request (st.buf) and the string to sign (st.sts[blockSize:]).
func (s signer) signWith(st *state, r *Request, creds aws.Credentials, service, region string, t time.Time) {
	var dateArr [32]byte
	date := appendAmzDate(dateArr[:0], t)
	shortDate := date[:len(date)-len("T150405Z")]
	token := creds.SessionToken

	// Collect the signed headers. The SDK first sets X-Amz-Date (and
	// X-Amz-Security-Token) on the map, replacing whatever was under those
	// exact keys, then ranges over the map; here those two are entries of
	// their own and the map keys they replace are skipped.
	for k, v := range r.Header {
		switch k {
		case "Authorization", "User-Agent", "X-Amzn-Trace-Id", "Expect", "Transfer-Encoding":
			continue // v4Internal.IgnoredHeaders: an exact map lookup
		case "X-Amz-Date":
			continue
		case "X-Amz-Security-Token":
			if token != "" {
				continue
			}
		}
		if strings.EqualFold(k, "content-length") {
			continue // signed from ContentLength, if at all
		}
		name := k
		if !isASCII(k) {
			name = strings.ToLower(k)
		}
		if lowerEqual(name, "host") {
			// The SDK merges these values into its host entry and then
			// writes only the request's host.
			continue
		}
		st.hdrs = append(st.hdrs, entry{name: name, key: k, vals: v})
	}
	st.hdrs = append(st.hdrs, entry{name: "host", key: "host", kind: kindHost})
	if r.ContentLength > 0 {
		st.hdrs = append(st.hdrs, entry{name: "content-length", key: "content-length", kind: kindContentLength})
	}
	st.hdrs = append(st.hdrs, entry{name: "X-Amz-Date", key: "X-Amz-Date", kind: kindDate})
	if token != "" {
		st.hdrs = append(st.hdrs, entry{name: "X-Amz-Security-Token", key: "X-Amz-Security-Token", kind: kindToken})
	}
	slices.SortFunc(st.hdrs, compareEntries)

	// The canonical request.
	b := st.buf[:0]
	b = append(b, r.Method...)
	b = append(b, '\n')
	b = appendEscapedPath(b, r.Path)
	b = append(b, '\n')
	qStart := len(b)
	b = st.appendCanonicalQuery(b, r.RawQuery)
	if q := b[qStart:]; string(q) != r.RawQuery {
		r.RawQuery = string(q)
	}
	b = append(b, '\n')
	for i := 0; i < len(st.hdrs); {
		j := i + 1
		for j < len(st.hdrs) && compareLower(st.hdrs[i].name, st.hdrs[j].name) == 0 {
			j++
		}
		b = appendLower(b, st.hdrs[i].name)
		b = append(b, ':')
		first := true
		for _, e := range st.hdrs[i:j] {
			b = e.appendValues(b, &first, r, date, token)
		}
		b = append(b, '\n')
		i = j
	}
	b = append(b, '\n')
	shStart := len(b)
	for i := range st.hdrs {
		if i > 0 {
			if compareLower(st.hdrs[i-1].name, st.hdrs[i].name) == 0 {
				continue
			}
			b = append(b, ';')
		}
		b = appendLower(b, st.hdrs[i].name)
	}
	shEnd := len(b)
	b = append(b, '\n')
	b = append(b, r.PayloadHash...)
	st.buf = b
	crHash := sha256Sum(b)

	// The string to sign, after room for the HMAC pad.
	sts := append(st.sts[:0], zeroBlock[:]...)
	sts = append(sts, algorithm+"\n"...)
	sts = append(sts, date...)
	sts = append(sts, '\n')
	scStart := len(sts)
	sts = append(sts, shortDate...)
	sts = append(sts, '/')
	sts = append(sts, region...)
	sts = append(sts, '/')
	sts = append(sts, service...)
	sts = append(sts, "/aws4_request"...)
	scEnd := len(sts)
	sts = append(sts, '\n')
	sts = hex.AppendEncode(sts, crHash[:])
	st.sts = sts

	var key [32]byte
	if s.keys != nil {
		key = s.keys.get(st, creds.AccessKeyID, creds.SecretAccessKey, shortDate, region, service)
	} else {
		key = st.deriveKey(creds.SecretAccessKey, shortDate, region, service)
	}
	sig := hmacPadded(key[:], sts)
	var sigHex [2 * 32]byte
	hex.Encode(sigHex[:], sig[:])

	// One allocation for both strings Sign leaves on the request: the date,
	// then the Authorization value.
	const (
		credential    = " Credential="
		signedHeaders = ", SignedHeaders="
		signature     = ", Signature="
	)
	var sb strings.Builder
	sb.Grow(len(date) + len(algorithm) + len(credential) + len(creds.AccessKeyID) + 1 + (scEnd - scStart) +
		len(signedHeaders) + (shEnd - shStart) + len(signature) + len(sigHex))
	sb.Write(date)
	sb.WriteString(algorithm)
	sb.WriteString(credential)
	sb.WriteString(creds.AccessKeyID)
	sb.WriteByte('/')
	sb.Write(sts[scStart:scEnd])
	sb.WriteString(signedHeaders)
	sb.Write(b[shStart:shEnd])
	sb.WriteString(signature)
	sb.Write(sigHex[:])
	out := sb.String()

	// One array behind the three value slices, each capped at length 1 so
	// that an append to one cannot write into the next.
	vals := new([3]string)
	vals[0] = out[:len(date)]
	r.Header["X-Amz-Date"] = vals[0:1:1]
	if token != "" {
		vals[1] = token
		r.Header["X-Amz-Security-Token"] = vals[1:2:2]
	}
	vals[2] = out[len(date):]
	r.Header["Authorization"] = vals[2:3:3]
}

// appendValues writes e's values to the canonical header line, each after a
// comma unless it is the line's first.
func (e *entry) appendValues(b []byte, first *bool, r *Request, date []byte, token string) []byte {
	switch e.kind {
	case kindHost:
		// The SDK applies only StripExcessSpaces to the host, not the
		// strings.TrimSpace it applies to every other value.
		b = appendComma(b, first)
		b = appendCollapsed(b, trimSpaces(r.Host))
	case kindContentLength:
		b = appendComma(b, first)
		b = strconv.AppendInt(b, r.ContentLength, 10)
	case kindDate:
		b = appendComma(b, first)
		b = append(b, date...)
	case kindToken:
		b = appendComma(b, first)
		b = appendCollapsed(b, strings.TrimSpace(token))
	default:
		for _, v := range e.vals {
			b = appendComma(b, first)
			b = appendCollapsed(b, strings.TrimSpace(v))
		}
	}
	return b
}

func appendComma(b []byte, first *bool) []byte {
	if !*first {
		b = append(b, ',')
	}
	*first = false
	return b
}

// appendCollapsed appends v with each run of spaces (0x20 only) reduced to
// one. The SDK cleans a header value with
// strings.TrimSpace(StripExcessSpaces(v)): StripExcessSpaces trims spaces
// from both ends and collapses runs, TrimSpace then trims Unicode white
// space. Collapsing cannot change what sits at either end, so
// appendCollapsed(TrimSpace(v)) is the same string, built without one.
func appendCollapsed(b []byte, v string) []byte {
	for {
		i := strings.Index(v, "  ")
		if i < 0 {
			return append(b, v...)
		}
		b = append(b, v[:i+1]...)
		v = v[i+2:]
		for len(v) > 0 && v[0] == ' ' {
			v = v[1:]
		}
	}
}

// trimSpaces trims spaces (0x20 only) from both ends of s.
func trimSpaces(s string) string {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

// appendEscapedPath appends the canonical URI: path ("/" if empty) escaped
// as smithy-go's httpbinding.EscapePath(path, false) does, which is what
// the SDK applies to URL.EscapedPath(): every byte but A-Z a-z 0-9 - . _ ~
// and / becomes %XX, so the escapes already in path are escaped again.
func appendEscapedPath(b []byte, path string) []byte {
	if path == "" {
		return append(b, '/')
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if unreserved[c] || c == '/' {
			b = append(b, c)
		} else {
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return b
}

// appendCanonicalQuery appends the canonical query for raw, as the SDK
// builds it: url.ParseQuery(raw) (ignoring its error, so dropping the pairs
// it rejects), each name and value encoded as url.QueryEscape does with "+"
// then replaced by "%20", and the pairs sorted by encoded name, then
// encoded value.
func (st *state) appendCanonicalQuery(b []byte, raw string) []byte {
	if raw == "" || strings.Count(raw, "&")+1 > maxQueryParams {
		return b
	}
	qb := st.qbuf[:0]
	qs := st.qs[:0]
	for q := raw; q != ""; {
		var part string
		part, q, _ = strings.Cut(q, "&")
		if part == "" || strings.IndexByte(part, ';') >= 0 {
			continue // url.ParseQuery skips empties and refuses ';'
		}
		k, v, _ := strings.Cut(part, "=")
		if !validEscapes(k) || !validEscapes(v) {
			continue // a bad %-escape drops the pair
		}
		p := qparam{k: len(qb)}
		qb = appendRecoded(qb, k)
		p.m = len(qb)
		qb = appendRecoded(qb, v)
		p.e = len(qb)
		qs = append(qs, p)
	}
	st.qbuf, st.qs = qb, qs
	slices.SortFunc(qs, func(x, y qparam) int {
		if c := bytes.Compare(qb[x.k:x.m], qb[y.k:y.m]); c != 0 {
			return c
		}
		return bytes.Compare(qb[x.m:x.e], qb[y.m:y.e])
	})
	for i, p := range qs {
		if i > 0 {
			b = append(b, '&')
		}
		b = append(b, qb[p.k:p.m]...)
		b = append(b, '=')
		b = append(b, qb[p.m:p.e]...)
	}
	return b
}

// validEscapes reports whether url.QueryUnescape accepts s: every '%' is
// followed by two hex digits.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// appendRecoded appends url.QueryUnescape(s) (s has valid escapes) encoded
// for the canonical query: unreserved bytes as they are, every other byte,
// space included, as %XX.
func appendRecoded(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '%':
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		case '+':
			c = ' '
		}
		if unreserved[c] {
			b = append(b, c)
		} else {
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return b
}

// appendAmzDate appends t in UTC in the X-Amz-Date format, by hand for the
// four-digit years time.Format would render the same way.
func appendAmzDate(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, amzDateLayout)
	}
	h, mi, s := t.Clock()
	b = append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10))
	b = append2(b, int(mo))
	b = append2(b, d)
	b = append(b, 'T')
	b = append2(b, h)
	b = append2(b, mi)
	b = append2(b, s)
	return append(b, 'Z')
}

func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }

const upperHex = "0123456789ABCDEF"

// unreserved is the set of bytes neither the canonical URI nor the
// canonical query escapes: A-Z a-z 0-9 - . _ ~.
var unreserved = func() (u [256]bool) {
	for c := range 256 {
		u[c] = 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~'
	}
	return u
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// compareLower compares a and b as their ASCII lower-casings, which for an
// entry name is the SDK's strings.ToLower (see entry).
func compareLower(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := lowerByte(a[i]), lowerByte(b[i])
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

// lowerEqual reports whether s lower-cases (ASCII) to lower.
func lowerEqual(s, lower string) bool {
	return len(s) == len(lower) && compareLower(s, lower) == 0
}

// asciiEqualLower is lowerEqual for a value that may hold non-ASCII bytes,
// which never equal an ASCII lower: that is strings.ToLower(s) == lower
// whenever lower has no 'i' or 'k' (the ASCII letters a non-ASCII rune can
// lower-case to), as for "http" and "https".
func asciiEqualLower(s, lower string) bool { return lowerEqual(s, lower) }

func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		b = append(b, lowerByte(s[i]))
	}
	return b
}

// compareEntries orders entries by lower-cased name, as the SDK sorts its
// list of names; entries whose names lower-case alike are then merged into
// one line, their values in the byte order of the map keys. Keys are
// unique, so the order is total and the result does not depend on map
// iteration order. (A synthetic entry's key is a key it replaces or, for
// host and content-length, one no other entry can have: keys lowering to
// those are skipped.)
func compareEntries(x, y entry) int {
	if c := compareLower(x.name, y.name); c != 0 {
		return c
	}
	return strings.Compare(x.key, y.key)
}
