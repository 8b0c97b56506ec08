package fakeaws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/google/go-cmp/cmp"
)

func TestRequestMetadataRecorded(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "alice", nil))
	ctx := context.Background()
	md := map[string]string{"gateway:user": "alice@acme.org", "team": "data science", "empty": "", "x-y.z": "a/b+c=d,e#f$g@h"}
	header := string(mustJSON(md))

	if _, err := client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: userText("hi"), RequestMetadata: md}); err != nil {
		t.Fatalf("Converse error = %v", err)
	}
	cs, err := client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String("m"), Messages: userText("hi"), RequestMetadata: md})
	if err != nil {
		t.Fatalf("ConverseStream error = %v", err)
	}
	for range cs.GetStream().Events() {
	}
	cs.GetStream().Close()
	if _, err := client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(claudeProfileID), Body: []byte(anthropicBody), RequestMetadata: aws.String(header)}); err != nil {
		t.Fatalf("InvokeModel error = %v", err)
	}
	is, err := client.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{ModelId: aws.String("m"), Body: []byte(`{"inputText":"hi"}`), RequestMetadata: aws.String(header)})
	if err != nil {
		t.Fatalf("InvokeModelWithResponseStream error = %v", err)
	}
	for range is.GetStream().Events() {
	}
	is.GetStream().Close()
	if _, err := client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: userText("hi")}); err != nil {
		t.Fatalf("Converse error = %v", err)
	}

	invs := e.fake.Invocations()
	if len(invs) != 5 {
		t.Fatalf("Invocations() has %d entries, want 5", len(invs))
	}
	for _, inv := range invs[:4] {
		if diff := cmp.Diff(md, inv.RequestMetadata); diff != "" {
			t.Errorf("%s RequestMetadata mismatch (-want +got):\n%s", inv.Operation, diff)
		}
	}
	if got := invs[4].RequestMetadata; got != nil {
		t.Errorf("Converse without metadata recorded %v, want nil", got)
	}
	// Invocations returns copies.
	invs[0].RequestMetadata["team"] = "changed"
	if got := e.fake.Invocations()[0].RequestMetadata["team"]; got != "data science" {
		t.Errorf("Invocations() shares RequestMetadata with the caller: team = %q", got)
	}
}

func TestRequestMetadataValidation(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice", nil)
	client := e.bedrockClient(t, creds)
	ctx := context.Background()
	const secretish = "s3cr3t-value"
	many := map[string]string{}
	for i := range 17 {
		many[fmt.Sprintf("k%d", i)] = secretish
	}
	sixteen := map[string]string{}
	for i := range 16 {
		sixteen[fmt.Sprintf("k%d", i)] = strings.Repeat("v", 256)
	}
	tests := []struct {
		name string
		md   map[string]string
		ok   bool
	}{
		{"16 entries of 256-character values", sixteen, true},
		{"256-character key", map[string]string{strings.Repeat("k", 256): "v"}, true},
		{"whitespace is allowed", map[string]string{"a b": "c\td"}, true},
		{"17 entries", many, false},
		{"empty map", map[string]string{}, false},
		{"empty key", map[string]string{"": secretish}, false},
		{"257-character key", map[string]string{strings.Repeat("k", 257): secretish}, false},
		{"257-character value", map[string]string{"k": strings.Repeat("v", 257)}, false},
		{"'!' in key", map[string]string{"a!": secretish}, false},
		{"non-ASCII value", map[string]string{"k": secretish + "é"}, false},
		{"quote in value", map[string]string{"k": secretish + `"`}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: userText("hi"), RequestMetadata: tt.md})
			checkMetadataResult(t, "Converse", err, tt.ok, secretish)
			_, err = client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String("m"), Body: []byte(`{}`), RequestMetadata: aws.String(string(mustJSON(tt.md)))})
			checkMetadataResult(t, "InvokeModel", err, tt.ok, secretish)
		})
	}

	for _, tt := range []struct{ name, header string }{
		{"not JSON", "team=ml"},
		{"JSON array", `["a"]`},
		{"JSON null", `null`},
		{"number value", `{"a":1}`},
		{"over 8500 characters", `{"k":"` + strings.Repeat("v", 8500) + `"}`},
	} {
		t.Run("header "+tt.name, func(t *testing.T) {
			_, err := client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String("m"), Body: []byte(`{}`), RequestMetadata: aws.String(tt.header)})
			checkMetadataResult(t, "InvokeModel", err, false, secretish)
		})
	}
	t.Run("header sent twice", func(t *testing.T) {
		req := signedRequestWith(t, "POST", e.br.URL+"/model/m/invoke", []byte(`{}`), creds, http.Header{
			"X-Amzn-Bedrock-Request-Metadata": {`{"a":"b"}`, `{"c":"d"}`},
		})
		resp, body := do(t, req)
		if resp.StatusCode != 400 {
			t.Errorf("InvokeModel with two metadata headers = %d %s, want 400", resp.StatusCode, body)
		}
	})
	t.Run("body member not a map of strings", func(t *testing.T) {
		resp, body := do(t, signedRequest(t, "POST", e.br.URL+"/model/m/converse",
			[]byte(`{"messages":[{"role":"user","content":[{"text":"hi"}]}],"requestMetadata":{"a":["b"]}}`), creds, "bedrock", "us-east-1", time.Now()))
		if resp.StatusCode != 400 {
			t.Errorf("Converse with requestMetadata {a:[b]} = %d %s, want 400", resp.StatusCode, body)
		}
	})
	t.Run("null body member is absent", func(t *testing.T) {
		resp, body := do(t, signedRequest(t, "POST", e.br.URL+"/model/m/converse",
			[]byte(`{"messages":[{"role":"user","content":[{"text":"hi"}]}],"requestMetadata":null}`), creds, "bedrock", "us-east-1", time.Now()))
		if resp.StatusCode != 200 {
			t.Errorf("Converse with requestMetadata null = %d %s, want 200", resp.StatusCode, body)
		}
	})

	for _, inv := range e.fake.Invocations() {
		if inv.Status != 200 && inv.RequestMetadata != nil {
			t.Errorf("refused %s recorded RequestMetadata %v, want nil", inv.Operation, inv.RequestMetadata)
		}
	}
}

