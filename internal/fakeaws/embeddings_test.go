package fakeaws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"
)

const (
	titanV2ID       = "amazon.titan-embed-text-v2:0"
	titanV1ID       = "amazon.titan-embed-text-v1"
	cohereEnglishID = "cohere.embed-english-v3"
	cohereMultiID   = "cohere.embed-multilingual-v3"
	cohereV4Profile = "us.cohere.embed-v4:0"
)

// embedCall is one InvokeModel answer: body and response headers.
type embedCall struct {
	body   []byte
	header http.Header
}

func invokeEmbed(t *testing.T, client *bedrockruntime.Client, modelID, body string) embedCall {
	t.Helper()
	out, err := client.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId:     aws.String(modelID),
		ContentType: aws.String("application/json"),
		Accept:      aws.String("application/json"),
		Body:        []byte(body),
	})
	if err != nil {
		t.Fatalf("InvokeModel(%s, %s) error = %v", modelID, body, err)
	}
	if got := aws.ToString(out.ContentType); got != "application/json" {
		t.Errorf("InvokeModel(%s) ContentType = %q, want application/json", modelID, got)
	}
	raw := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response)
	return embedCall{out.Body, raw.Header}
}

// checkTokenHeaders checks the usage headers of an embedding answer:
// input tokens, latency, and no output-token count.
func checkTokenHeaders(t *testing.T, h http.Header, in int) {
	t.Helper()
	if got := h.Get("X-Amzn-Bedrock-Input-Token-Count"); got != fmt.Sprint(in) {
		t.Errorf("X-Amzn-Bedrock-Input-Token-Count = %q, want %d", got, in)
	}
	if got := h.Get("X-Amzn-Bedrock-Invocation-Latency"); got != "100" {
		t.Errorf("X-Amzn-Bedrock-Invocation-Latency = %q, want 100", got)
	}
	if got, ok := h["X-Amzn-Bedrock-Output-Token-Count"]; ok {
		t.Errorf("X-Amzn-Bedrock-Output-Token-Count = %q, want absent for an embedding", got)
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// cosine is the cosine similarity of a and b.
func cosine(a, b []float32) float64 {
	var dot float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
	}
	return dot / (norm(a) * norm(b))
}

func checkUnit(t *testing.T, what string, v []float32) {
	t.Helper()
	if n := norm(v); math.Abs(n-1) > 1e-4 {
		t.Errorf("%s norm = %v, want 1", what, n)
	}
}

type titanAnswer struct {
	Embedding           []float32 `json:"embedding"`
	InputTextTokenCount *int      `json:"inputTextTokenCount"`
	EmbeddingsByType    *struct {
		Float  []float32 `json:"float"`
		Binary []int     `json:"binary"`
	} `json:"embeddingsByType"`
}

func decodeTitan(t *testing.T, c embedCall) titanAnswer {
	t.Helper()
	var a titanAnswer
	dec := json.NewDecoder(strings.NewReader(string(c.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("Titan answer %.200s: %v", c.body, err)
	}
	if a.InputTextTokenCount == nil {
		t.Fatalf("Titan answer %.200s has no inputTextTokenCount", c.body)
	}
	return a
}

func TestEmbeddingsTitanV2(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "alice@acme.org", map[string]string{"team": "search"}))
	const text = "the quick brown fox jumps"

	c256 := invokeEmbed(t, client, titanV2ID, `{"inputText":"`+text+`","dimensions":256}`)
	checkTokenHeaders(t, c256.header, 5)
	a256 := decodeTitan(t, c256)
	if len(a256.Embedding) != 256 || *a256.InputTextTokenCount != 5 {
		t.Fatalf("dimensions 256: %d floats, inputTextTokenCount %d; want 256, 5", len(a256.Embedding), *a256.InputTextTokenCount)
	}
	checkUnit(t, "dimensions 256 embedding", a256.Embedding)
	if a256.EmbeddingsByType == nil || !cmp.Equal(a256.EmbeddingsByType.Float, a256.Embedding) || a256.EmbeddingsByType.Binary != nil {
		t.Errorf("embeddingsByType = %+v, want only float, equal to embedding", a256.EmbeddingsByType)
	}

	def := decodeTitan(t, invokeEmbed(t, client, titanV2ID, `{"inputText":"`+text+`"}`))
	if len(def.Embedding) != 1024 {
		t.Fatalf("default dimensions: %d floats, want 1024", len(def.Embedding))
	}
	checkUnit(t, "default embedding", def.Embedding)
	// Matryoshka: 256 dimensions are the first 256 of 1024, renormalized.
	if c := cosine(def.Embedding[:256], a256.Embedding); c < 0.9999 {
		t.Errorf("cosine(first 256 of 1024, 256) = %v, want 1", c)
	}

	again := decodeTitan(t, invokeEmbed(t, client, titanV2ID, `{"inputText":"`+text+`","dimensions":1024,"normalize":true}`))
	if !cmp.Equal(again.Embedding, def.Embedding) {
		t.Error("same text and dimensions gave a different vector")
	}
	other := decodeTitan(t, invokeEmbed(t, client, titanV2ID, `{"inputText":"a slow green turtle"}`))
	if c := cosine(other.Embedding, def.Embedding); c > 0.5 {
		t.Errorf("cosine(different texts) = %v, want them unrelated", c)
	}

	raw := decodeTitan(t, invokeEmbed(t, client, titanV2ID, `{"inputText":"`+text+`","normalize":false}`))
	if n := norm(raw.Embedding); math.Abs(n-1) < 0.1 {
		t.Errorf("normalize false: norm = %v, want not unit", n)
	}
	if c := cosine(raw.Embedding, def.Embedding); c < 0.9999 {
		t.Errorf("normalize false: cosine with the normalized vector = %v, want 1", c)
	}

	both := decodeTitan(t, invokeEmbed(t, client, titanV2ID, `{"inputText":"`+text+`","dimensions":512,"embeddingTypes":["binary","float"]}`))
	bt := both.EmbeddingsByType
	if bt == nil || len(bt.Float) != 512 || len(bt.Binary) != 512 || !cmp.Equal(bt.Float, both.Embedding) {
		t.Fatalf("embeddingTypes binary+float: %+v", bt)
	}
	for i, b := range bt.Binary {
		if want := map[bool]int{true: 1, false: 0}[bt.Float[i] > 0]; b != want {
			t.Fatalf("binary[%d] = %d with float %v, want %d", i, b, bt.Float[i], want)
		}
	}
	bin := decodeTitan(t, invokeEmbed(t, client, titanV2ID, `{"inputText":"x","embeddingTypes":["binary"]}`))
	if bin.EmbeddingsByType == nil || bin.EmbeddingsByType.Float != nil || len(bin.EmbeddingsByType.Binary) != 1024 || len(bin.Embedding) != 1024 {
		t.Errorf("embeddingTypes binary: embedding %d floats, embeddingsByType %+v; want 1024 floats and only binary", len(bin.Embedding), bin.EmbeddingsByType)
	}
	if *bin.InputTextTokenCount != 1 {
		t.Errorf("one-word inputTextTokenCount = %d, want 1", *bin.InputTextTokenCount)
	}
	ws := decodeTitan(t, invokeEmbed(t, client, titanV2ID, `{"inputText":"   "}`))
	if *ws.InputTextTokenCount != 1 {
		t.Errorf("blank inputTextTokenCount = %d, want at least 1", *ws.InputTextTokenCount)
	}

	invs := e.fake.Invocations()
	if len(invs) != 8 {
		t.Fatalf("%d invocations recorded, want 8", len(invs))
	}
	inv := invs[0]
	if inv.Operation != "InvokeModel" || inv.ModelID != titanV2ID || inv.Status != 200 ||
		inv.InputTokens != 5 || inv.OutputTokens != 0 || inv.SessionName != "alice@acme.org" || inv.Tags["team"] != "search" {
		t.Errorf("Invocation = %+v, want InvokeModel %s 200 with 5 input tokens billed to alice", inv, titanV2ID)
	}
	want := []BillingRow{{
		IAMPrincipal: "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice@acme.org",
		UsageType:    "USE1-" + titanV2ID + "-input-tokens",
		UsageAmount:  5*5 + 4 + 1 + 1,
		Tags:         map[string]string{"iamPrincipal/team": "search"},
	}}
	if diff := cmp.Diff(want, e.fake.BillingRows()); diff != "" {
		t.Errorf("BillingRows() mismatch (-want +got):\n%s", diff)
	}
}

func TestEmbeddingsTitanV1(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "bob", nil))
	for _, id := range []string{titanV1ID, "amazon.titan-embed-text-v1:2:8k", "amazon.titan-embed-g1-text-02"} {
		c := invokeEmbed(t, client, id, `{"inputText":"embed this text"}`)
		checkTokenHeaders(t, c.header, 3)
		a := decodeTitan(t, c)
		if len(a.Embedding) != 1536 || *a.InputTextTokenCount != 3 || a.EmbeddingsByType != nil {
			t.Errorf("%s: %d floats, inputTextTokenCount %d, embeddingsByType %v; want 1536, 3, absent", id, len(a.Embedding), *a.InputTextTokenCount, a.EmbeddingsByType)
		}
		if n := norm(a.Embedding); math.Abs(n-1) < 0.1 {
			t.Errorf("%s: norm = %v, want a raw (not normalized) vector", id, n)
		}
	}
	const bob = "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/bob"
	want := []BillingRow{
		{IAMPrincipal: bob, UsageType: "USE1-amazon.titan-embed-g1-text-02-input-tokens", UsageAmount: 3},
		{IAMPrincipal: bob, UsageType: "USE1-amazon.titan-embed-text-v1-input-tokens", UsageAmount: 3},
		{IAMPrincipal: bob, UsageType: "USE1-amazon.titan-embed-text-v1:2:8k-input-tokens", UsageAmount: 3},
	}
	if diff := cmp.Diff(want, e.fake.BillingRows()); diff != "" {
		t.Errorf("BillingRows() mismatch (-want +got):\n%s", diff)
	}
}

