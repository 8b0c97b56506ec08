package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/bedrock-gateway/gateway/internal/jsonscan"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// stampKind says where an operation carries request metadata, the
// key-value pairs Bedrock writes into its model invocation logs.
type stampKind int

const (
	stampNone         stampKind = iota
	stampConverseBody           // Converse/ConverseStream body field requestMetadata
	stampInvokeHeader           // InvokeModel* header X-Amzn-Bedrock-Request-Metadata
)

// Request-metadata keys the gateway writes. The whole gateway: namespace
// is the gateway's: every caller key in it is removed (isGatewayKey), so
// invocation logs cannot be forged.
const (
	MetadataUser       = "gateway:user"
	MetadataSession    = "gateway:session"
	MetadataTeam       = "gateway:team"
	MetadataTenant     = "gateway:tenant"
	MetadataCostCenter = "gateway:cost-center"
)

const requestMetadataHeader = "X-Amzn-Bedrock-Request-Metadata"

// Limits on requestMetadata (Bedrock Runtime service model,
// RequestMetadata): at most 16 entries; keys 1-256 and values 0-256
// characters of [a-zA-Z0-9\s:_@$#=/+,-.]; the header form at most 8500
// characters.
const (
	maxMetadataEntries   = 16
	maxMetadataHeaderLen = 8500
)

