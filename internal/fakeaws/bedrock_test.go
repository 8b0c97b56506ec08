package fakeaws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/bedrock-gateway/gateway/internal/memnet"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const anthropicBody = `{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,"system":"be brief","messages":[{"role":"user","content":"hi there"},{"role":"assistant","content":[{"type":"text","text":"yes?"}]},{"role":"user","content":[{"type":"text","text":"tell me more"}]}]}`

func userText(s string) []types.Message {
	return []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: s}}}}
}

func TestBedrockOperations(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	sessionTags := map[string]string{"team": "data-science", "tenant": "acme"}
	creds := e.session(t, "alice@acme.org", sessionTags)
	client := e.bedrockClient(t, creds)
	const appProfile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123def456"

	t.Run("Converse", func(t *testing.T) {
		out, err := client.Converse(ctx, &bedrockruntime.ConverseInput{
			ModelId:  aws.String(claudeProfileID),
			Messages: userText("hi there friend"),
			System:   []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "be brief"}},
		})
		if err != nil {
			t.Fatalf("Converse error = %v", err)
		}
		msg := out.Output.(*types.ConverseOutputMemberMessage).Value
		if got := msg.Content[0].(*types.ContentBlockMemberText).Value; got != "Hello from emulated Bedrock" {
			t.Errorf("Converse text = %q, want %q", got, "Hello from emulated Bedrock")
		}
		if out.StopReason != types.StopReasonEndTurn {
			t.Errorf("Converse stopReason = %q, want end_turn", out.StopReason)
		}
		want := &types.TokenUsage{InputTokens: aws.Int32(5), OutputTokens: aws.Int32(4), TotalTokens: aws.Int32(9)}
		if diff := cmp.Diff(want, out.Usage, cmpopts.IgnoreUnexported(types.TokenUsage{})); diff != "" {
			t.Errorf("Converse usage mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("Converse maxTokens", func(t *testing.T) {
		out, err := client.Converse(ctx, &bedrockruntime.ConverseInput{
			ModelId:         aws.String(claudeProfileID),
			Messages:        userText("hi"),
			InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(2)},
		})
		if err != nil {
			t.Fatalf("Converse error = %v", err)
		}
		if out.StopReason != types.StopReasonMaxTokens || aws.ToInt32(out.Usage.OutputTokens) != 2 {
			t.Errorf("Converse(maxTokens 2) = %q, %d output tokens; want max_tokens, 2", out.StopReason, aws.ToInt32(out.Usage.OutputTokens))
		}
	})

	t.Run("ConverseStream", func(t *testing.T) {
		out, err := client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
			ModelId:  aws.String(claudeProfileID),
			Messages: userText("one two three"),
		})
		if err != nil {
			t.Fatalf("ConverseStream error = %v", err)
		}
		stream := out.GetStream()
		defer stream.Close()
		var kinds []string
		var text strings.Builder
		var usage *types.TokenUsage
		for ev := range stream.Events() {
			switch v := ev.(type) {
			case *types.ConverseStreamOutputMemberMessageStart:
				kinds = append(kinds, "messageStart:"+string(v.Value.Role))
			case *types.ConverseStreamOutputMemberContentBlockDelta:
				kinds = append(kinds, "contentBlockDelta")
				text.WriteString(v.Value.Delta.(*types.ContentBlockDeltaMemberText).Value)
			case *types.ConverseStreamOutputMemberContentBlockStop:
				kinds = append(kinds, "contentBlockStop")
			case *types.ConverseStreamOutputMemberMessageStop:
				kinds = append(kinds, "messageStop:"+string(v.Value.StopReason))
			case *types.ConverseStreamOutputMemberMetadata:
				kinds = append(kinds, "metadata")
				usage = v.Value.Usage
				if aws.ToInt64(v.Value.Metrics.LatencyMs) <= 0 {
					t.Errorf("metadata latencyMs = %d, want > 0", aws.ToInt64(v.Value.Metrics.LatencyMs))
				}
			default:
				t.Errorf("unexpected event %T", ev)
			}
		}
		if err := streamErr(stream.Err()); err != nil {
			t.Fatalf("stream.Err() = %v", err)
		}
		wantKinds := []string{"messageStart:assistant", "contentBlockDelta", "contentBlockDelta", "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "messageStop:end_turn", "metadata"}
		if diff := cmp.Diff(wantKinds, kinds); diff != "" {
			t.Errorf("ConverseStream events mismatch (-want +got):\n%s", diff)
		}
		if got := text.String(); got != "Hello from emulated Bedrock" {
			t.Errorf("ConverseStream text = %q, want %q", got, "Hello from emulated Bedrock")
		}
		want := &types.TokenUsage{InputTokens: aws.Int32(3), OutputTokens: aws.Int32(4), TotalTokens: aws.Int32(7)}
		if diff := cmp.Diff(want, usage, cmpopts.IgnoreUnexported(types.TokenUsage{})); diff != "" {
			t.Errorf("ConverseStream metadata usage mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("InvokeModel Anthropic with ':' in the model ID", func(t *testing.T) {
		out, err := client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
			ModelId:     aws.String("anthropic.claude-3-5-sonnet-20241022-v2:0"),
			ContentType: aws.String("application/json"),
			Body:        []byte(anthropicBody),
		})
		if err != nil {
			t.Fatalf("InvokeModel error = %v", err)
		}
		if got := aws.ToString(out.ContentType); got != "application/json" {
			t.Errorf("InvokeModel ContentType = %q, want application/json", got)
		}
		var msg struct {
			Type       string `json:"type"`
			Role       string `json:"role"`
			StopReason string `json:"stop_reason"`
			Content    []struct{ Type, Text string }
			Usage      struct {
				InputTokens  int `json:"input_tokens"`
				OutputTokens int `json:"output_tokens"`
			}
		}
		if err := json.Unmarshal(out.Body, &msg); err != nil {
			t.Fatalf("InvokeModel body %s: %v", out.Body, err)
		}
		if msg.Type != "message" || msg.Role != "assistant" || msg.StopReason != "end_turn" ||
			len(msg.Content) != 1 || msg.Content[0].Text != "Hello from emulated Bedrock" ||
			msg.Usage.InputTokens != 8 || msg.Usage.OutputTokens != 4 {
			t.Errorf("InvokeModel body = %s, want an Anthropic message with 8 input and 4 output tokens", out.Body)
		}
		raw := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response)
		for h, want := range map[string]string{
			"X-Amzn-Bedrock-Input-Token-Count":  "8",
			"X-Amzn-Bedrock-Output-Token-Count": "4",
			"X-Amzn-Bedrock-Invocation-Latency": "100",
		} {
			if got := raw.Header.Get(h); got != want {
				t.Errorf("InvokeModel header %s = %q, want %q", h, got, want)
			}
		}
	})

	t.Run("InvokeModel generic with an ARN model ID", func(t *testing.T) {
		out, err := client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
			ModelId: aws.String(appProfile),
			Body:    []byte(`{"inputText":"a b c d e f","textGenerationConfig":{"maxTokenCount":10}}`),
		})
		if err != nil {
			t.Fatalf("InvokeModel error = %v", err)
		}
		if got, want := string(out.Body), `{"outputText":"Hello from emulated Bedrock"}`; got != want {
			t.Errorf("InvokeModel body = %s, want %s", got, want)
		}
	})

	t.Run("InvokeModelWithResponseStream", func(t *testing.T) {
		out, err := client.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
			ModelId: aws.String(claudeProfileID),
			Body:    []byte(anthropicBody),
		})
		if err != nil {
			t.Fatalf("InvokeModelWithResponseStream error = %v", err)
		}
		if got := aws.ToString(out.ContentType); got != "application/json" {
			t.Errorf("X-Amzn-Bedrock-Content-Type = %q, want application/json", got)
		}
		stream := out.GetStream()
		defer stream.Close()
		var types_ []string
		var text strings.Builder
		var metrics map[string]int64
		for ev := range stream.Events() {
			chunk, ok := ev.(*types.ResponseStreamMemberChunk)
			if !ok {
				t.Fatalf("unexpected event %T", ev)
			}
			var inner struct {
				Type  string `json:"type"`
				Delta struct {
					Text string `json:"text"`
				} `json:"delta"`
				Metrics map[string]int64 `json:"amazon-bedrock-invocationMetrics"`
			}
			if err := json.Unmarshal(chunk.Value.Bytes, &inner); err != nil {
				t.Fatalf("chunk %s: %v", chunk.Value.Bytes, err)
			}
			types_ = append(types_, inner.Type)
			text.WriteString(inner.Delta.Text)
			if inner.Metrics != nil {
				metrics = inner.Metrics
			}
		}
		if err := streamErr(stream.Err()); err != nil {
			t.Fatalf("stream.Err() = %v", err)
		}
		want := []string{"message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
		if diff := cmp.Diff(want, types_); diff != "" {
			t.Errorf("chunk types mismatch (-want +got):\n%s", diff)
		}
		if got := text.String(); got != "Hello from emulated Bedrock" {
			t.Errorf("streamed text = %q, want %q", got, "Hello from emulated Bedrock")
		}
		wantMetrics := map[string]int64{"inputTokenCount": 8, "outputTokenCount": 4, "invocationLatency": 100, "firstByteLatency": 50}
		if diff := cmp.Diff(wantMetrics, metrics); diff != "" {
			t.Errorf("amazon-bedrock-invocationMetrics mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("CountTokens", func(t *testing.T) {
		for name, input := range map[string]types.CountTokensInput{
			"converse": &types.CountTokensInputMemberConverse{Value: types.ConverseTokensRequest{Messages: userText("one two three four five six seven eight")}},
			"invoke":   &types.CountTokensInputMemberInvokeModel{Value: types.InvokeModelTokensRequest{Body: []byte(anthropicBody)}},
		} {
			out, err := client.CountTokens(ctx, &bedrockruntime.CountTokensInput{ModelId: aws.String("anthropic.claude-3-5-sonnet-20241022-v2:0"), Input: input})
			if err != nil {
				t.Fatalf("CountTokens(%s) error = %v", name, err)
			}
			if got := aws.ToInt32(out.InputTokens); got != 8 {
				t.Errorf("CountTokens(%s) = %d, want 8", name, got)
			}
		}
	})

	invs := e.fake.Invocations()
	type summary struct {
		Operation, ModelID, PrincipalARN, SessionName string
		Tags                                          map[string]string
		In, Out                                       int64
		Status                                        int
	}
	var got []summary
	for _, inv := range invs {
		got = append(got, summary{inv.Operation, inv.ModelID, inv.PrincipalARN, inv.SessionName, inv.Tags, inv.InputTokens, inv.OutputTokens, inv.Status})
		if inv.AccessKeyID != creds.AccessKeyID {
			t.Errorf("%s AccessKeyID = %q, want %q", inv.Operation, inv.AccessKeyID, creds.AccessKeyID)
		}
		if a := inv.Headers.Get("Authorization"); !strings.HasSuffix(a, "Signature=REDACTED") || !strings.Contains(a, "Credential="+creds.AccessKeyID+"/") {
			t.Errorf("%s recorded Authorization = %q, want the credential kept and the signature redacted", inv.Operation, a)
		}
		if tok := inv.Headers.Get("X-Amz-Security-Token"); tok != "REDACTED" {
			t.Errorf("%s recorded X-Amz-Security-Token = %q, want REDACTED", inv.Operation, tok)
		}
		if len(inv.Body) == 0 || len(inv.RequestID) != 36 {
			t.Errorf("%s recorded body %q, request ID %q; want both", inv.Operation, inv.Body, inv.RequestID)
		}
	}
	const principal = "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice@acme.org"
	s := func(op, model string, in, out int64) summary {
		return summary{op, model, principal, "alice@acme.org", sessionTags, in, out, 200}
	}
	want := []summary{
		s("Converse", claudeProfileID, 5, 4),
		s("Converse", claudeProfileID, 1, 2),
		s("ConverseStream", claudeProfileID, 3, 4),
		s("InvokeModel", "anthropic.claude-3-5-sonnet-20241022-v2:0", 8, 4),
		s("InvokeModel", appProfile, 6, 4),
		s("InvokeModelWithResponseStream", claudeProfileID, 8, 4),
		s("CountTokens", "anthropic.claude-3-5-sonnet-20241022-v2:0", 8, 0),
		s("CountTokens", "anthropic.claude-3-5-sonnet-20241022-v2:0", 8, 0),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Invocations() mismatch (-want +got):\n%s", diff)
	}

	billTags := map[string]string{"iamPrincipal/team": "data-science", "iamPrincipal/tenant": "acme"}
	row := func(usage string, n int64) BillingRow {
		return BillingRow{IAMPrincipal: principal, UsageType: usage, UsageAmount: n, Tags: billTags}
	}
	wantRows := []BillingRow{
		row("USE1-anthropic.claude-3-5-sonnet-20241022-v2:0-input-tokens", 8),
		row("USE1-anthropic.claude-3-5-sonnet-20241022-v2:0-output-tokens", 4),
		row("USE1-"+appProfile+"-input-tokens", 6),
		row("USE1-"+appProfile+"-output-tokens", 4),
		row("USE1-"+claudeProfileID+"-input-tokens", 5+1+3+8),
		row("USE1-"+claudeProfileID+"-output-tokens", 4+2+4+4),
	}
	if diff := cmp.Diff(wantRows, e.fake.BillingRows()); diff != "" {
		t.Errorf("BillingRows() mismatch (-want +got):\n%s", diff)
	}
}

