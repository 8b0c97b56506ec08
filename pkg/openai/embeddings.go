package openai

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// EmbeddingsRequest is an OpenAI Create embeddings request, as the gateway
// reads it. Input is always a list of texts: OpenAI's token-array inputs
// are refused, since Bedrock's embedding models take text.
type EmbeddingsRequest struct {
	Model          string
	Input          []string
	EncodingFormat string // "float" or "base64"
	Dimensions     int    // 0: the model's default
}

// maxEmbeddingInputs bounds the texts of one request, as OpenAI does
// (2048 inputs per request).
const maxEmbeddingInputs = 2048

// ParseEmbeddingsRequest checks an embeddings request; errors are
// *RequestError.
func ParseEmbeddingsRequest(body []byte) (*EmbeddingsRequest, error) {
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil || raw == nil || dec.More() {
		return nil, rqErr("", "invalid_json", "The request body is not a JSON object.")
	}
	if err := rqCheckKeys(raw, "", "model", "input", "encoding_format", "dimensions", "user"); err != nil {
		return nil, err
	}
	r := &EmbeddingsRequest{EncodingFormat: "float"}
	var err *RequestError
	rawModel, ok := raw["model"]
	if !ok || rqIsNull(rawModel) {
		return nil, rqErr("model", "missing_required_parameter", "Missing required parameter: 'model'.")
	}
	if r.Model, err = rqString(rawModel, "model"); err != nil {
		return nil, err
	}
	if r.Model == "" {
		return nil, rqErr("model", "invalid_value", "model must not be empty.")
	}
	rawInput, ok := raw["input"]
	if !ok || rqIsNull(rawInput) {
		return nil, rqErr("input", "missing_required_parameter", "Missing required parameter: 'input'.")
	}
	switch rqKind(rawInput) {
	case '"':
		s, _ := rqString(rawInput, "input")
		r.Input = []string{s}
	case '[':
		items, err := rqArray(rawInput, "input")
		if err != nil {
			return nil, err
		}
		for i, it := range items {
			if rqKind(it) != '"' {
				return nil, rqErr(fmt.Sprintf("input[%d]", i), "unsupported_value",
					"input must be a string or an array of strings: Bedrock's embedding models take text, not token arrays.")
			}
			s, _ := rqString(it, fmt.Sprintf("input[%d]", i))
			r.Input = append(r.Input, s)
		}
	default:
		return nil, rqWrongType(rawInput, "input", "a string or an array of strings")
	}
	if len(r.Input) == 0 || len(r.Input) > maxEmbeddingInputs {
		return nil, rqErr("input", "invalid_value", "input must hold 1 to %d texts.", maxEmbeddingInputs)
	}
	for i, s := range r.Input {
		if strings.TrimSpace(s) == "" {
			return nil, rqErr(fmt.Sprintf("input[%d]", i), "invalid_value", "input texts must not be empty.")
		}
	}
	if v, ok := raw["encoding_format"]; ok && !rqIsNull(v) {
		f, err := rqString(v, "encoding_format")
		if err != nil {
			return nil, err
		}
		if f != "float" && f != "base64" {
			return nil, rqErr("encoding_format", "invalid_value", "encoding_format must be float or base64.")
		}
		r.EncodingFormat = f
	}
	if v, ok := raw["dimensions"]; ok && !rqIsNull(v) {
		n, err := rqInt(v, "dimensions")
		if err != nil {
			return nil, err
		}
		if n < 1 {
			return nil, rqErr("dimensions", "invalid_value", "dimensions must be positive.")
		}
		r.Dimensions = int(min(n, math.MaxInt32))
	}
	if v, ok := raw["user"]; ok && !rqIsNull(v) {
		if _, err := rqString(v, "user"); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// EmbeddingModel is how the gateway calls one Bedrock embedding model
// through InvokeModel.
type EmbeddingModel struct {
	family string // "titan-v2", "titan-v1", "cohere-v3", "cohere-v4"
}

// Batch is how many texts one InvokeModel call takes: Titan embeds one
// text per call, Cohere up to 96.
func (m EmbeddingModel) Batch() int {
	if strings.HasPrefix(m.family, "cohere") {
		return 96
	}
	return 1
}

// LookupEmbeddingModel reports how to call modelID, a Bedrock model ID or
// an inference profile for one ("us.cohere.embed-v4:0"), if it is an
// embedding model the gateway translates.
func LookupEmbeddingModel(modelID string) (EmbeddingModel, bool) {
	id := modelID
	if i := strings.LastIndexByte(id, '/'); i >= 0 { // an ARN
		id = id[i+1:]
	}
	for _, p := range []string{"us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global."} {
		id = strings.TrimPrefix(id, p)
	}
	switch {
	case strings.HasPrefix(id, "amazon.titan-embed-text-v2"):
		return EmbeddingModel{"titan-v2"}, true
	case strings.HasPrefix(id, "amazon.titan-embed-text-v1"), strings.HasPrefix(id, "amazon.titan-embed-g1-text"):
		return EmbeddingModel{"titan-v1"}, true
	case strings.HasPrefix(id, "cohere.embed-v4"):
		return EmbeddingModel{"cohere-v4"}, true
	case strings.HasPrefix(id, "cohere.embed-english-v3"), strings.HasPrefix(id, "cohere.embed-multilingual-v3"):
		return EmbeddingModel{"cohere-v3"}, true
	}
	return EmbeddingModel{}, false
}

// InvokeBody is the InvokeModel body embedding texts (Batch of them at
// most) at the request's dimensions. A dimension the model cannot give is
// a *RequestError.
func (m EmbeddingModel) InvokeBody(texts []string, dimensions int) ([]byte, error) {
	badDims := func(allowed string) error {
		return rqErr("dimensions", "unsupported_value", "this model's dimensions are %s.", allowed)
	}
	var v any
	switch m.family {
	case "titan-v2":
		body := map[string]any{"inputText": texts[0], "normalize": true}
		switch dimensions {
		case 0:
		case 256, 512, 1024:
			body["dimensions"] = dimensions
		default:
			return nil, badDims("256, 512 or 1024")
		}
		v = body
	case "titan-v1":
		if dimensions != 0 && dimensions != 1536 {
			return nil, badDims("1536 only")
		}
		v = map[string]any{"inputText": texts[0]}
	case "cohere-v3":
		if dimensions != 0 && dimensions != 1024 {
			return nil, badDims("1024 only")
		}
		v = map[string]any{"texts": texts, "input_type": "search_document"}
	case "cohere-v4":
		body := map[string]any{"texts": texts, "input_type": "search_document", "embedding_types": []string{"float"}}
		switch dimensions {
		case 0:
		case 256, 512, 1024, 1536:
			body["output_dimension"] = dimensions
		default:
			return nil, badDims("256, 512, 1024 or 1536")
		}
		v = body
	default:
		return nil, fmt.Errorf("openai: unknown embedding family %q", m.family)
	}
	return json.Marshal(v)
}

// Vectors reads the embeddings of an InvokeModel answer, one per text
// sent, and the input tokens the body reports (0 if it reports none:
// Bedrock's X-Amzn-Bedrock-Input-Token-Count header has them).
func (m EmbeddingModel) Vectors(answer []byte, texts int) ([][]float64, int64, error) {
	var out [][]float64
	var tokens int64
	if strings.HasPrefix(m.family, "titan") {
		var a struct {
			Embedding           []float64 `json:"embedding"`
			InputTextTokenCount int64     `json:"inputTextTokenCount"`
		}
		if err := json.Unmarshal(answer, &a); err != nil || len(a.Embedding) == 0 {
			return nil, 0, fmt.Errorf("openai: Titan answer without an embedding (%v)", err)
		}
		out, tokens = [][]float64{a.Embedding}, a.InputTextTokenCount
	} else {
		var a struct {
			Embeddings json.RawMessage `json:"embeddings"`
		}
		if err := json.Unmarshal(answer, &a); err != nil {
			return nil, 0, fmt.Errorf("openai: Cohere answer: %v", err)
		}
		if err := json.Unmarshal(a.Embeddings, &out); err != nil { // embeddings_floats
			var byType struct {
				Float [][]float64 `json:"float"`
			}
			if err := json.Unmarshal(a.Embeddings, &byType); err != nil { // embeddings_by_type
				return nil, 0, fmt.Errorf("openai: Cohere answer's embeddings: %v", err)
			}
			out = byType.Float
		}
	}
	if len(out) != texts {
		return nil, 0, fmt.Errorf("openai: %d embeddings for %d texts", len(out), texts)
	}
	return out, tokens, nil
}

// EmbeddingsResponse renders vectors as OpenAI's embeddings list: floats,
// or base64 of little-endian float32s (which the OpenAI Node SDK asks for
// by default and decodes).
func EmbeddingsResponse(model string, vectors [][]float64, promptTokens int64, encoding string) []byte {
	type item struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	data := make([]item, len(vectors))
	for i, v := range vectors {
		data[i] = item{Object: "embedding", Index: i, Embedding: v}
		if encoding == "base64" {
			buf := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(float32(f)))
			}
			data[i].Embedding = base64.StdEncoding.EncodeToString(buf)
		}
	}
	b, _ := json.Marshal(map[string]any{
		"object": "list", "data": data, "model": model,
		"usage": map[string]int64{"prompt_tokens": promptTokens, "total_tokens": promptTokens},
	})
	return b
}