type cohereFloats struct {
	ID           string      `json:"id"`
	ResponseType string      `json:"response_type"`
	Embeddings   [][]float32 `json:"embeddings"`
	Texts        []string    `json:"texts"`
}

type cohereByType struct {
	ID           string `json:"id"`
	ResponseType string `json:"response_type"`
	Embeddings   struct {
		Float   [][]float32 `json:"float"`
		Int8    [][]int     `json:"int8"`
		Uint8   [][]int     `json:"uint8"`
		Binary  [][]int     `json:"binary"`
		Ubinary [][]int     `json:"ubinary"`
	} `json:"embeddings"`
	Texts []string `json:"texts"`
}

func decodeStrict(t *testing.T, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("answer %.300s: %v", body, err)
	}
}

func TestEmbeddingsCohereV3(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "carol", nil))
	texts := []string{"hello world", "the cat sat on the mat", ""}
	body := func(extra string) string {
		b, _ := json.Marshal(texts)
		return `{"texts":` + string(b) + `,"input_type":"search_document"` + extra + `}`
	}

	c := invokeEmbed(t, client, cohereEnglishID, body(""))
	checkTokenHeaders(t, c.header, 8)
	var f cohereFloats
	decodeStrict(t, c.body, &f)
	if f.ResponseType != "embeddings_floats" || len(f.ID) != 36 || !cmp.Equal(f.Texts, texts) || len(f.Embeddings) != 3 {
		t.Fatalf("floats answer: response_type %q, id %q, texts %q, %d embeddings", f.ResponseType, f.ID, f.Texts, len(f.Embeddings))
	}
	for i, v := range f.Embeddings {
		if len(v) != 1024 {
			t.Errorf("embeddings[%d] has %d floats, want 1024", i, len(v))
		}
		checkUnit(t, fmt.Sprintf("embeddings[%d]", i), v)
	}

	var f2 cohereFloats
	decodeStrict(t, invokeEmbed(t, client, cohereEnglishID, body(`,"truncate":"END"`)).body, &f2)
	if !cmp.Equal(f2.Embeddings, f.Embeddings) || f2.ID == f.ID {
		t.Error("same texts gave different vectors (or the same response id)")
	}
	var q cohereFloats
	decodeStrict(t, invokeEmbed(t, client, cohereEnglishID, `{"texts":["hello world"],"input_type":"search_query"}`).body, &q)
	if cmp.Equal(q.Embeddings[0], f.Embeddings[0]) {
		t.Error("search_query and search_document embeddings of the same text are equal, want them to differ")
	}
	var m cohereFloats
	decodeStrict(t, invokeEmbed(t, client, cohereMultiID, body("")).body, &m)
	if len(m.Embeddings) != 3 || len(m.Embeddings[0]) != 1024 || cmp.Equal(m.Embeddings[0], f.Embeddings[0]) {
		t.Error("multilingual model: want 3 vectors of 1024, different from the English model's")
	}

	bc := invokeEmbed(t, client, cohereEnglishID, body(`,"embedding_types":["float","int8","uint8","binary","ubinary"]`))
	checkTokenHeaders(t, bc.header, 8)
	var bt cohereByType
	decodeStrict(t, bc.body, &bt)
	if bt.ResponseType != "embeddings_by_type" || !cmp.Equal(bt.Texts, texts) {
		t.Fatalf("by-type answer: response_type %q, texts %q", bt.ResponseType, bt.Texts)
	}
	if !cmp.Equal(bt.Embeddings.Float, f.Embeddings) {
		t.Error("embeddings.float differs from the embeddings_floats answer")
	}
	for i := range texts {
		if len(bt.Embeddings.Int8[i]) != 1024 || len(bt.Embeddings.Uint8[i]) != 1024 || len(bt.Embeddings.Binary[i]) != 128 || len(bt.Embeddings.Ubinary[i]) != 128 {
			t.Fatalf("embedding %d: int8 %d, uint8 %d, binary %d, ubinary %d values; want 1024, 1024, 128, 128", i,
				len(bt.Embeddings.Int8[i]), len(bt.Embeddings.Uint8[i]), len(bt.Embeddings.Binary[i]), len(bt.Embeddings.Ubinary[i]))
		}
		for j, x := range bt.Embeddings.Int8[i] {
			fl := bt.Embeddings.Float[i][j]
			if x < -128 || x > 127 || bt.Embeddings.Uint8[i][j] != x+128 || (fl > 0.01 && x <= 0) || (fl < -0.01 && x >= 0) {
				t.Fatalf("embedding %d dim %d: float %v, int8 %d, uint8 %d", i, j, fl, x, bt.Embeddings.Uint8[i][j])
			}
		}
		for k, u := range bt.Embeddings.Ubinary[i] {
			if u < 0 || u > 255 || bt.Embeddings.Binary[i][k] != u-128 {
				t.Fatalf("embedding %d byte %d: ubinary %d, binary %d", i, k, u, bt.Embeddings.Binary[i][k])
			}
			for bit := range 8 {
				if set, pos := u&(1<<(7-bit)) != 0, bt.Embeddings.Float[i][k*8+bit] > 0; set != pos {
					t.Fatalf("embedding %d dim %d: bit %v, float %v", i, k*8+bit, set, bt.Embeddings.Float[i][k*8+bit])
				}
			}
		}
	}
	var only cohereByType
	decodeStrict(t, invokeEmbed(t, client, cohereEnglishID, body(`,"embedding_types":["int8"]`)).body, &only)
	if only.Embeddings.Float != nil || len(only.Embeddings.Int8) != 3 {
		t.Errorf("embedding_types [int8]: want only int8 vectors, got float %d, int8 %d", len(only.Embeddings.Float), len(only.Embeddings.Int8))
	}

	invs := e.fake.Invocations()
	if inv := invs[0]; inv.Operation != "InvokeModel" || inv.ModelID != cohereEnglishID || inv.InputTokens != 8 || inv.OutputTokens != 0 || inv.Status != 200 {
		t.Errorf("Invocation = %+v, want InvokeModel %s with 8 input tokens", inv, cohereEnglishID)
	}
	want := []BillingRow{
		{IAMPrincipal: "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/carol", UsageType: "USE1-" + cohereEnglishID + "-input-tokens", UsageAmount: 8 + 8 + 2 + 8 + 8},
		{IAMPrincipal: "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/carol", UsageType: "USE1-" + cohereMultiID + "-input-tokens", UsageAmount: 8},
	}
	if diff := cmp.Diff(want, e.fake.BillingRows()); diff != "" {
		t.Errorf("BillingRows() mismatch (-want +got):\n%s", diff)
	}
}

