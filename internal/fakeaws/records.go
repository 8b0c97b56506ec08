package fakeaws

import (
	"github.com/bedrock-gateway/gateway/pkg/pricing"

	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// AssumeRoleCall is one AssumeRole request the fake STS received.
type AssumeRoleCall struct {
	Time time.Time
	// CallerARN is the principal whose credentials signed the request; ""
	// if the signature did not verify.
	CallerARN         string
	RoleARN           string
	SessionName       string
	SourceIdentity    string
	Tags              map[string]string
	TransitiveTagKeys []string
	// DurationSeconds is as requested; 0 if the parameter was absent (STS
	// then uses 3600).
	DurationSeconds int32
	// AccessKeyID is the access key issued, "" if the call was refused.
	AccessKeyID string
	// Err is the STS error code returned, "" on success.
	Err string
}

// Invocation is one Bedrock Runtime call that passed signature
// verification, whatever its outcome.
type Invocation struct {
	Time time.Time
	// Operation is the API operation name: "Converse", "ConverseStream",
	// "InvokeModel", "InvokeModelWithResponseStream", "CountTokens",
	// "ApplyGuardrail", "StartAsyncInvoke", "GetAsyncInvoke" or
	// "ListAsyncInvokes"; "" for an unknown path or method.
	Operation string
	// ModelID is the unescaped {modelId} path label, or StartAsyncInvoke's
	// body modelId; "" for the other operations.
	ModelID string
	// Guardrail is "<guardrailIdentifier>:<guardrailVersion>", the
	// unescaped path labels of ApplyGuardrail; "" otherwise.
	Guardrail string
	// InvocationARN is the async invocation StartAsyncInvoke returned (the
	// earlier job's for an idempotent retry) or GetAsyncInvoke asked for.
	InvocationARN string
	// RequestMetadata is the validated request metadata: Converse's
	// requestMetadata member or InvokeModel's
	// X-Amzn-Bedrock-Request-Metadata header; nil if absent or if the
	// call failed validation.
	RequestMetadata map[string]string
	AccessKeyID     string
	// PrincipalARN is who is billed: for session credentials
	// arn:aws:sts::ACCT:assumed-role/ROLE/SESSION, for root credentials
	// the ARN passed to RootCredentials.
	PrincipalARN string
	// SessionName is the RoleSessionName, "" for root credentials.
	SessionName string
	// Tags are the session tags of the signing session.
	Tags map[string]string
	// Token counts; zero for failed calls. InputTokens excludes the
	// tokens read from or written to the prompt cache. CountTokens records
	// its count in InputTokens and is never billed.
	InputTokens, OutputTokens, CacheReadTokens, CacheWriteTokens int64
	// GuardrailTextUnits are the billable guardrail text units of a
	// successful ApplyGuardrail.
	GuardrailTextUnits int64
	// Status is the HTTP status sent. A stream that failed mid-way has
	// Status 200 and StreamError set, and is billed for the output
	// produced before it stopped.
	Status int
	// StreamError is the exception type sent in-stream
	// ("modelStreamErrorException"), "ClientDisconnected" if the client
	// went away mid-stream, "FlushNotSupported" if the ResponseWriter could
	// not flush, or "".
	StreamError string
	RequestID   string
	// RequestURI is the request target as it arrived: escaped path and
	// raw query, with any X-Amz-Signature or X-Amz-Security-Token query
	// value redacted.
	RequestURI string
	// Headers are the request headers as they arrived, with the
	// Authorization signature and X-Amz-Security-Token redacted.
	Headers http.Header
	Body    []byte
}

// BillingRow is one CUR 2.0-like line: the usage of one IAM principal, for
// one usage type, with one set of tags.
type BillingRow struct {
	// IAMPrincipal is line_item_iam_principal.
	IAMPrincipal string
	// UsageType is e.g. "USE1-<modelId>-input-tokens" or
	// "USE1-guardrail-text-units".
	UsageType   string
	UsageAmount int64
	// Tags are the session tags, keys prefixed "iamPrincipal/" as in the
	// CUR 2.0 tags column.
	Tags map[string]string
}

// redacted replaces secrets in recorded headers.
const redacted = "REDACTED"

// AssumeRoleCalls returns every AssumeRole received, in order.
func (s *Server) AssumeRoleCalls() []AssumeRoleCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AssumeRoleCall, len(s.assumeCalls))
	for i, c := range s.assumeCalls {
		c.Tags = maps.Clone(c.Tags)
		c.TransitiveTagKeys = slices.Clone(c.TransitiveTagKeys)
		out[i] = c
	}
	return out
}

// Invocations returns every Bedrock call accepted after signature
// verification, in order.
func (s *Server) Invocations() []Invocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Invocation, len(s.invocations))
	for i, inv := range s.invocations {
		inv.Tags = maps.Clone(inv.Tags)
		inv.RequestMetadata = maps.Clone(inv.RequestMetadata)
		inv.Headers = inv.Headers.Clone()
		inv.Body = slices.Clone(inv.Body)
		out[i] = inv
	}
	return out
}

// billingKey identifies one BillingRow.
type billingKey struct{ principal, usage, tags string }