// TestBedrockRootCredentialsBilledToRoot proves a call signed with the
// gateway's own credentials is accepted but billed to the gateway, which
// is what lets other packages' tests catch that mistake.
func TestBedrockRootCredentialsBilledToRoot(t *testing.T) {
	e := newEnv(t, Options{Region: "eu-west-1"})
	root := e.fake.RootCredentials(gatewayRoleARN)
	client := e.bedrockClient(t, root, func(o *bedrockruntime.Options) { o.Region = "eu-west-1" })
	if _, err := client.Converse(context.Background(), &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: userText("hi")}); err != nil {
		t.Fatalf("Converse error = %v", err)
	}
	want := []BillingRow{
		{IAMPrincipal: gatewayRoleARN, UsageType: "EU-m-input-tokens", UsageAmount: 1},
		{IAMPrincipal: gatewayRoleARN, UsageType: "EU-m-output-tokens", UsageAmount: 4},
	}
	if diff := cmp.Diff(want, e.fake.BillingRows()); diff != "" {
		t.Errorf("BillingRows() mismatch (-want +got):\n%s", diff)
	}
	if inv := e.fake.Invocations()[0]; inv.SessionName != "" || inv.Tags != nil {
		t.Errorf("root invocation SessionName = %q, Tags = %v; want none", inv.SessionName, inv.Tags)
	}
}