// validMetadataValue reports whether v fits RequestMetadata's value syntax:
// 0-256 characters of [a-zA-Z0-9\s:_@$#=/+,\-.]. (A regexp with {0,256}
// compiles to 256 copies of the class; this is a loop.)
func validMetadataValue(v string) bool {
	if len(v) > 256 {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(" \t\n\r\f\v:_@$#=/+,-.", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// identityMetadata is what the gateway stamps for a caller. The session
// name always fits the syntax; other values are stamped only if they fit
// (a team name in another script is on the bill as a tag, not here).
func identityMetadata(id *auth.Identity, spec *tenancy.SessionSpec) map[string]string {
	md := make(map[string]string, 5)
	md[MetadataSession] = spec.SessionName
	for _, kv := range [...]struct{ k, v string }{{MetadataUser, id.User}, {MetadataTeam, id.Team}, {MetadataTenant, id.Tenant}, {MetadataCostCenter, id.CostCenter}} {
		if kv.v != "" && validMetadataValue(kv.v) {
			md[kv.k] = kv.v
		}
	}
	return md
}

// isGatewayKey reports whether a request-metadata key is in the gateway's
// namespace: it starts with "gateway:" in any case, after any leading
// whitespace (which RequestMetadata keys may contain, and which a log
// reader might trim).
func isGatewayKey(k string) bool {
	k = strings.TrimLeft(k, " \t\n\r\f\v")
	return len(k) >= len(gatewayPrefix) && strings.EqualFold(k[:len(gatewayPrefix)], gatewayPrefix)
}

// gatewayPrefix starts every request-metadata key the gateway writes.
const gatewayPrefix = "gateway:"

// mergeMetadata returns the caller's entries without those in the
// gateway's namespace, plus the gateway's own.
func mergeMetadata(caller, ours map[string]string) (map[string]string, error) {
	if len(caller) == 0 && len(ours) <= maxMetadataEntries {
		return ours, nil // the common case: nothing of the caller's to keep
	}
	out := make(map[string]string, len(caller)+len(ours))
	for k, v := range caller {
		if !isGatewayKey(k) {
			out[k] = v
		}
	}
	kept := len(out)
	for k, v := range ours {
		out[k] = v
	}
	if len(out) > maxMetadataEntries {
		return nil, fmt.Errorf("requestMetadata has %d entries with the gateway's %d; Bedrock allows %d", kept, len(ours), maxMetadataEntries)
	}
	return out, nil
}

// stampConverse removes the caller's gateway keys from a Converse request
// body's requestMetadata and writes md into it; with md empty (stamping
// disabled) it only removes them, and removes a requestMetadata left
// empty, which Bedrock would refuse. Everything else in the body is kept
// byte for byte.
func stampConverse(body []byte, md map[string]string) ([]byte, error) {
	return stampConverseInto(nil, body, md)
}

// stampConverseInto is stampConverse writing a changed body into dst (a
// zero-length buffer whose capacity it uses if large enough).
func stampConverseInto(dst, body []byte, md map[string]string) ([]byte, error) {
	keyStart, start, end, found, err := jsonscan.Member(body, "requestMetadata")
	if err != nil {
		return nil, errors.New("request " + err.Error()) // "request body is not valid JSON"
	}
	present := found && string(body[start:end]) != "null"
	if !present && len(md) == 0 {
		return body, nil
	}
	var caller map[string]string
	if present {
		if err := json.Unmarshal(body[start:end], &caller); err != nil {
			return nil, errors.New("requestMetadata must be an object of strings")
		}
	}
	merged, err := mergeMetadata(caller, md)
	if err != nil {
		return nil, err
	}
	if len(merged) == 0 {
		return jsonscan.RemoveMember(body, keyStart, end), nil
	}
	out := dst[:0]
	if need := len(body) + metadataJSONLen(merged) + 24; cap(out) < need {
		out = make([]byte, 0, need)
	}
	if found {
		out = append(out, body[:start]...)
		out = appendMetadataJSON(out, merged)
		return append(out, body[end:]...), nil
	}
	// Insert as the first member.
	open := bytes.IndexByte(body, '{') + 1
	out = append(out, body[:open]...)
	out = append(out, `"requestMetadata":`...)
	out = appendMetadataJSON(out, merged)
	if rest := bytes.TrimLeft(body[open:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, body[open:]...), nil
}

// stampInvoke removes the caller's gateway keys from the
// X-Amzn-Bedrock-Request-Metadata header of the outbound header set and
// writes md into it; a header left empty is removed.
func stampInvoke(h http.Header, md map[string]string) error {
	vals := h.Values(requestMetadataHeader)
	switch {
	case len(vals) > 1:
		return errors.New(requestMetadataHeader + " must appear once")
	case len(vals) == 0 && len(md) == 0:
		return nil
	}
	var caller map[string]string
	if len(vals) == 1 {
		if err := json.Unmarshal([]byte(vals[0]), &caller); err != nil {
			return errors.New(requestMetadataHeader + " must be a JSON object of strings")
		}
	}
	merged, err := mergeMetadata(caller, md)
	if err != nil {
		return err
	}
	if len(merged) == 0 {
		h.Del(requestMetadataHeader)
		return nil
	}
	raw := appendMetadataJSON(make([]byte, 0, metadataJSONLen(merged)), merged)
	if len(raw) > maxMetadataHeaderLen {
		return fmt.Errorf("%s would be %d characters; Bedrock allows %d", requestMetadataHeader, len(raw), maxMetadataHeaderLen)
	}
	h.Set(requestMetadataHeader, string(raw))
	return nil
}

// metadataJSONLen is the length of md as JSON when nothing in it needs
// escaping: a capacity hint for appendMetadataJSON.
func metadataJSONLen(md map[string]string) int {
	n := 2
	for k, v := range md {
		n += len(k) + len(v) + 6
	}
	return n
}

// appendMetadataJSON appends md as a JSON object with its keys sorted, as
// json.Marshal writes a map[string]string, without its reflection and
// intermediate buffers: this runs for every stamped request. Strings
// outside ASCII take json.Marshal's own encoding.
func appendMetadataJSON(dst []byte, md map[string]string) []byte {
	var arr [maxMetadataEntries]string
	keys := arr[:0]
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonscan.AppendString(dst, k)
		dst = append(dst, ':')
		dst = jsonscan.AppendString(dst, md[k])
	}
	return append(dst, '}')
}
