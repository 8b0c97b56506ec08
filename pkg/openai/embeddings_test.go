package openai

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseEmbeddingsRequest(t *testing.T) {
	ok := []struct {
		body string
		want EmbeddingsRequest
	}{
		{`{"model":"m","input":"hello"}`, EmbeddingsRequest{Model: "m", Input: []string{"hello"}, EncodingFormat: "float"}},
		{`{"model":"m","input":["a","b"],"encoding_format":"base64","dimensions":256,"user":"u"}`,
			EmbeddingsRequest{Model: "m", Input: []string{"a", "b"}, EncodingFormat: "base64", Dimensions: 256}},
	}
	for _, tt := range ok {
		got, err := ParseEmbeddingsRequest([]byte(tt.body))
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		if diff := cmp.Diff(&tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.body, diff)
		}
	}
	bad := []struct{ body, param, code string }{
		{`{`, "", "invalid_json"},
		{`{"input":"x"}`, "model", "missing_required_parameter"},
		{`{"model":"m"}`, "input", "missing_required_parameter"},
		{`{"model":"m","input":[1,2,3]}`, "input[0]", "unsupported_value"},
		{`{"model":"m","input":[]}`, "input", "invalid_value"},
		{`{"model":"m","input":" "}`, "input[0]", "invalid_value"},
		{`{"model":"m","input":"x","encoding_format":"hex"}`, "encoding_format", "invalid_value"},
		{`{"model":"m","input":"x","dimensions":0}`, "dimensions", "invalid_value"},
		{`{"model":"m","input":"x","dimensions":1.5}`, "dimensions", ""},
		{`{"model":"m","input":"x","extra":1}`, "", ""},
	}
	for _, tt := range bad {
		_, err := ParseEmbeddingsRequest([]byte(tt.body))
		var re *RequestError
		if !errors.As(err, &re) || (tt.code != "" && (re.Code != tt.code || re.Param != tt.param)) {
			t.Errorf("%s: error %v, want *RequestError %s %s", tt.body, err, tt.param, tt.code)
		}
	}
}

func TestEmbeddingModels(t *testing.T) {
	for _, tt := range []struct {
		id         string
		batch      int
		dims       int
		wantBody   string
		wantRefuse bool
	}{
		{"amazon.titan-embed-text-v2:0", 1, 256, `{"dimensions":256,"inputText":"a","normalize":true}`, false},
		{"us.amazon.titan-embed-text-v2:0", 1, 0, `{"inputText":"a","normalize":true}`, false},
		{"amazon.titan-embed-text-v2:0", 1, 300, "", true},
		{"amazon.titan-embed-text-v1", 1, 0, `{"inputText":"a"}`, false},
		{"cohere.embed-english-v3", 96, 0, `{"input_type":"search_document","texts":["a"]}`, false},
		{"cohere.embed-multilingual-v3", 96, 512, "", true},
		{"global.cohere.embed-v4:0", 96, 1536, `{"embedding_types":["float"],"input_type":"search_document","output_dimension":1536,"texts":["a"]}`, false},
	} {
		m, ok := LookupEmbeddingModel(tt.id)
		if !ok || m.Batch() != tt.batch {
			t.Errorf("%s: lookup %v, batch %d; want %d", tt.id, ok, m.Batch(), tt.batch)
			continue
		}
		b, err := m.InvokeBody([]string{"a"}, tt.dims)
		if (err != nil) != tt.wantRefuse || (err == nil && string(b) != tt.wantBody) {
			t.Errorf("%s dims %d: body %s, err %v", tt.id, tt.dims, b, err)
		}
	}
	for _, id := range []string{"anthropic.claude-3-haiku-20240307-v1:0", "amazon.titan-text-express-v1", "cohere.command-r-v1:0"} {
		if _, ok := LookupEmbeddingModel(id); ok {
			t.Errorf("%s is taken for an embedding model", id)
		}
	}
}

func TestEmbeddingVectorsAndResponse(t *testing.T) {
	titan, _ := LookupEmbeddingModel("amazon.titan-embed-text-v2:0")
	v, n, err := titan.Vectors([]byte(`{"embedding":[0.5,-0.25],"inputTextTokenCount":3}`), 1)
	if err != nil || n != 3 || !cmp.Equal(v, [][]float64{{0.5, -0.25}}) {
		t.Errorf("titan: %v %d %v", v, n, err)
	}
	cohere, _ := LookupEmbeddingModel("cohere.embed-english-v3")
	for _, answer := range []string{`{"embeddings":[[1,2],[3,4]],"response_type":"embeddings_floats"}`,
		`{"embeddings":{"float":[[1,2],[3,4]]},"response_type":"embeddings_by_type"}`} {
		if v, _, err := cohere.Vectors([]byte(answer), 2); err != nil || !cmp.Equal(v, [][]float64{{1, 2}, {3, 4}}) {
			t.Errorf("cohere %s: %v %v", answer, v, err)
		}
	}
	if _, _, err := cohere.Vectors([]byte(`{"embeddings":[[1,2]]}`), 2); err == nil {
		t.Error("one embedding for two texts was accepted")
	}

	var out struct {
		Object string
		Model  string
		Data   []struct {
			Object    string
			Index     int
			Embedding json.RawMessage
		}
		Usage struct {
			Prompt int64 `json:"prompt_tokens"`
			Total  int64 `json:"total_tokens"`
		}
	}
	vecs := [][]float64{{0.5, -0.25}, {1, 2}}
	if err := json.Unmarshal(EmbeddingsResponse("fast", vecs, 7, "float"), &out); err != nil ||
		out.Object != "list" || out.Model != "fast" || len(out.Data) != 2 || out.Data[1].Index != 1 || out.Usage.Total != 7 ||
		string(out.Data[0].Embedding) != "[0.5,-0.25]" {
		t.Errorf("float response = %+v (%v)", out, err)
	}
	if err := json.Unmarshal(EmbeddingsResponse("fast", vecs, 7, "base64"), &out); err != nil {
		t.Fatal(err)
	}
	var s string
	json.Unmarshal(out.Data[0].Embedding, &s)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 8 || math.Float32frombits(binary.LittleEndian.Uint32(raw[4:])) != -0.25 {
		t.Errorf("base64 embedding %q decodes to %v (%v)", s, raw, err)
	}
	if strings.Contains(s, "[") {
		t.Error("base64 embedding is a list")
	}
}

// FuzzEmbeddingsRequest: any body is accepted as a request with texts or
// refused with a *RequestError; it never panics.
func FuzzEmbeddingsRequest(f *testing.F) {
	for _, s := range []string{`{"model":"m","input":"hello"}`, `{"model":"m","input":["a","b"],"dimensions":256}`,
		`{"model":"m","input":[[1,2]]}`, `{"model":"m","input":"x","encoding_format":"base64"}`, `[]`, `{"model":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseEmbeddingsRequest(body)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) || re.Code == "" {
				t.Fatalf("error %v is not a *RequestError with a code", err)
			}
			return
		}
		if r.Model == "" || len(r.Input) == 0 || (r.EncodingFormat != "float" && r.EncodingFormat != "base64") {
			t.Fatalf("accepted %q as %+v", body, r)
		}
	})
}