// tamper is a RoundTripper that changes the body after signing.
type tamper struct{ next http.RoundTripper }

func (tr tamper) RoundTrip(r *http.Request) (*http.Response, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	b = bytes.Replace(b, []byte("hi"), []byte("yo"), 1)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return tr.next.RoundTrip(r)
}

// stripHeader is a RoundTripper that removes a header after signing.
type stripHeader struct {
	next http.RoundTripper
	name string
}

func (tr stripHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Del(tr.name)
	return tr.next.RoundTrip(r)
}

func TestBedrockAuthErrors(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice", nil)
	wrongSecret := creds
	wrongSecret.SecretAccessKey = otherSecret(creds.SecretAccessKey)
	unknown := creds
	unknown.AccessKeyID = "ASIAAAAAAAAAAAAAAAAA"
	noToken := creds
	noToken.SessionToken = ""

	tests := []struct {
		name     string
		creds    aws.Credentials
		opt      func(*bedrockruntime.Options)
		advance  time.Duration
		wantCode string
		wantMsg  string
	}{
		{name: "wrong secret", creds: wrongSecret, wantCode: "InvalidSignatureException", wantMsg: "signature we calculated does not match"},
		{name: "unknown access key", creds: unknown, wantCode: "UnrecognizedClientException", wantMsg: "security token included in the request is invalid"},
		{name: "session key without token", creds: noToken, wantCode: "UnrecognizedClientException"},
		{name: "expired session", creds: creds, advance: time.Hour, wantCode: "ExpiredTokenException", wantMsg: "expired"},
		{name: "clock skew", creds: creds, advance: 10 * time.Minute, wantCode: "InvalidSignatureException", wantMsg: "Signature expired"},
		{name: "wrong region", creds: creds, opt: func(o *bedrockruntime.Options) { o.Region = "us-west-2" }, wantCode: "InvalidSignatureException", wantMsg: "valid region"},
		{
			name: "tampered body", creds: creds, wantCode: "InvalidSignatureException",
			opt: func(o *bedrockruntime.Options) {
				o.HTTPClient = &http.Client{Transport: tamper{e.br.Client().Transport}}
			},
		},
		{
			name: "token header removed", creds: creds, wantCode: "UnrecognizedClientException",
			opt: func(o *bedrockruntime.Options) {
				o.HTTPClient = &http.Client{Transport: stripHeader{e.br.Client().Transport, "X-Amz-Security-Token"}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []func(*bedrockruntime.Options){}
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}
			client := e.bedrockClient(t, tt.creds, opts...)
			e.clock.Advance(tt.advance)
			defer e.clock.Advance(-tt.advance)
			before := len(e.fake.Invocations())
			_, err := client.Converse(context.Background(), &bedrockruntime.ConverseInput{ModelId: aws.String(claudeProfileID), Messages: userText("hi")})
			if err == nil {
				t.Fatalf("Converse succeeded, want %s", tt.wantCode)
			}
			if code, status := apiError(t, err); code != tt.wantCode || status != 403 {
				t.Errorf("Converse error = %s (HTTP %d), want %s (HTTP 403)", code, status, tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Converse error = %q, want it to contain %q", err, tt.wantMsg)
			}
			if secret := tt.creds.SecretAccessKey; strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), creds.SessionToken) {
				t.Errorf("error %q echoes a secret", err)
			}
			if n := len(e.fake.Invocations()); n != before {
				t.Errorf("Invocations() grew from %d to %d, want refused calls not recorded", before, n)
			}
		})
	}
}

