package fakeaws

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text embedding models on InvokeModel (POST /model/{modelId}/invoke).
//
// The fake serves the text-only request and response bodies of the Amazon
// Bedrock user guide's model-parameter pages:
//
//   - "Amazon Titan Embeddings Text" (model-parameters-titan-embed-text):
//     Titan Text Embeddings V2 takes {"inputText", "dimensions" (1024, 512
//     or 256; default 1024), "normalize" (default true), "embeddingTypes"
//     (["float"], ["binary"] or both)} and answers {"embedding",
//     "inputTextTokenCount", "embeddingsByType"}; Titan Embeddings G1 -
//     Text takes only {"inputText"} and answers {"embedding" (1536 floats),
//     "inputTextTokenCount"}.
//   - "Cohere Embed v3" (model-parameters-embed-v3): {"texts" (at most 96,
//     each at most 2048 characters), "input_type" (search_document,
//     search_query, classification, clustering), "truncate" (NONE, START,
//     END), "embedding_types"} answered with {"id", "texts", "embeddings",
//     "response_type"}: "embeddings_floats" and a list of 1024-float vectors
//     without embedding_types, else "embeddings_by_type" and an object with
//     one list per requested type.
//   - "Cohere Embed v4" (model-parameters-embed-v4): the v3 fields plus
//     "output_dimension" (256, 512, 1024, 1536; default 1536) and
//     "max_tokens"; answered "embeddings_by_type" (as a live answer through
//     Bedrock recorded by the Vercel AI SDK shows).
//
// Image inputs ("images", and v4's "inputs") are refused: the fake embeds
// text only.
//
// The vectors are deterministic: a SHA-256 stream of the model, the
// Cohere input_type and the text, so the same request always gets the same
// vector, and a shorter dimension is a prefix of a longer one (renormalized)
// as with the Matryoshka-trained Titan V2 and Cohere v4. Input tokens are
// the words of the text(s), at least 1 per call; there are no output
// tokens. The answer carries X-Amzn-Bedrock-Input-Token-Count and
// X-Amzn-Bedrock-Invocation-Latency but no X-Amzn-Bedrock-Output-Token-Count,
// as recorded Bedrock answers for Titan and Cohere embeddings do (New Relic
// node agent fixtures). The call is recorded and billed like any
// InvokeModel: "<REGIONCODE>-<modelId>-input-tokens" only.

// embedFamily is a request and response shape.
type embedFamily int

const (
	titanEmbedV1 embedFamily = iota + 1
	titanEmbedV2
	cohereEmbedV3
	cohereEmbedV4
)

// embeddingModel is one embedding model the fake serves.
type embeddingModel struct {
	// base is the base model ID without version suffix; a model ID that
	// contains it (with a version suffix, a cross-Region or global
	// inference-profile prefix such as "us." or "global.", or as an ARN)
	// is this model.
	base   string
	family embedFamily
	// dims are the accepted output dimensions, nil if the model has one;
	// def is the default.
	dims []int
	def  int
	// maxTokens is the model's input limit (Titan), 0 if unchecked.
	maxTokens int64
}

var embeddingModels = []embeddingModel{
	{base: "amazon.titan-embed-text-v2", family: titanEmbedV2, dims: []int{1024, 512, 256}, def: 1024, maxTokens: 8192},
	{base: "amazon.titan-embed-text-v1", family: titanEmbedV1, def: 1536, maxTokens: 8192},
	{base: "amazon.titan-embed-g1-text-02", family: titanEmbedV1, def: 1536, maxTokens: 8192},
	{base: "cohere.embed-english-v3", family: cohereEmbedV3, def: 1024},
	{base: "cohere.embed-multilingual-v3", family: cohereEmbedV3, def: 1024},
	{base: "cohere.embed-v4", family: cohereEmbedV4, dims: []int{256, 512, 1024, 1536}, def: 1536},
}

// embeddingModelFor returns the embedding model modelID names, nil if it
// names none. It recognizes families by substring, as the fake does for
// Anthropic models, so inference-profile IDs and ARNs match too (but an
// application inference profile's opaque ARN does not).
func embeddingModelFor(modelID string) *embeddingModel {
	for i := range embeddingModels {
		if strings.Contains(modelID, embeddingModels[i].base) {
			return &embeddingModels[i]
		}
	}
	return nil
}

