package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/bedrock-gateway/gateway/internal/jsonscan"
)

// Token-count response headers Bedrock puts on InvokeModel answers. They are
// not in the Smithy model but are what LiteLLM, dd-trace-js, New Relic and
// OpenLLMetry read (aws-wire-facts §1.5, third-party / observed).
const (
	headerInputTokens      = "X-Amzn-Bedrock-Input-Token-Count"
	headerOutputTokens     = "X-Amzn-Bedrock-Output-Token-Count"
	headerCacheReadTokens  = "X-Amzn-Bedrock-Cache-Read-Input-Token-Count"
	headerCacheWriteTokens = "X-Amzn-Bedrock-Cache-Write-Input-Token-Count"
)

// converseUsage is Bedrock's TokenUsage shape (BR-model), used by the
// Converse response body and by the ConverseStream metadata event.
type converseUsage struct {
	InputTokens           tokenCount `json:"inputTokens"`
	OutputTokens          tokenCount `json:"outputTokens"`
	CacheReadInputTokens  tokenCount `json:"cacheReadInputTokens"`
	CacheWriteInputTokens tokenCount `json:"cacheWriteInputTokens"`
}

func (u *converseUsage) tokens() (Tokens, bool) {
	if u == nil {
		return Tokens{}, false
	}
	return countTokens(u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheWriteInputTokens)
}

// converseBody is the part of a Converse answer, or of a ConverseStream
// metadata event, that carries usage.
type converseBody struct {
	Usage *converseUsage `json:"usage"`
}

// FromConverse reads the token usage of a Converse answer from its body
// (usage.{inputTokens,outputTokens,cacheReadInputTokens,cacheWriteInputTokens},
// aws-wire-facts §2.4). Unknown fields are ignored; a body without usage, or
// one that is not JSON, gives (Tokens{}, false). It never panics.
func FromConverse(body []byte) (Tokens, bool) {
	// The answer is mostly model output: find usage without decoding the
	// rest (a full decode cost more than the rest of a request's
	// metering), then decode only usage.
	_, start, end, found, err := jsonscan.Member(body, "usage")
	if err != nil || !found {
		return Tokens{}, false
	}
	if u, ok := scanConverseUsage(body[start:end]); ok {
		return u.tokens()
	}
	var u *converseUsage
	if !unmarshalTolerant(body[start:end], &u) {
		return Tokens{}, false
	}
	return u.tokens()
}

// scanConverseUsage reads a TokenUsage object without encoding/json,
// which cost more than the rest of metering an answer. It gives up
// (ok false) on anything encoding/json might read differently: escaped
// member names, names matching a field only case-insensitively, values
// other than integers and null, and anything but an object;
// FuzzScanConverseUsage holds it to json.Unmarshal where it answers.
func scanConverseUsage(obj []byte) (u *converseUsage, ok bool) {
	if len(obj) == 4 && string(obj) == "null" {
		return nil, true
	}
	u = &converseUsage{}
	ok = true
	err := jsonscan.Members(obj, func(m jsonscan.Span) bool {
		name, escaped, value := m.Name, m.Escaped, obj[m.Start:m.End]
		var c *tokenCount
		switch string(name) {
		case "inputTokens":
			c = &u.InputTokens
		case "outputTokens":
			c = &u.OutputTokens
		case "cacheReadInputTokens":
			c = &u.CacheReadInputTokens
		case "cacheWriteInputTokens":
			c = &u.CacheWriteInputTokens
		default:
			for _, f := range [...]string{"inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"} {
				if escaped || bytes.EqualFold(name, []byte(f)) {
					ok = false
					return false
				}
			}
			if !plainScalar(value) {
				ok = false // let encoding/json judge nested or odd values
				return false
			}
			return true
		}
		if escaped || !plainScalar(value) {
			ok = false
			return false
		}
		c.UnmarshalJSON(value) // never fails
		return true
	})
	return u, ok && err == nil
}