// TestBedrockWire checks answers the SDK hides: raw error headers and
// bodies, bearer tokens, unknown paths, a missing signed host.
func TestBedrockWire(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice", nil)
	converse := []byte(`{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`)
	sign := func(path string, body []byte, service string) func() *http.Request {
		return func() *http.Request {
			return signedRequest(t, "POST", e.br.URL+path, body, creds, service, "us-east-1", time.Now())
		}
	}
	tests := []struct {
		name       string
		req        func() *http.Request
		wantStatus int
		wantType   string
		recorded   bool
	}{
		{"bearer token", func() *http.Request {
			r, _ := http.NewRequest("POST", e.br.URL+"/model/m/converse", bytes.NewReader(converse))
			r.Header.Set("Authorization", "Bearer bedrock-api-key-abc")
			return r
		}, 403, "UnrecognizedClientException", false},
		{"no authorization", func() *http.Request {
			r, _ := http.NewRequest("POST", e.br.URL+"/model/m/converse", bytes.NewReader(converse))
			return r
		}, 403, "MissingAuthenticationTokenException", false},
		{"scoped to sts", sign("/model/m/converse", converse, "sts"), 403, "InvalidSignatureException", false},
		{"unsigned payload", func() *http.Request {
			r, _ := http.NewRequest("POST", e.br.URL+"/model/m/converse", bytes.NewReader(converse))
			r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, "UNSIGNED-PAYLOAD", "bedrock", "us-east-1", time.Now()); err != nil {
				t.Fatal(err)
			}
			return r
		}, 403, "InvalidSignatureException", false},
		{"host not signed", func() *http.Request {
			r := sign("/model/m/converse", converse, "bedrock")()
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "host;", "", 1))
			return r
		}, 403, "IncompleteSignatureException", false},
		{"unknown operation", sign("/model/m/chat", converse, "bedrock"), 404, "UnknownOperationException", true},
		{"unknown path", sign("/foundation-models", nil, "bedrock"), 404, "UnknownOperationException", true},
		{"malformed JSON", sign("/model/m/converse", []byte(`{"messages":`), "bedrock"), 400, "ValidationException", true},
		{"conversation starting with assistant", sign("/model/m/converse", []byte(`{"messages":[{"role":"assistant","content":[{"text":"hi"}]}]}`), "bedrock"), 400, "ValidationException", true},
		{"anthropic without max_tokens", sign("/model/anthropic.claude-v2/invoke", []byte(`{"anthropic_version":"bedrock-2023-05-31","messages":[]}`), "bedrock"), 400, "ValidationException", true},
		{"anthropic with model key", sign("/model/anthropic.claude-v2/invoke", []byte(`{"model":"x","anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[]}`), "bedrock"), 400, "ValidationException", true},
		{"generic invoke with non-JSON", sign("/model/amazon.titan/invoke", []byte(`hello`), "bedrock"), 400, "ValidationException", true},
		{"count-tokens without input", sign("/model/m/count-tokens", []byte(`{"input":{}}`), "bedrock"), 400, "ValidationException", true},
		{"throttle model", sign("/model/fake.error-throttle/converse", converse, "bedrock"), 429, "ThrottlingException", true},
		{"model error model", sign("/model/fake.error-model/invoke", converse, "bedrock"), 424, "ModelErrorException", true},
		{"raw ':' in model ID", sign("/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", []byte(anthropicBody), "bedrock"), 200, "", true},
		{"ARN with raw ':' and escaped '/'", sign("/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile%2Fus.anthropic.claude-3-7-sonnet-20250219-v1:0/invoke", []byte(anthropicBody), "bedrock"), 200, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.fake.Invocations())
			resp, body := do(t, tt.req())
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("X-Amzn-RequestId"); len(got) != 36 {
				t.Errorf("x-amzn-RequestId = %q, want a UUID", got)
			}
			if tt.wantType != "" {
				if got, want := resp.Header.Get("X-Amzn-ErrorType"), tt.wantType+":http://internal.amazon.com/coral/com.amazon.bedrock/"; got != want {
					t.Errorf("x-amzn-ErrorType = %q, want %q", got, want)
				}
				var msg map[string]string
				if err := json.Unmarshal(body, &msg); err != nil || msg["message"] == "" || len(msg) != 1 {
					t.Errorf("error body = %s, want {\"message\":...}", body)
				}
			}
			if strings.Contains(string(body), creds.SessionToken) || strings.Contains(string(body), "bedrock-api-key-abc") {
				t.Errorf("body %s echoes a secret", body)
			}
			if n := len(e.fake.Invocations()) - before; (n == 1) != tt.recorded {
				t.Errorf("recorded %d invocations, want recorded = %v", n, tt.recorded)
			}
		})
	}
	invs := e.fake.Invocations()
	if got, want := invs[len(invs)-1].ModelID, "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0"; got != want {
		t.Errorf("ModelID = %q, want %q", got, want)
	}
}