const (
	// maxCohereTexts and maxCohereTextLen are the per-call limits of the
	// Cohere Embed models on Bedrock.
	maxCohereTexts   = 96
	maxCohereTextLen = 2048
	// cohereV4Malformed is what Bedrock answered a malformed Cohere Embed
	// v4 body (the Vercel AI SDK's recorded fixture
	// amazon-bedrock-cohere-v4-application-inference-profile-error.json):
	// v4 does not name the violation.
	cohereV4Malformed = "Malformed request. Please check your parameter/values and try again."
)

var (
	cohereInputTypes = []string{"search_document", "search_query", "classification", "clustering"}
	cohereTypes      = []string{"float", "int8", "uint8", "binary", "ubinary"}
	cohereV3Truncate = []string{"NONE", "START", "END"}
	// The v4 page documents NONE, LEFT and RIGHT; the fake also takes
	// v3's START and END rather than refuse what Bedrock may accept.
	cohereV4Truncate = []string{"NONE", "LEFT", "RIGHT", "START", "END"}
	titanTypes       = []string{"float", "binary"}
)

// embedRequest is a validated embedding request.
type embedRequest struct {
	texts      []string
	dim        int
	normalize  bool
	types      []string // requested embedding types, in request order; nil if none
	inputType  string   // Cohere
	maxTokens  int64    // Cohere v4's max_tokens, 0 if unset
	tokenCount int64
}

// invokeEmbedding answers InvokeModel for an embedding model.
func (s *Server) invokeEmbedding(c *call, m *embeddingModel) {
	md, e := parseMetadataHeader(c.r.Header)
	if e != nil {
		c.fail(e)
		return
	}
	req, e := parseEmbedRequest(m, c.body)
	if e != nil {
		c.fail(e)
		return
	}
	c.inv.RequestMetadata = md
	var resp any
	switch m.family {
	case titanEmbedV1, titanEmbedV2:
		resp = titanEmbedResponse(m, req)
	default:
		resp = cohereEmbedResponse(m, req)
	}
	h := http.Header{}
	h.Set("X-Amzn-Bedrock-Input-Token-Count", strconv.FormatInt(req.tokenCount, 10))
	h.Set("X-Amzn-Bedrock-Invocation-Latency", strconv.Itoa(latencyMs))
	c.record(outcome{status: http.StatusOK, in: req.tokenCount})
	writeJSON(c.w, resp, h)
}

// violations collects JSON-schema violations in the wording Bedrock uses
// for model bodies ("#/path: ...", as for Anthropic bodies in bedrock.go).
// One violation is named; several are only counted: "2 schema violations
// found" (recorded for a Titan embeddings body in New Relic's node agent
// fixtures). The per-violation wordings are the validator's usual ones,
// not each confirmed against Bedrock.
type violations []string

func (v *violations) add(format string, args ...any) { *v = append(*v, fmt.Sprintf(format, args...)) }

func (v violations) err() *bedrockError {
	switch len(v) {
	case 0:
		return nil
	case 1:
		return malformed(v[0])
	}
	return malformed(fmt.Sprintf("%d schema violations found", len(v)))
}

// jsonType names the JSON type of a value decoded with UseNumber, as the
// schema validator does.
func jsonType(v any) string {
	switch v := v.(type) {
	case string:
		return "String"
	case json.Number:
		if isInteger(v) {
			return "Integer"
		}
		return "Number"
	case bool:
		return "Boolean"
	case []any:
		return "JSONArray"
	case map[string]any:
		return "JSONObject"
	}
	return "null"
}

func isInteger(n json.Number) bool {
	_, err := n.Int64()
	return err == nil
}

// decodeObject decodes body as a JSON object; ok is false, with the violation
// added, if it is not one.
func decodeObject(body []byte, v *violations) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		v.add("#: expected a JSON document")
		return nil, false
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		v.add("#: expected type: JSONObject, found: %s", jsonType(doc))
		return nil, false
	}
	return obj, true
}

