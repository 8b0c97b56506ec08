package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

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

// Request-metadata keys the gateway writes. A caller's own values under
// these keys are replaced, so invocation logs cannot be forged.
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
	md := map[string]string{MetadataSession: spec.SessionName}
	for k, v := range map[string]string{MetadataUser: id.User, MetadataTeam: id.Team, MetadataTenant: id.Tenant, MetadataCostCenter: id.CostCenter} {
		if v != "" && validMetadataValue(v) {
			md[k] = v
		}
	}
	return md
}

// mergeMetadata adds the gateway's entries to the caller's, replacing any
// caller value under a gateway key.
func mergeMetadata(caller, ours map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(caller)+len(ours))
	for k, v := range caller {
		out[k] = v
	}
	for k, v := range ours {
		out[k] = v
	}
	if len(out) > maxMetadataEntries {
		return nil, fmt.Errorf("requestMetadata has %d entries with the gateway's %d; Bedrock allows %d", len(caller), len(ours), maxMetadataEntries)
	}
	return out, nil
}

// stampConverse writes md into a Converse request body's requestMetadata.
// Everything else in the body is kept byte for byte.
func stampConverse(body []byte, md map[string]string) ([]byte, error) {
	start, end, found, err := topLevelMember(body, "requestMetadata")
	if err != nil {
		return nil, err
	}
	var caller map[string]string
	if found && string(body[start:end]) != "null" {
		if err := json.Unmarshal(body[start:end], &caller); err != nil {
			return nil, errors.New("requestMetadata must be an object of strings")
		}
	}
	merged, err := mergeMetadata(caller, md)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(body)+len(raw)+24)
	if found {
		out = append(out, body[:start]...)
		out = append(out, raw...)
		return append(out, body[end:]...), nil
	}
	// Insert as the first member.
	open := bytes.IndexByte(body, '{') + 1
	out = append(out, body[:open]...)
	out = append(out, `"requestMetadata":`...)
	out = append(out, raw...)
	if rest := bytes.TrimLeft(body[open:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, body[open:]...), nil
}

// stampInvoke writes md into the X-Amzn-Bedrock-Request-Metadata header
// of the outbound header set.
func stampInvoke(h http.Header, md map[string]string) error {
	var caller map[string]string
	if vals := h.Values(requestMetadataHeader); len(vals) > 1 {
		return errors.New(requestMetadataHeader + " must appear once")
	} else if len(vals) == 1 {
		if err := json.Unmarshal([]byte(vals[0]), &caller); err != nil {
			return errors.New(requestMetadataHeader + " must be a JSON object of strings")
		}
	}
	merged, err := mergeMetadata(caller, md)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(merged)
	if err != nil {
		return err
	}
	if len(raw) > maxMetadataHeaderLen {
		return fmt.Errorf("%s would be %d characters; Bedrock allows %d", requestMetadataHeader, len(raw), maxMetadataHeaderLen)
	}
	h.Set(requestMetadataHeader, string(raw))
	return nil
}