func TestBedrockFaultModels(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "alice", nil))
	ctx := context.Background()
	for model, f := range faultModels {
		t.Run(model, func(t *testing.T) {
			_, err := client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String(model), Messages: userText("hi")})
			if code, status := apiError(t, err); code != f.typ || status != f.status {
				t.Errorf("Converse(%s) error = %s (HTTP %d), want %s (HTTP %d)", model, code, status, f.typ, f.status)
			}
		})
	}
	t.Run("throttling is a typed SDK error", func(t *testing.T) {
		_, err := client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String("fake.error-throttle"), Body: []byte(`{}`)})
		var te *types.ThrottlingException
		if !errors.As(err, &te) {
			t.Errorf("InvokeModel error = %v (%T), want *types.ThrottlingException", err, err)
		}
	})
	if rows := e.fake.BillingRows(); len(rows) != 0 {
		t.Errorf("BillingRows() = %v, want none for failed calls", rows)
	}
}

func TestBedrockStreamException(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "alice", nil))
	ctx := context.Background()

	t.Run("ConverseStream", func(t *testing.T) {
		out, err := client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(ModelStreamException), Messages: userText("hi")})
		if err != nil {
			t.Fatalf("ConverseStream error = %v, want the failure in-stream after HTTP 200", err)
		}
		stream := out.GetStream()
		defer stream.Close()
		n := 0
		for range stream.Events() {
			n++
		}
		var mse *types.ModelStreamErrorException
		if !errors.As(stream.Err(), &mse) {
			t.Fatalf("stream.Err() = %v (%T), want *types.ModelStreamErrorException", stream.Err(), stream.Err())
		}
		if n != 2 || aws.ToInt32(mse.OriginalStatusCode) != 500 {
			t.Errorf("got %d events then originalStatusCode %d, want 2 events then 500", n, aws.ToInt32(mse.OriginalStatusCode))
		}
	})

	t.Run("InvokeModelWithResponseStream", func(t *testing.T) {
		out, err := client.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{ModelId: aws.String(ModelStreamException), Body: []byte(`{"inputText":"hi"}`)})
		if err != nil {
			t.Fatalf("InvokeModelWithResponseStream error = %v", err)
		}
		stream := out.GetStream()
		defer stream.Close()
		for range stream.Events() {
		}
		var mse *types.ModelStreamErrorException
		if !errors.As(stream.Err(), &mse) {
			t.Errorf("stream.Err() = %v (%T), want *types.ModelStreamErrorException", stream.Err(), stream.Err())
		}
	})

	for _, inv := range e.fake.Invocations() {
		if inv.Status != 200 || inv.StreamError != "modelStreamErrorException" {
			t.Errorf("%s recorded Status %d StreamError %q, want 200 and modelStreamErrorException", inv.Operation, inv.Status, inv.StreamError)
		}
	}
}