// checkKeys adds a violation per required key missing and per key not
// allowed, in sorted order.
func checkKeys(obj map[string]any, required, allowed []string, v *violations) {
	for _, k := range required {
		if _, ok := obj[k]; !ok {
			v.add("#: required key [%s] not found", k)
		}
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			v.add("#: extraneous key [%s] is not permitted", clip(k))
		}
	}
}

// stringField returns obj[key] if it is a string; a present non-string
// adds a violation.
func stringField(obj map[string]any, key string, v *violations) (string, bool) {
	raw, ok := obj[key]
	if !ok {
		return "", false
	}
	s, isString := raw.(string)
	if !isString {
		v.add("#/%s: expected type: String, found: %s", key, jsonType(raw))
		return "", false
	}
	return s, true
}

// enumField returns obj[key] if it is one of values.
func enumField(obj map[string]any, key string, values []string, v *violations) (string, bool) {
	s, ok := stringField(obj, key, v)
	if ok && !slices.Contains(values, s) {
		v.add("#/%s: %s is not a valid enum value", key, clip(s))
		return "", false
	}
	return s, ok
}

// intField returns obj[key] if it is an integer.
func intField(obj map[string]any, key string, v *violations) (int64, bool) {
	raw, ok := obj[key]
	if !ok {
		return 0, false
	}
	n, isNumber := raw.(json.Number)
	if !isNumber || !isInteger(n) {
		v.add("#/%s: expected type: Integer, found: %s", key, jsonType(raw))
		return 0, false
	}
	i, _ := n.Int64()
	return i, true
}

// dimField returns obj[key] if it is one of the model's dimensions, else
// the model's default.
func dimField(obj map[string]any, key string, m *embeddingModel, v *violations) int {
	n, ok := intField(obj, key, v)
	if !ok {
		return m.def
	}
	if !slices.Contains(m.dims, int(n)) {
		v.add("#/%s: %d is not a valid enum value", key, n)
		return m.def
	}
	return int(n)
}

// enumListField returns obj[key] if it is a non-empty array of values,
// without repeats.
func enumListField(obj map[string]any, key string, values []string, v *violations) []string {
	raw, ok := obj[key]
	if !ok {
		return nil
	}
	list, isList := raw.([]any)
	if !isList {
		v.add("#/%s: expected type: JSONArray, found: %s", key, jsonType(raw))
		return nil
	}
	if len(list) == 0 {
		v.add("#/%s: expected minimum item count: 1, found: 0", key)
		return nil
	}
	var out []string
	for i, e := range list {
		s, isString := e.(string)
		switch {
		case !isString:
			v.add("#/%s/%d: expected type: String, found: %s", key, i, jsonType(e))
		case !slices.Contains(values, s):
			v.add("#/%s/%d: %s is not a valid enum value", key, i, clip(s))
		case !slices.Contains(out, s):
			out = append(out, s)
		}
	}
	return out
}

// wordCount counts the input tokens of one text: its whitespace-separated
// words.
func wordCount(s string) int64 { return int64(len(strings.Fields(s))) }

// parseEmbedRequest validates an embedding body for model m.
func parseEmbedRequest(m *embeddingModel, body []byte) (embedRequest, *bedrockError) {
	switch m.family {
	case titanEmbedV1, titanEmbedV2:
		return parseTitanEmbed(m, body)
	default:
		return parseCohereEmbed(m, body)
	}
}

func parseTitanEmbed(m *embeddingModel, body []byte) (embedRequest, *bedrockError) {
	var v violations
	obj, ok := decodeObject(body, &v)
	if !ok {
		return embedRequest{}, v.err()
	}
	allowed := []string{"inputText"}
	if m.family == titanEmbedV2 {
		allowed = append(allowed, "dimensions", "normalize", "embeddingTypes")
	}
	checkKeys(obj, []string{"inputText"}, allowed, &v)
	req := embedRequest{dim: m.def, normalize: m.family == titanEmbedV2}
	if text, ok := stringField(obj, "inputText", &v); ok {
		if text == "" {
			v.add("#/inputText: expected minLength: 1, actual: 0")
		}
		req.texts = []string{text}
	}
	if m.family == titanEmbedV2 {
		req.dim = dimField(obj, "dimensions", m, &v)
		if raw, ok := obj["normalize"]; ok {
			b, isBool := raw.(bool)
			if !isBool {
				v.add("#/normalize: expected type: Boolean, found: %s", jsonType(raw))
			}
			req.normalize = b
		}
		req.types = enumListField(obj, "embeddingTypes", titanTypes, &v)
	}
	if e := v.err(); e != nil {
		return embedRequest{}, e
	}
	req.tokenCount = max(wordCount(req.texts[0]), 1)
	if req.tokenCount > m.maxTokens {
		// Bedrock's wording for this is unconfirmed.
		return embedRequest{}, validationError("400 Bad Request: Too many input tokens. Max input tokens: %d, request input token count: %d", m.maxTokens, req.tokenCount)
	}
	return req, nil
}