func (s *Server) recordAssumeRole(c AssumeRoleCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assumeCalls = appendLimited(s.assumeCalls, c, s.opts.RecordLimit)
}

// addInvocation records inv and adds its billable usage to the billing
// rows.
func (s *Server) addInvocation(inv Invocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invocations = appendLimited(s.invocations, inv, s.opts.RecordLimit)
	if inv.Status != http.StatusOK || inv.Operation == opCountTokens {
		return
	}
	var tags map[string]string
	if len(inv.Tags) > 0 {
		tags = make(map[string]string, len(inv.Tags))
		for k, v := range inv.Tags {
			tags["iamPrincipal/"+k] = v
		}
	}
	tagKey := canonicalTags(tags)
	prefix := pricing.RegionCodeOrName(s.opts.Region)
	model := prefix + "-" + inv.ModelID + "-"
	for _, u := range []struct {
		usage string
		n     int64
	}{
		{model + "input-tokens", inv.InputTokens},
		{model + "output-tokens", inv.OutputTokens},
		{model + "cache-read-input-tokens", inv.CacheReadTokens},
		{model + "cache-write-input-tokens", inv.CacheWriteTokens},
		{prefix + "-guardrail-text-units", inv.GuardrailTextUnits},
	} {
		if u.n == 0 {
			continue
		}
		k := billingKey{inv.PrincipalARN, u.usage, tagKey}
		row := s.billing[k]
		if row == nil {
			row = &BillingRow{IAMPrincipal: k.principal, UsageType: k.usage, Tags: maps.Clone(tags)}
			s.billing[k] = row
		}
		row.UsageAmount += u.n
	}
	s.addBillLines(inv, tags, tagKey)
}

// appendLimited appends v to list, dropping the oldest entries beyond
// limit (if positive).
func appendLimited[T any](list []T, v T, limit int) []T {
	list = append(list, v)
	if limit > 0 && len(list) > limit {
		list = slices.Delete(list, 0, len(list)-limit)
	}
	return list
}

// BillingRows aggregates the billable Bedrock calls (successful Converse,
// ConverseStream, InvokeModel, InvokeModelWithResponseStream and
// ApplyGuardrail; not CountTokens, nor the async-invoke operations, whose
// jobs the fake does not run) the way CUR 2.0 does: one row per principal,
// usage type and tag set, sorted by principal, then usage type, then tags.
// Token usage types are "<REGIONCODE>-<modelId>-input-tokens" (uncached
// input), "-output-tokens", "-cache-read-input-tokens" and
// "-cache-write-input-tokens"; ApplyGuardrail bills
// "<REGIONCODE>-guardrail-text-units", the text units of its paid
// policies (the emulated guardrail's content filter; its word filter is
// free, as on AWS). The usage-type names are the fake's: real CUR names
// differ. Zero amounts are omitted.
func (s *Server) BillingRows() []BillingRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(s.billing), func(a, b billingKey) int {
		if c := strings.Compare(a.principal, b.principal); c != 0 {
			return c
		}
		if c := strings.Compare(a.usage, b.usage); c != 0 {
			return c
		}
		return strings.Compare(a.tags, b.tags)
	})
	out := make([]BillingRow, 0, len(keys))
	for _, k := range keys {
		row := *s.billing[k]
		row.Tags = maps.Clone(row.Tags)
		out = append(out, row)
	}
	return out
}

// canonicalTags renders tags as a sortable, unambiguous string.
func canonicalTags(tags map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(tags[k])
		b.WriteByte(0)
	}
	return b.String()
}

// redactHeaders returns a copy of h safe to keep: the Authorization
// signature and the session token are replaced.
func redactHeaders(h http.Header) http.Header {
	out := h.Clone()
	if v := out.Values("Authorization"); len(v) > 0 {
		red := make([]string, len(v))
		for i, a := range v {
			red[i] = redactAuthorization(a)
		}
		out["Authorization"] = red
	}
	if _, ok := out["X-Amz-Security-Token"]; ok {
		out["X-Amz-Security-Token"] = []string{redacted}
	}
	return out
}

// redactRequestURI returns requestURI with the values of SigV4 query
// parameters that carry secrets (a presigned URL's signature and session
// token) replaced. Other request URIs are returned unchanged.
func redactRequestURI(requestURI string) string {
	path, rawQuery, ok := strings.Cut(requestURI, "?")
	if !ok {
		return requestURI
	}
	parts := strings.Split(rawQuery, "&")
	for i, p := range parts {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err == nil && (strings.EqualFold(n, "X-Amz-Signature") || strings.EqualFold(n, "X-Amz-Security-Token")) {
			parts[i] = name + "=" + redacted
		}
	}
	return path + "?" + strings.Join(parts, "&")
}

// redactAuthorization keeps the non-secret parts of a SigV4 Authorization
// header (algorithm, credential scope, signed headers) and drops the rest.
func redactAuthorization(v string) string {
	a, err := parseAuthorization(v)
	if err != nil {
		return redacted
	}
	return algorithm + " Credential=" + a.credential() + ", SignedHeaders=" + strings.Join(a.signedHeaders, ";") + ", Signature=" + redacted
}
