package proxy

import (
	"errors"
	"net/url"
	"strings"
)

// maxModelIDLen is the longest model identifier Bedrock accepts
// (ConversationalModelId / InvokeModelIdentifier: 1-2048 characters).
const maxModelIDLen = 2048

// parseModelID decodes the {modelId} path segment as it arrived on the wire
// (escaped: the Go and JS SDKs send %3A and %2F, Anthropic's SDK sends a raw
// ':' and %2F) and checks it against the characters Bedrock model IDs, ARNs
// and inference-profile IDs are made of. Anything else is refused rather
// than passed on, because the upstream path is rebuilt from this value.
func parseModelID(escaped string) (string, error) {
	if escaped == "" {
		return "", errors.New("model identifier is empty")
	}
	if len(escaped) > 3*maxModelIDLen {
		return "", errors.New("model identifier is too long")
	}
	id, err := url.PathUnescape(escaped)
	if err != nil {
		return "", errors.New("model identifier is not validly escaped")
	}
	if id == "" {
		return "", errors.New("model identifier is empty")
	}
	if len(id) > maxModelIDLen {
		return "", errors.New("model identifier is longer than 2048 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == '_', c == ':', c == '/':
		default:
			return "", errors.New("model identifier contains a character Bedrock model IDs and ARNs do not use")
		}
	}
	for seg := range strings.SplitSeq(id, "/") {
		switch seg {
		case "":
			return "", errors.New("model identifier has an empty path segment")
		case ".", "..":
			return "", errors.New("model identifier has a relative path segment")
		}
	}
	return id, nil
}

// escapeLabel escapes a path label the way the AWS SDKs do for non-greedy
// labels (smithy-go httpbinding.EscapePath with encodeSep): every byte but
// the unreserved A-Z a-z 0-9 - . _ ~ becomes %XX, so ':' and '/' are escaped.
func escapeLabel(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