// TestBeforeEventHoldsEvents proves the fake streams: event 1 reaches the
// client while event 2 is held back by the hook.
func TestBeforeEventHoldsEvents(t *testing.T) {
	reached2 := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	var seen []string
	e := newEnv(t, Options{BeforeEvent: func(ctx context.Context, op string, i int) {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s#%d", op, i))
		mu.Unlock()
		if i == 2 {
			close(reached2)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}})
	// Over an in-memory network: on loopback TCP under -race the client's
	// connection was seen closed while event 2 was held (about 1 run in
	// 100; not understood), which is not what this test is about.
	l := memnet.Listen()
	stop := memnet.Serve(l, e.fake.BedrockHandler())
	defer stop()
	tr := l.Transport()
	defer tr.CloseIdleConnections()
	client := e.bedrockClient(t, e.session(t, "alice", nil), func(o *bedrockruntime.Options) {
		o.HTTPClient = &http.Client{Transport: tr}
	})
	out, err := client.ConverseStream(context.Background(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(claudeProfileID), Messages: userText("hi")})
	if err != nil {
		t.Fatalf("ConverseStream error = %v", err)
	}
	stream := out.GetStream()
	defer stream.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	next := func(i int) types.ConverseStreamOutput {
		select {
		case ev, ok := <-stream.Events():
			if !ok {
				t.Fatalf("stream ended before event %d: %v", i, stream.Err())
			}
			return ev
		case <-timeout.C:
			t.Fatalf("event %d not delivered while event 2 is held (not flushed?)", i)
		}
		return nil
	}
	if _, ok := next(0).(*types.ConverseStreamOutputMemberMessageStart); !ok {
		t.Fatalf("event 0 is not messageStart")
	}
	if _, ok := next(1).(*types.ConverseStreamOutputMemberContentBlockDelta); !ok {
		t.Fatalf("event 1 is not contentBlockDelta")
	}
	<-reached2 // the hook for event 2 is running, so event 2 is unwritten
	select {
	case ev := <-stream.Events():
		t.Fatalf("received %T while event 2 was held", ev)
	default:
	}
	close(release)
	n := 2
	for range stream.Events() {
		n++
	}
	if err := streamErr(stream.Err()); err != nil {
		t.Fatalf("stream.Err() = %v", err)
	}
	if n != 8 {
		t.Errorf("received %d events, want 8", n)
	}
	runtime.KeepAlive(client)
	runtime.KeepAlive(out)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"ConverseStream#0", "ConverseStream#1", "ConverseStream#2", "ConverseStream#3", "ConverseStream#4", "ConverseStream#5", "ConverseStream#6", "ConverseStream#7"}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("BeforeEvent calls mismatch (-want +got):\n%s", diff)
	}
}