// plainScalar reports whether v is null or an integer literal with no
// sign, fraction or exponent beyond what strconv.ParseInt reads:
// anything whose meaning json.Unmarshal and tokenCount agree on.
func plainScalar(v []byte) bool {
	if string(v) == "null" {
		return true
	}
	if len(v) == 0 || len(v) > 19 {
		return false
	}
	if v[0] == '0' && len(v) > 1 {
		return false // not JSON
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// FromInvoke reads the token usage of an InvokeModel answer. The
// X-Amzn-Bedrock-*-Token-Count headers are Bedrock's own count and win; when
// they are absent or malformed the model's native body is read:
//
//   - Anthropic: usage.{input_tokens,output_tokens,cache_read_input_tokens,cache_creation_input_tokens}
//   - Amazon Nova: usage.{inputTokens,outputTokens,cacheReadInputTokenCount,cacheWriteInputTokenCount}
//   - OpenAI chat-completions style (AI21 Jamba, OpenAI gpt-oss): usage.{prompt_tokens,completion_tokens}
//   - Amazon Titan: inputTextTokenCount + the sum of results[].tokenCount
//   - Meta Llama: prompt_token_count, generation_token_count
//   - Cohere Command R: meta.billed_units.{input_tokens,output_tokens}
//
// Anything else gives (Tokens{}, false). It never panics.
func FromInvoke(h http.Header, body []byte) (Tokens, bool) {
	if t, ok := fromInvokeHeaders(h); ok {
		return t, true
	}
	return fromInvokeBody(body)
}

// fromInvokeHeaders reads the token-count headers. Either the input or the
// output count must be present, and every count present must be a
// non-negative integer; otherwise the headers are not trusted at all.
func fromInvokeHeaders(h http.Header) (Tokens, bool) {
	var t Tokens
	var found bool
	for _, f := range [...]struct {
		name string
		dst  *int64
		main bool
	}{
		{headerInputTokens, &t.Input, true},
		{headerOutputTokens, &t.Output, true},
		{headerCacheReadTokens, &t.CacheRead, false},
		{headerCacheWriteTokens, &t.CacheWrite, false},
	} {
		v := h.Get(f.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return Tokens{}, false
		}
		*f.dst = n
		found = found || f.main
	}
	if !found {
		return Tokens{}, false
	}
	return t, true
}

// invokeUsage is the union of the "usage" objects of the model families
// FromInvoke knows. encoding/json matches keys case-insensitively, but no two
// of these names fold to the same key.
type invokeUsage struct {
	// Anthropic Messages API.
	InputTokens              tokenCount `json:"input_tokens"`
	OutputTokens             tokenCount `json:"output_tokens"`
	CacheReadInputTokens     tokenCount `json:"cache_read_input_tokens"`
	CacheCreationInputTokens tokenCount `json:"cache_creation_input_tokens"`

	// Amazon Nova (and Converse-style spellings of the cache fields).
	InputTokensCamel           tokenCount `json:"inputTokens"`
	OutputTokensCamel          tokenCount `json:"outputTokens"`
	CacheReadInputTokenCount   tokenCount `json:"cacheReadInputTokenCount"`
	CacheWriteInputTokenCount  tokenCount `json:"cacheWriteInputTokenCount"`
	CacheReadInputTokensCamel  tokenCount `json:"cacheReadInputTokens"`
	CacheWriteInputTokensCamel tokenCount `json:"cacheWriteInputTokens"`

	// OpenAI chat-completions style. prompt_tokens already includes cached
	// tokens, so no cache split is read for this family.
	PromptTokens     tokenCount `json:"prompt_tokens"`
	CompletionTokens tokenCount `json:"completion_tokens"`
}

func (u *invokeUsage) tokens() (Tokens, bool) {
	if u == nil {
		return Tokens{}, false
	}
	if u.InputTokens.present() || u.OutputTokens.present() {
		return countTokens(u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens)
	}
	if u.InputTokensCamel.present() || u.OutputTokensCamel.present() {
		return countTokens(u.InputTokensCamel, u.OutputTokensCamel,
			firstCount(u.CacheReadInputTokenCount, u.CacheReadInputTokensCamel),
			firstCount(u.CacheWriteInputTokenCount, u.CacheWriteInputTokensCamel))
	}
	return countTokens(u.PromptTokens, u.CompletionTokens, tokenCount{}, tokenCount{})
}

// invokeBody is the union of the InvokeModel answer shapes that carry usage.
type invokeBody struct {
	Usage *invokeUsage `json:"usage"`

	// Amazon Titan text and embeddings.
	InputTextTokenCount tokenCount `json:"inputTextTokenCount"`
	Results             []struct {
		TokenCount tokenCount `json:"tokenCount"`
	} `json:"results"`

	// Meta Llama.
	PromptTokenCount     tokenCount `json:"prompt_token_count"`
	GenerationTokenCount tokenCount `json:"generation_token_count"`

	// Cohere Command R.
	Meta *struct {
		BilledUnits *struct {
			InputTokens  tokenCount `json:"input_tokens"`
			OutputTokens tokenCount `json:"output_tokens"`
		} `json:"billed_units"`
	} `json:"meta"`
}

// invokeBodyHints are substrings at least one of which every body shape
// FromInvoke understands contains. A body without any (an image, a long
// embedding vector without a count) is not worth a JSON parse.
var invokeBodyHints = [...][]byte{
	[]byte(`"usage"`),
	[]byte(`TokenCount"`),  // inputTextTokenCount, tokenCount
	[]byte(`token_count"`), // prompt_token_count, generation_token_count
	[]byte(`"billed_units"`),
}

func fromInvokeBody(body []byte) (Tokens, bool) {
	hinted := false
	for _, h := range invokeBodyHints {
		if bytes.Contains(body, h) {
			hinted = true
			break
		}
	}
	if !hinted {
		return Tokens{}, false
	}
	var b invokeBody
	if !unmarshalTolerant(body, &b) {
		return Tokens{}, false
	}
	if t, ok := b.Usage.tokens(); ok {
		return t, true
	}
	if b.InputTextTokenCount.present() {
		out := tokenCount{set: true}
		for _, r := range b.Results {
			if r.TokenCount.bad || out.n > maxTokenCount-r.TokenCount.n {
				return Tokens{}, false
			}
			out.n += r.TokenCount.n
		}
		return countTokens(b.InputTextTokenCount, out, tokenCount{}, tokenCount{})
	}
	if b.PromptTokenCount.present() || b.GenerationTokenCount.present() {
		return countTokens(b.PromptTokenCount, b.GenerationTokenCount, tokenCount{}, tokenCount{})
	}
	if b.Meta != nil && b.Meta.BilledUnits != nil {
		return countTokens(b.Meta.BilledUnits.InputTokens, b.Meta.BilledUnits.OutputTokens, tokenCount{}, tokenCount{})
	}
	return Tokens{}, false
}

// maxTokenCount bounds a sum of counts so that it cannot overflow int64.
const maxTokenCount = 1<<63 - 1

// tokenCount is one token count in a JSON answer. Only a non-negative
// integer is a count; any other value (a string, a fraction, a negative or
// overflowing number) marks the count bad instead of failing the whole
// document, so that the caller can refuse a source it cannot trust while
// unrelated odd fields elsewhere do no harm. A negative count would also
// make a Prometheus counter panic.
type tokenCount struct {
	n   int64
	set bool // a valid count was present
	bad bool // something other than a count or null was present
}

func (c *tokenCount) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		*c = tokenCount{bad: true}
		return nil
	}
	*c = tokenCount{n: n, set: true}
	return nil
}

// present reports whether the answer carried the field at all.
func (c tokenCount) present() bool { return c.set || c.bad }

// countTokens builds Tokens from optional counts. The input or the output
// count must be present and none may be bad.
func countTokens(in, out, cacheRead, cacheWrite tokenCount) (Tokens, bool) {
	if in.bad || out.bad || cacheRead.bad || cacheWrite.bad || (!in.set && !out.set) {
		return Tokens{}, false
	}
	return Tokens{Input: in.n, Output: out.n, CacheRead: cacheRead.n, CacheWrite: cacheWrite.n}, true
}

// firstCount returns a if the answer carried it, else b.
func firstCount(a, b tokenCount) tokenCount {
	if a.present() {
		return a
	}
	return b
}

// unmarshalTolerant decodes JSON into v and reports whether the document was
// well formed. A field of an unexpected type is left unset rather than
// failing the whole document: encoding/json keeps decoding after an
// UnmarshalTypeError, so the fields that did match are still usable.
func unmarshalTolerant(data []byte, v any) bool {
	err := json.Unmarshal(data, v)
	if err == nil {
		return true
	}
	var typeErr *json.UnmarshalTypeError
	return errors.As(err, &typeErr)
}