func checkMetadataResult(t *testing.T, op string, err error, ok bool, secret string) {
	t.Helper()
	if ok {
		if err != nil {
			t.Errorf("%s error = %v, want success", op, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s succeeded, want ValidationException", op)
	}
	if code, status := apiError(t, err); code != "ValidationException" || status != 400 {
		t.Errorf("%s error = %s (HTTP %d), want ValidationException (HTTP 400)", op, code, status)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("%s error %q echoes request metadata", op, err)
	}
}

// signedRequestWith builds a Bedrock request carrying extra headers and
// signs it with the SDK signer.
func signedRequestWith(t *testing.T, method, url string, body []byte, creds aws.Credentials, extra http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range extra {
		req.Header[k] = vs
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "bedrock", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestParseMetadataHeader(t *testing.T) {
	tests := []struct {
		header []string
		want   map[string]string
		ok     bool
	}{
		{nil, nil, true},
		{[]string{`{"a":"b"}`}, map[string]string{"a": "b"}, true},
		{[]string{`{"a":""}`}, map[string]string{"a": ""}, true},
		{[]string{`{}`}, nil, false},
		{[]string{`{"a":"b"}`, `{"a":"b"}`}, nil, false},
		{[]string{``}, nil, false},
		{[]string{`{"a":"b"} x`}, nil, false},
		{[]string{`{"a":{"b":"c"}}`}, nil, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.header {
			h.Add(requestMetadataHeader, v)
		}
		got, e := parseMetadataHeader(h)
		if (e == nil) != tt.ok || !cmp.Equal(got, tt.want) {
			t.Errorf("parseMetadataHeader(%q) = %v, %v; want %v, ok %v", tt.header, got, e, tt.want, tt.ok)
		}
	}
}

func FuzzParseMetadataHeader(f *testing.F) {
	f.Add(`{"gateway:user":"alice@acme.org","team":"ml"}`)
	f.Add(`{"":"x"}`)
	f.Add(`{"a":"` + strings.Repeat("b", 257) + `"}`)
	f.Add(`[1,2]`)
	f.Add(`{"a\u0000":"b"}`)
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set(requestMetadataHeader, v)
		md, e := parseMetadataHeader(h)
		if e != nil {
			if md != nil || e.status != 400 || e.typ != "ValidationException" {
				t.Fatalf("parseMetadataHeader(%q) = %v, %v; want nil and a ValidationException", v, md, e)
			}
			return
		}
		if len(md) < 1 || len(md) > maxRequestMetadataEntries {
			t.Fatalf("parseMetadataHeader(%q) accepted %d entries", v, len(md))
		}
		for k, val := range md {
			if !validMetadataString(k, 1, 256) || !validMetadataString(val, 0, 256) {
				t.Fatalf("parseMetadataHeader(%q) accepted %q: %q", v, k, val)
			}
		}
		// What was accepted round-trips through JSON.
		var again map[string]string
		if err := json.Unmarshal(mustJSON(md), &again); err != nil || !cmp.Equal(again, md) {
			t.Fatalf("accepted metadata %v does not round-trip: %v", md, err)
		}
	})
}