// TestConcurrentSessions runs many callers at once: each call is billed to
// its own session, never another's.
func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t, Options{})
	const users = 8
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for i := range users {
		wg.Go(func() {
			name := fmt.Sprintf("user%d", i)
			stsClient := e.stsClient(t, e.fake.RootCredentials(gatewayRoleARN))
			out, err := stsClient.AssumeRole(context.Background(), &sts.AssumeRoleInput{RoleArn: aws.String(invokeRoleARN), RoleSessionName: aws.String(name)})
			if err != nil {
				errs <- err
				return
			}
			c := aws.Credentials{AccessKeyID: *out.Credentials.AccessKeyId, SecretAccessKey: *out.Credentials.SecretAccessKey, SessionToken: *out.Credentials.SessionToken}
			client := e.bedrockClient(t, c)
			for range 3 {
				if _, err := client.Converse(context.Background(), &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: userText(name)}); err != nil {
					errs <- err
					return
				}
			}
			_ = e.fake.BillingRows()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call error = %v", err)
	}
	count := map[string]int{}
	for _, inv := range e.fake.Invocations() {
		if want := "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/" + string(inv.Body[strings.Index(string(inv.Body), "user"):][:5]); inv.PrincipalARN != want {
			t.Errorf("invocation with body %s billed to %q, want %q", inv.Body, inv.PrincipalARN, want)
		}
		count[inv.SessionName]++
	}
	if len(count) != users {
		t.Errorf("saw %d sessions, want %d", len(count), users)
	}
	for name, n := range count {
		if n != 3 {
			t.Errorf("session %s made %d calls, want 3", name, n)
		}
	}
}

