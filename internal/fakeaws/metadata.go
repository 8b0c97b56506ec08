package fakeaws

// Request metadata: key-value pairs a caller attaches to an inference call
// so Bedrock writes them into the model invocation logs. Converse and
// ConverseStream carry them in the body member requestMetadata;
// InvokeModel and InvokeModelWithResponseStream in the header
// X-Amzn-Bedrock-Request-Metadata as a JSON string.
//
// Limits, from the Bedrock Runtime service model (aws/aws-sdk-net
// generator/ServiceModels/bedrock-runtime/bedrock-runtime-2023-09-30.api.json,
// shapes RequestMetadata, RequestMetadataKeyString,
// RequestMetadataValueString; aws-sdk-go-v2 bedrockruntime v1.63.13
// schemas.go binds the header as RequestMetadataJson): the map has 1 to 16
// entries; keys are 1-256 and values 0-256 characters matching
// [a-zA-Z0-9\s:_@$#=/+,-.]; the header value is at most 8,500 characters
// (aws-wire-facts §1.5). The model only says the header is "a JSON
// string"; the fake requires a JSON object of strings and applies the map
// limits to it.

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"unicode/utf8"
)

const (
	requestMetadataHeader       = "X-Amzn-Bedrock-Request-Metadata"
	maxRequestMetadataEntries   = 16
	maxRequestMetadataKeyLen    = 256
	maxRequestMetadataValueLen  = 256
	maxRequestMetadataHeaderLen = 8500
	requestMetadataKeyPattern   = `[a-zA-Z0-9\s:_@$#=/+,-.]{1,256}`
	requestMetadataValuePattern = `[a-zA-Z0-9\s:_@$#=/+,-.]{0,256}`
)

// isMetadataChar reports whether c is in [a-zA-Z0-9\s:_@$#=/+,-.]: the
// class's ",-." is the range ',' to '.', that is ",", "-" and ".", and \s
// is the Java/ECMAScript whitespace class.
func isMetadataChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == ' ', c == '\t', c == '\n', c == '\v', c == '\f', c == '\r':
		return true
	}
	switch c {
	case ':', '_', '@', '$', '#', '=', '/', '+', ',', '-', '.':
		return true
	}
	return false
}

// validMetadataString reports whether s has min to max characters, all
// matching the metadata class. The fake matches the whole string, as the
// service does, although Smithy patterns are not anchored.
func validMetadataString(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isMetadataChar(s[i]) {
			return false
		}
	}
	return true
}

// validateMetadata checks m against the RequestMetadata limits. The
// messages follow Bedrock's validation wording but never repeat a key or
// value: the member is marked sensitive.
func validateMetadata(m map[string]string) *bedrockError {
	switch {
	case len(m) < 1:
		return validationError("1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Member must have length greater than or equal to 1")
	case len(m) > maxRequestMetadataEntries:
		return validationError("1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Member must have length less than or equal to %d", maxRequestMetadataEntries)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !validMetadataString(k, 1, maxRequestMetadataKeyLen) {
			return validationError("1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to %d, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: %s]", maxRequestMetadataKeyLen, requestMetadataKeyPattern)
		}
		if !validMetadataString(m[k], 0, maxRequestMetadataValueLen) {
			return validationError("1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to %d, Member must satisfy regular expression pattern: %s]", maxRequestMetadataValueLen, requestMetadataValuePattern)
		}
	}
	return nil
}

// parseMetadataField validates Converse's requestMetadata member; nil if
// absent.
func parseMetadataField(raw json.RawMessage) (map[string]string, *bedrockError) {
	if !isPresent(raw) {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, validationError("Malformed input request, please reformat your input and try again.")
	}
	if e := validateMetadata(m); e != nil {
		return nil, e
	}
	return m, nil
}

// parseMetadataHeader validates the X-Amzn-Bedrock-Request-Metadata
// header of an InvokeModel request; nil if absent.
func parseMetadataHeader(h http.Header) (map[string]string, *bedrockError) {
	vs := h.Values(requestMetadataHeader)
	switch {
	case len(vs) == 0:
		return nil, nil
	case len(vs) > 1:
		return nil, validationError("The %s header must be sent at most once.", requestMetadataHeader)
	case utf8.RuneCountInString(vs[0]) > maxRequestMetadataHeaderLen:
		return nil, validationError("1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Member must have length less than or equal to %d", maxRequestMetadataHeaderLen)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(vs[0]), &m); err != nil || m == nil {
		return nil, validationError("The %s header must be a JSON object whose values are strings.", requestMetadataHeader)
	}
	if e := validateMetadata(m); e != nil {
		return nil, e
	}
	return m, nil
}