func TestEmbeddingsCohereV4(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "dave", nil))
	texts := `["sunny day at the beach","rainy night"]`

	c := invokeEmbed(t, client, cohereV4Profile, `{"texts":`+texts+`,"input_type":"search_document"}`)
	checkTokenHeaders(t, c.header, 7)
	var def cohereByType
	decodeStrict(t, c.body, &def)
	if def.ResponseType != "embeddings_by_type" || len(def.Embeddings.Float) != 2 || len(def.Embeddings.Float[0]) != 1536 || def.Embeddings.Int8 != nil {
		t.Fatalf("default answer: response_type %q, %d float vectors", def.ResponseType, len(def.Embeddings.Float))
	}
	checkUnit(t, "v4 default", def.Embeddings.Float[0])

	var d256 cohereByType
	decodeStrict(t, invokeEmbed(t, client, "global.cohere.embed-v4:0",
		`{"texts":`+texts+`,"input_type":"search_document","embedding_types":["float"],"output_dimension":256,"truncate":"RIGHT","max_tokens":3}`).body, &d256)
	if len(d256.Embeddings.Float[1]) != 256 {
		t.Fatalf("output_dimension 256: %d floats", len(d256.Embeddings.Float[1]))
	}
	checkUnit(t, "v4 256", d256.Embeddings.Float[1])
	if cs := cosine(def.Embeddings.Float[1][:256], d256.Embeddings.Float[1]); cs < 0.9999 {
		t.Errorf("cosine(first 256 of 1536, 256) = %v, want 1", cs)
	}
	var arn cohereByType
	decodeStrict(t, invokeEmbed(t, client, "arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-v4:0", `{"texts":`+texts+`,"input_type":"search_document"}`).body, &arn)
	if !cmp.Equal(arn.Embeddings.Float, def.Embeddings.Float) {
		t.Error("foundation-model ARN and inference profile gave different vectors for the same request")
	}

	want := []BillingRow{
		{IAMPrincipal: "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/dave", UsageType: "USE1-arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-v4:0-input-tokens", UsageAmount: 7},
		{IAMPrincipal: "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/dave", UsageType: "USE1-global.cohere.embed-v4:0-input-tokens", UsageAmount: 3 + 2}, // max_tokens 3 caps the first text
		{IAMPrincipal: "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/dave", UsageType: "USE1-us.cohere.embed-v4:0-input-tokens", UsageAmount: 7},
	}
	if diff := cmp.Diff(want, e.fake.BillingRows()); diff != "" {
		t.Errorf("BillingRows() mismatch (-want +got):\n%s", diff)
	}
}