// TestCombinedHandler serves STS and Bedrock on one listener, as
// `gateway dev` does.
func TestCombinedHandler(t *testing.T) {
	f := New(Options{Roles: []string{invokeRoleARN}})
	srv := httptest.NewServer(f.Handler())
	defer srv.Close()
	hc := srv.Client()
	defer hc.CloseIdleConnections()
	stsClient := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), HTTPClient: hc, Credentials: staticCreds(f.RootCredentials(gatewayRoleARN))})
	out, err := stsClient.AssumeRole(context.Background(), &sts.AssumeRoleInput{RoleArn: aws.String(invokeRoleARN), RoleSessionName: aws.String("alice")})
	if err != nil {
		t.Fatalf("AssumeRole error = %v", err)
	}
	br := bedrockruntime.New(bedrockruntime.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), HTTPClient: hc,
		Credentials: staticCreds(aws.Credentials{AccessKeyID: *out.Credentials.AccessKeyId, SecretAccessKey: *out.Credentials.SecretAccessKey, SessionToken: *out.Credentials.SessionToken})})
	if _, err := br.Converse(context.Background(), &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: userText("hi")}); err != nil {
		t.Fatalf("Converse error = %v", err)
	}
	if got := f.Invocations()[0].SessionName; got != "alice" {
		t.Errorf("SessionName = %q, want alice", got)
	}
}

// TestStreamClientDisconnect checks a stream the client abandons is
// recorded with the output produced so far.
func TestStreamClientDisconnect(t *testing.T) {
	e := newEnv(t, Options{BeforeEvent: func(ctx context.Context, _ string, i int) {
		if i == 2 {
			<-ctx.Done() // hold event 2 until the client has gone
		}
	}})
	// Over loopback TCP: closing the httptest server waits for the
	// handler to finish.
	hc := e.br.Client()
	t.Cleanup(hc.CloseIdleConnections)
	client := e.bedrockClient(t, e.session(t, "alice", nil), func(o *bedrockruntime.Options) { o.HTTPClient = hc })
	out, err := client.ConverseStream(context.Background(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String("m"), Messages: userText("a b")})
	if err != nil {
		t.Fatalf("ConverseStream error = %v", err)
	}
	stream := out.GetStream()
	<-stream.Events()
	<-stream.Events()
	stream.Close()
	e.br.Close() // waits for the handler to finish

	invs := e.fake.Invocations()
	if len(invs) != 1 {
		t.Fatalf("Invocations() has %d entries, want 1", len(invs))
	}
	got := invs[0]
	if got.StreamError != "ClientDisconnected" || got.InputTokens != 2 || got.OutputTokens != 1 || got.Status != 200 {
		t.Errorf("Invocation = {StreamError %q, In %d, Out %d, Status %d}, want {ClientDisconnected, 2, 1, 200}",
			got.StreamError, got.InputTokens, got.OutputTokens, got.Status)
	}
}

// TestRecordLimit checks a bounded fake keeps the newest records and still
// bills every call.
func TestRecordLimit(t *testing.T) {
	e := newEnv(t, Options{RecordLimit: 2})
	client := e.bedrockClient(t, e.fake.RootCredentials(testUserARN))
	for _, text := range []string{"a", "a b", "a b c"} {
		if _, err := client.Converse(context.Background(), &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: userText(text)}); err != nil {
			t.Fatalf("Converse error = %v", err)
		}
	}
	var in []int64
	for _, inv := range e.fake.Invocations() {
		in = append(in, inv.InputTokens)
	}
	if diff := cmp.Diff([]int64{2, 3}, in); diff != "" {
		t.Errorf("Invocations() input tokens mismatch (-want +got):\n%s", diff)
	}
	want := []BillingRow{
		{IAMPrincipal: testUserARN, UsageType: "USE1-m-input-tokens", UsageAmount: 6},
		{IAMPrincipal: testUserARN, UsageType: "USE1-m-output-tokens", UsageAmount: 12},
	}
	if diff := cmp.Diff(want, e.fake.BillingRows()); diff != "" {
		t.Errorf("BillingRows() mismatch (-want +got):\n%s", diff)
	}
}

// streamErr is a finished SDK event stream's error, less one artifact: the
// SDK's reader can report "use of closed network connection" when its
// closer races its last read after every event has arrived (seen under
// -race, about 1 run in 100). Every other error counts.
func streamErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