func parseCohereEmbed(m *embeddingModel, body []byte) (embedRequest, *bedrockError) {
	v4 := m.family == cohereEmbedV4
	var v violations
	req, ok := cohereFields(m, body, &v)
	if !ok || len(v) > 0 {
		if v4 {
			return embedRequest{}, validationError(cohereV4Malformed)
		}
		return embedRequest{}, v.err()
	}
	for _, t := range req.texts {
		n := wordCount(t)
		if req.maxTokens > 0 {
			n = min(n, req.maxTokens)
		}
		req.tokenCount += n
	}
	req.tokenCount = max(req.tokenCount, 1)
	return req, nil
}

// cohereFields reads a Cohere Embed v3 or v4 body, adding its violations
// to v.
func cohereFields(m *embeddingModel, body []byte, v *violations) (embedRequest, bool) {
	v4 := m.family == cohereEmbedV4
	obj, ok := decodeObject(body, v)
	if !ok {
		return embedRequest{}, false
	}
	allowed := []string{"texts", "images", "input_type", "truncate", "embedding_types"}
	if v4 {
		allowed = append(allowed, "inputs", "output_dimension", "max_tokens")
	}
	checkKeys(obj, []string{"texts", "input_type"}, allowed, v)
	for _, k := range []string{"images", "inputs"} {
		if _, ok := obj[k]; ok {
			v.add("#/%s: image embeddings are not emulated by fakeaws; send texts", k)
		}
	}
	req := embedRequest{dim: m.def, normalize: true}
	if raw, ok := obj["texts"]; ok {
		list, isList := raw.([]any)
		switch {
		case !isList:
			v.add("#/texts: expected type: JSONArray, found: %s", jsonType(raw))
		case len(list) == 0:
			v.add("#/texts: expected minimum item count: 1, found: 0")
		case len(list) > maxCohereTexts:
			v.add("#/texts: expected maximum item count: %d, found: %d", maxCohereTexts, len(list))
		}
		for i, e := range list {
			s, isString := e.(string)
			switch {
			case !isString:
				v.add("#/texts/%d: expected type: String, found: %s", i, jsonType(e))
			case !v4 && utf8.RuneCountInString(s) > maxCohereTextLen:
				v.add("#/texts/%d: expected maxLength: %d, actual: %d", i, maxCohereTextLen, utf8.RuneCountInString(s))
			}
			req.texts = append(req.texts, s)
		}
	}
	req.inputType, _ = enumField(obj, "input_type", cohereInputTypes, v)
	truncate := cohereV3Truncate
	if v4 {
		truncate = cohereV4Truncate
	}
	enumField(obj, "truncate", truncate, v)
	req.types = enumListField(obj, "embedding_types", cohereTypes, v)
	if v4 {
		req.dim = dimField(obj, "output_dimension", m, v)
		if n, ok := intField(obj, "max_tokens", v); ok {
			if n < 1 {
				v.add("#/max_tokens: %d is not greater or equal to 1", n)
			}
			req.maxTokens = n
		}
	}
	return req, true
}