func TestEmbeddingsRequestMetadata(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "erin", nil))
	_, err := client.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId:         aws.String(titanV2ID),
		Body:            []byte(`{"inputText":"hi"}`),
		RequestMetadata: aws.String(`{"user":"erin"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.fake.Invocations()[0].RequestMetadata; !cmp.Equal(got, map[string]string{"user": "erin"}) {
		t.Errorf("RequestMetadata = %v, want user=erin", got)
	}
}

func TestEmbeddingsValidation(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "frank", nil))
	malformedMsg := func(detail string) string {
		return "Malformed input request: " + detail + ", please reformat your input and try again."
	}
	many := `["` + strings.Repeat(`x","`, 96) + `x"]`
	tests := []struct {
		name, model, body, wantMsg string
	}{
		{"titan v2 missing inputText", titanV2ID, `{"dimensions":256}`, malformedMsg("#: required key [inputText] not found")},
		{"titan v2 dimensions not allowed", titanV2ID, `{"inputText":"hi","dimensions":100}`, malformedMsg("#/dimensions: 100 is not a valid enum value")},
		{"titan v2 dimensions not an integer", titanV2ID, `{"inputText":"hi","dimensions":"256"}`, malformedMsg("#/dimensions: expected type: Integer, found: String")},
		{"titan v2 empty inputText", titanV2ID, `{"inputText":""}`, malformedMsg("#/inputText: expected minLength: 1, actual: 0")},
		{"titan v2 inputText not a string", titanV2ID, `{"inputText":["a"]}`, malformedMsg("#/inputText: expected type: String, found: JSONArray")},
		{"titan v2 normalize not a boolean", titanV2ID, `{"inputText":"hi","normalize":"yes"}`, malformedMsg("#/normalize: expected type: Boolean, found: String")},
		{"titan v2 bad embeddingTypes", titanV2ID, `{"inputText":"hi","embeddingTypes":["int8"]}`, malformedMsg("#/embeddingTypes/0: int8 is not a valid enum value")},
		{"titan v2 empty embeddingTypes", titanV2ID, `{"inputText":"hi","embeddingTypes":[]}`, malformedMsg("#/embeddingTypes: expected minimum item count: 1, found: 0")},
		{"titan v2 Cohere body", titanV2ID, `{"texts":["hi"]}`, malformedMsg("2 schema violations found")},
		{"titan v2 not JSON", titanV2ID, `hello`, malformedMsg("#: expected a JSON document")},
		{"titan v2 not an object", titanV2ID, `["hi"]`, malformedMsg("#: expected type: JSONObject, found: JSONArray")},
		{"titan v2 too many tokens", titanV2ID, `{"inputText":"` + strings.Repeat("w ", 8193) + `"}`, "400 Bad Request: Too many input tokens. Max input tokens: 8192, request input token count: 8193"},
		{"titan v1 dimensions", titanV1ID, `{"inputText":"hi","dimensions":256}`, malformedMsg("#: extraneous key [dimensions] is not permitted")},
		{"cohere v3 more than 96 texts", cohereEnglishID, `{"texts":` + many + `,"input_type":"search_query"}`, malformedMsg("#/texts: expected maximum item count: 96, found: 97")},
		{"cohere v3 missing input_type", cohereEnglishID, `{"texts":["hi"]}`, malformedMsg("#: required key [input_type] not found")},
		{"cohere v3 empty texts", cohereMultiID, `{"texts":[],"input_type":"search_query"}`, malformedMsg("#/texts: expected minimum item count: 1, found: 0")},
		{"cohere v3 missing texts", cohereEnglishID, `{"input_type":"search_query"}`, malformedMsg("#: required key [texts] not found")},
		{"cohere v3 text too long", cohereEnglishID, `{"texts":["` + strings.Repeat("a", 2049) + `"],"input_type":"search_query"}`, malformedMsg("#/texts/0: expected maxLength: 2048, actual: 2049")},
		{"cohere v3 bad input_type", cohereEnglishID, `{"texts":["hi"],"input_type":"query"}`, malformedMsg("#/input_type: query is not a valid enum value")},
		{"cohere v3 bad truncate", cohereEnglishID, `{"texts":["hi"],"input_type":"clustering","truncate":"RIGHT"}`, malformedMsg("#/truncate: RIGHT is not a valid enum value")},
		{"cohere v3 base64 type", cohereEnglishID, `{"texts":["hi"],"input_type":"classification","embedding_types":["base64"]}`, malformedMsg("#/embedding_types/0: base64 is not a valid enum value")},
		{"cohere v3 output_dimension", cohereEnglishID, `{"texts":["hi"],"input_type":"classification","output_dimension":256}`, malformedMsg("#: extraneous key [output_dimension] is not permitted")},
		{"cohere v3 images", cohereEnglishID, `{"images":["data:image/png;base64,AAAA"],"input_type":"search_document"}`, malformedMsg("2 schema violations found")},
		{"cohere v4 missing input_type", cohereV4Profile, `{"texts":["hi"]}`, cohereV4Malformed},
		{"cohere v4 output_dimension not allowed", cohereV4Profile, `{"texts":["hi"],"input_type":"search_query","output_dimension":768}`, cohereV4Malformed},
		{"cohere v4 more than 96 texts", cohereV4Profile, `{"texts":` + many + `,"input_type":"search_query"}`, cohereV4Malformed},
		{"cohere v4 Titan body", cohereV4Profile, `{"inputText":"hi"}`, cohereV4Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(e.fake.Invocations())
			_, err := client.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
				ModelId: aws.String(tt.model),
				Body:    []byte(tt.body),
			})
			if err == nil {
				t.Fatal("InvokeModel succeeded, want ValidationException")
			}
			code, status := apiError(t, err)
			var ae smithy.APIError
			errors.As(err, &ae)
			if code != "ValidationException" || status != 400 || ae.ErrorMessage() != tt.wantMsg {
				t.Errorf("error = %s %d %q, want ValidationException 400 %q", code, status, ae.ErrorMessage(), tt.wantMsg)
			}
			invs := e.fake.Invocations()
			if len(invs) != n+1 || invs[n].Status != 400 || invs[n].InputTokens != 0 || invs[n].ModelID != tt.model {
				t.Errorf("recorded %+v, want one InvokeModel with status 400 and no tokens", invs[n:])
			}
		})
	}
	if rows := e.fake.BillingRows(); len(rows) != 0 {
		t.Errorf("BillingRows() = %v, want none for refused calls", rows)
	}
}

// TestEmbeddingsOtherModelsUnchanged checks that only the embedding
// models take the embedding path: a Titan text model and an embedding
// family the fake does not emulate keep the generic InvokeModel answer.
func TestEmbeddingsOtherModelsUnchanged(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "gina", nil))
	for _, id := range []string{"amazon.titan-text-express-v1", "amazon.titan-embed-image-v1"} {
		c := invokeEmbed(t, client, id, `{"inputText":"a b c"}`)
		if got, want := string(c.body), `{"outputText":"Hello from emulated Bedrock"}`; got != want {
			t.Errorf("%s body = %s, want %s", id, got, want)
		}
		if got := c.header.Get("X-Amzn-Bedrock-Output-Token-Count"); got != "4" {
			t.Errorf("%s output tokens = %q, want 4", id, got)
		}
	}
}