// titanEmbedResponse is the Titan answer: V2 adds embeddingsByType, which
// is always present ("float" even when embeddingTypes is not sent), while
// "embedding" is always the float vector.
func titanEmbedResponse(m *embeddingModel, req embedRequest) any {
	f := embedVector(m.base, "", req.texts[0], req.dim, req.normalize)
	if m.family == titanEmbedV1 {
		return struct {
			Embedding           []float32 `json:"embedding"`
			InputTextTokenCount int64     `json:"inputTextTokenCount"`
		}{f, req.tokenCount}
	}
	types := req.types
	if types == nil {
		types = []string{"float"}
	}
	byType := map[string]any{}
	for _, t := range types {
		switch t {
		case "float":
			byType[t] = f
		case "binary":
			// One 0 or 1 per dimension.
			bits := make([]int, len(f))
			for i, x := range f {
				if x > 0 {
					bits[i] = 1
				}
			}
			byType[t] = bits
		}
	}
	return struct {
		Embedding           []float32      `json:"embedding"`
		InputTextTokenCount int64          `json:"inputTextTokenCount"`
		EmbeddingsByType    map[string]any `json:"embeddingsByType"`
	}{f, req.tokenCount, byType}
}

// cohereEmbedResponse is the Cohere answer: v3 without embedding_types
// gets "embeddings_floats" (a list of float vectors); with embedding_types,
// and always on v4, "embeddings_by_type" (an object of lists).
func cohereEmbedResponse(m *embeddingModel, req embedRequest) any {
	vecs := make([][]float32, len(req.texts))
	for i, t := range req.texts {
		vecs[i] = embedVector(m.base, req.inputType, t, req.dim, true)
	}
	resp := struct {
		ID           string   `json:"id"`
		Texts        []string `json:"texts"`
		Embeddings   any      `json:"embeddings"`
		ResponseType string   `json:"response_type"`
	}{ID: newRequestID(), Texts: req.texts}
	if req.types == nil && m.family == cohereEmbedV3 {
		resp.Embeddings, resp.ResponseType = vecs, "embeddings_floats"
		return resp
	}
	types := req.types
	if types == nil {
		types = []string{"float"}
	}
	byType := map[string]any{}
	for _, t := range types {
		if t == "float" {
			byType[t] = vecs
			continue
		}
		out := make([][]int, len(vecs))
		for i, f := range vecs {
			out[i] = quantize(t, f)
		}
		byType[t] = out
	}
	resp.Embeddings, resp.ResponseType = byType, "embeddings_by_type"
	return resp
}

// quantize converts a float embedding to Cohere's compressed types: int8
// (-128..127) and uint8 (0..255) per dimension, binary (signed) and
// ubinary one bit per dimension packed eight to a byte, most significant
// first. It returns nil for "float".
func quantize(typ string, f []float32) []int {
	var maxAbs float64
	for _, x := range f {
		maxAbs = max(maxAbs, math.Abs(float64(x)))
	}
	if maxAbs == 0 {
		maxAbs = 1
	}
	switch typ {
	case "int8", "uint8":
		out := make([]int, len(f))
		for i, x := range f {
			q := int(math.Round(float64(x) / maxAbs * 127))
			if typ == "uint8" {
				q += 128
			}
			out[i] = q
		}
		return out
	case "binary", "ubinary":
		out := make([]int, (len(f)+7)/8)
		for i, x := range f {
			if x > 0 {
				out[i/8] |= 1 << (7 - i%8)
			}
		}
		if typ == "binary" {
			for i := range out {
				out[i] -= 128
			}
		}
		return out
	}
	return nil
}

// embedVector is the fake model's embedding of text: dim values drawn
// from a SHA-256 stream of model, inputType and text, in [-1, 1), scaled
// to unit length if normalize. Fewer dimensions give a prefix of more
// dimensions' raw values.
func embedVector(model, inputType, text string, dim int, normalize bool) []float32 {
	seed := sha256.Sum256([]byte(model + "\x00" + inputType + "\x00" + text))
	raw := make([]float64, dim)
	var block [sha256.Size]byte
	var in [sha256.Size + 8]byte
	copy(in[:], seed[:])
	for i := range raw {
		if i%8 == 0 {
			binary.BigEndian.PutUint64(in[sha256.Size:], uint64(i/8))
			block = sha256.Sum256(in[:])
		}
		u := binary.BigEndian.Uint32(block[(i%8)*4:])
		raw[i] = float64(u)/(1<<31) - 1
	}
	scale := 1.0
	if normalize {
		var sum float64
		for _, x := range raw {
			sum += x * x
		}
		if sum > 0 {
			scale = 1 / math.Sqrt(sum)
		}
	}
	out := make([]float32, dim)
	for i, x := range raw {
		out[i] = float32(x * scale)
	}
	return out
}
