package fakeaws

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var ignoreUsage = cmpopts.IgnoreUnexported(types.TokenUsage{}, types.CacheDetail{})

func cachePoint(ttl types.CacheTTL) *types.ContentBlockMemberCachePoint {
	return &types.ContentBlockMemberCachePoint{Value: types.CachePointBlock{Type: types.CachePointTypeDefault, Ttl: ttl}}
}

func text(s string) *types.ContentBlockMemberText { return &types.ContentBlockMemberText{Value: s} }

// cachedConverse is a conversation with a system prompt of 4 words and a
// cache point after it, and a question.
func cachedConverse(model, question string, ttl types.CacheTTL) *bedrockruntime.ConverseInput {
	return &bedrockruntime.ConverseInput{
		ModelId: aws.String(model),
		System: []types.SystemContentBlock{
			&types.SystemContentBlockMemberText{Value: "you are very helpful"},
			&types.SystemContentBlockMemberCachePoint{Value: types.CachePointBlock{Type: types.CachePointTypeDefault, Ttl: ttl}},
		},
		Messages: userText(question),
	}
}

func usage(in, out, read, write int32, details ...types.CacheDetail) *types.TokenUsage {
	return &types.TokenUsage{
		InputTokens: aws.Int32(in), OutputTokens: aws.Int32(out), TotalTokens: aws.Int32(in + out + read + write),
		CacheReadInputTokens: aws.Int32(read), CacheWriteInputTokens: aws.Int32(write), CacheDetails: details,
	}
}

func TestConversePromptCache(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice", map[string]string{"team": "ml"})
	client := e.bedrockClient(t, creds)
	ctx := context.Background()
	five := func(n int32) types.CacheDetail {
		return types.CacheDetail{Ttl: types.CacheTTLFiveMinutes, InputTokens: aws.Int32(n)}
	}

	converse := func(t *testing.T, c *bedrockruntime.Client, in *bedrockruntime.ConverseInput) *types.TokenUsage {
		t.Helper()
		out, err := c.Converse(ctx, in)
		if err != nil {
			t.Fatalf("Converse error = %v", err)
		}
		return out.Usage
	}
	steps := []struct {
		name   string
		client *bedrockruntime.Client
		in     *bedrockruntime.ConverseInput
		want   *types.TokenUsage
	}{
		{"first call writes the prefix", client, cachedConverse("m", "what is up", ""), usage(3, 4, 0, 4, five(4))},
		{"same prefix, other question, reads it", client, cachedConverse("m", "and now", ""), usage(2, 4, 4, 0)},
		{"other model misses", client, cachedConverse("m2", "and now", ""), usage(2, 4, 0, 4, five(4))},
		{"other account misses", e.bedrockClient(t, e.fake.RootCredentials("arn:aws:iam::210987654321:user/bob")), cachedConverse("m", "and now", ""), usage(2, 4, 0, 4, five(4))},
		{"one-hour TTL is reported as such", client, cachedConverse("m3", "q", types.CacheTTLOneHour), usage(1, 4, 0, 4, types.CacheDetail{Ttl: types.CacheTTLOneHour, InputTokens: aws.Int32(4)})},
		{
			"second checkpoint: reads the first, writes the rest", client,
			&bedrockruntime.ConverseInput{
				ModelId: aws.String("m"),
				System: []types.SystemContentBlock{
					&types.SystemContentBlockMemberText{Value: "you are very helpful"},
					&types.SystemContentBlockMemberCachePoint{Value: types.CachePointBlock{Type: types.CachePointTypeDefault}},
				},
				Messages: []types.Message{
					{Role: types.ConversationRoleUser, Content: []types.ContentBlock{text("a long document here"), cachePoint(types.CacheTTLOneHour), text("summarise")}},
				},
			},
			usage(1, 4, 4, 4, types.CacheDetail{Ttl: types.CacheTTLOneHour, InputTokens: aws.Int32(4)}),
		},
		{
			"next turn moves the checkpoint and reads the longest prefix", client,
			&bedrockruntime.ConverseInput{
				ModelId: aws.String("m"),
				System: []types.SystemContentBlock{
					&types.SystemContentBlockMemberText{Value: "you are very helpful"},
					&types.SystemContentBlockMemberCachePoint{Value: types.CachePointBlock{Type: types.CachePointTypeDefault}},
				},
				Messages: []types.Message{
					{Role: types.ConversationRoleUser, Content: []types.ContentBlock{text("a long document here"), cachePoint(types.CacheTTLOneHour), text("summarise")}},
					{Role: types.ConversationRoleAssistant, Content: []types.ContentBlock{text("it is long")}},
					{Role: types.ConversationRoleUser, Content: []types.ContentBlock{text("thanks"), cachePoint("")}},
				},
			},
			usage(0, 4, 8, 5, five(5)),
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if diff := cmp.Diff(st.want, converse(t, st.client, st.in), ignoreUsage); diff != "" {
				t.Errorf("Converse usage mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("no cache point: no cache members", func(t *testing.T) {
		got := converse(t, client, &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: userText("you are very helpful")})
		want := &types.TokenUsage{InputTokens: aws.Int32(4), OutputTokens: aws.Int32(4), TotalTokens: aws.Int32(8)}
		if diff := cmp.Diff(want, got, ignoreUsage); diff != "" {
			t.Errorf("Converse usage mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("ConverseStream metadata carries the cache usage", func(t *testing.T) {
		out, err := client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
			ModelId: aws.String("m"), System: cachedConverse("m", "", "").System, Messages: userText("stream please"),
		})
		if err != nil {
			t.Fatalf("ConverseStream error = %v", err)
		}
		stream := out.GetStream()
		defer stream.Close()
		var got *types.TokenUsage
		for ev := range stream.Events() {
			if md, ok := ev.(*types.ConverseStreamOutputMemberMetadata); ok {
				got = md.Value.Usage
			}
		}
		if diff := cmp.Diff(usage(2, 4, 4, 0), got, ignoreUsage); diff != "" {
			t.Errorf("ConverseStream metadata usage mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("CountTokens ignores the cache", func(t *testing.T) {
		in := cachedConverse("m", "what is up", "")
		out, err := client.CountTokens(ctx, &bedrockruntime.CountTokensInput{ModelId: aws.String("m"), Input: &types.CountTokensInputMemberConverse{
			Value: types.ConverseTokensRequest{System: in.System, Messages: in.Messages},
		}})
		if err != nil {
			t.Fatalf("CountTokens error = %v", err)
		}
		if got := aws.ToInt32(out.InputTokens); got != 7 {
			t.Errorf("CountTokens = %d, want 7", got)
		}
	})

	t.Run("invalid cache points", func(t *testing.T) {
		five := []types.ContentBlock{text("a")}
		for range 5 {
			five = append(five, cachePoint(""))
		}
		for name, msgs := range map[string][]types.ContentBlock{
			"five cache points": five,
			"unknown type":      {text("a"), &types.ContentBlockMemberCachePoint{Value: types.CachePointBlock{Type: "ephemeral"}}},
			"unknown TTL":       {text("a"), cachePoint("2h")},
		} {
			_, err := client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: []types.Message{{Role: types.ConversationRoleUser, Content: msgs}}})
			if code, status := apiError(t, err); code != "ValidationException" || status != 400 {
				t.Errorf("Converse(%s) error = %s (HTTP %d), want ValidationException (HTTP 400)", name, code, status)
			}
		}
	})

	// Invocations and billing see the same split.
	var reads, writes, ins int64
	for _, inv := range e.fake.Invocations() {
		if inv.PrincipalARN == "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice" && inv.ModelID == "m" && inv.Status == 200 && inv.Operation != "CountTokens" {
			reads += inv.CacheReadTokens
			writes += inv.CacheWriteTokens
			ins += inv.InputTokens
		}
	}
	tags := map[string]string{"iamPrincipal/team": "ml"}
	const alice = "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice"
	var got []BillingRow
	for _, r := range e.fake.BillingRows() {
		if r.IAMPrincipal == alice && strings.HasPrefix(r.UsageType, "USE1-m-") {
			got = append(got, r)
		}
	}
	want := []BillingRow{
		{alice, "USE1-m-cache-read-input-tokens", 4 + 4 + 8 + 4, tags},
		{alice, "USE1-m-cache-write-input-tokens", 4 + 4 + 5, tags},
		{alice, "USE1-m-input-tokens", 3 + 2 + 1 + 0 + 4 + 2, tags},
		{alice, "USE1-m-output-tokens", 4 * 6, tags},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("BillingRows() for model m mismatch (-want +got):\n%s", diff)
	}
	if reads != want[0].UsageAmount || writes != want[1].UsageAmount || ins != want[2].UsageAmount {
		t.Errorf("Invocations() cache read/write/input = %d/%d/%d, want %d/%d/%d", reads, writes, ins, want[0].UsageAmount, want[1].UsageAmount, want[2].UsageAmount)
	}
}

// anthropicCached is an Anthropic body with a 3-word cached system prompt
// and the given messages JSON.
func anthropicCached(messages string) []byte {
	return []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,` +
		`"system":[{"type":"text","text":"be very brief","cache_control":{"type":"ephemeral"}}],` +
		`"messages":` + messages + `}`)
}

func TestAnthropicPromptCache(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "alice", nil))
	ctx := context.Background()
	const model = "anthropic.claude-3-5-haiku-20241022-v1:0"

	type anthropicUsage struct {
		InputTokens   int64 `json:"input_tokens"`
		OutputTokens  int64 `json:"output_tokens"`
		CacheCreation int64 `json:"cache_creation_input_tokens"`
		CacheRead     int64 `json:"cache_read_input_tokens"`
		Breakdown     struct {
			FiveMinutes int64 `json:"ephemeral_5m_input_tokens"`
			OneHour     int64 `json:"ephemeral_1h_input_tokens"`
		} `json:"cache_creation"`
	}
	invoke := func(t *testing.T, body []byte) (anthropicUsage, map[string]string) {
		t.Helper()
		out, err := client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(model), Body: body})
		if err != nil {
			t.Fatalf("InvokeModel error = %v", err)
		}
		var msg struct{ Usage anthropicUsage }
		if err := json.Unmarshal(out.Body, &msg); err != nil {
			t.Fatalf("InvokeModel body %s: %v", out.Body, err)
		}
		raw := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response)
		h := map[string]string{}
		for _, k := range []string{"X-Amzn-Bedrock-Input-Token-Count", "X-Amzn-Bedrock-Cache-Read-Input-Token-Count", "X-Amzn-Bedrock-Cache-Write-Input-Token-Count"} {
			if v := raw.Header.Values(k); len(v) > 0 {
				h[k] = v[0]
			}
		}
		return msg.Usage, h
	}
	hdr := func(in, read, write string) map[string]string {
		return map[string]string{"X-Amzn-Bedrock-Input-Token-Count": in, "X-Amzn-Bedrock-Cache-Read-Input-Token-Count": read, "X-Amzn-Bedrock-Cache-Write-Input-Token-Count": write}
	}
	u := func(in, read, write, write1h int64) anthropicUsage {
		v := anthropicUsage{InputTokens: in, OutputTokens: 4, CacheCreation: write, CacheRead: read}
		v.Breakdown.FiveMinutes, v.Breakdown.OneHour = write-write1h, write1h
		return v
	}

	turn1 := `[{"role":"user","content":[{"type":"text","text":"read this long text","cache_control":{"type":"ephemeral","ttl":"1h"}},{"type":"text","text":"ok?"}]}]`
	// Turn 2 repeats turn 1 without its cache_control and caches only the
	// new tail: the key ignores the markers, and the lookback from the
	// last checkpoint finds turn 1's cached prefix.
	turn2 := `[{"role":"user","content":[{"type":"text","text":"read this long text"},{"type":"text","text":"ok?"}]},` +
		`{"role":"assistant","content":"sure"},{"role":"user","content":[{"type":"text","text":"more please","cache_control":{"type":"ephemeral"}}]}]`
	steps := []struct {
		name       string
		body       []byte
		wantUsage  anthropicUsage
		wantHeader map[string]string
	}{
		{"no cache_control", []byte(anthropicBody), u(8, 0, 0, 0), map[string]string{"X-Amzn-Bedrock-Input-Token-Count": "8"}},
		{"turn 1 writes system (5m) and first block (1h)", anthropicCached(turn1), u(1, 0, 7, 4), hdr("1", "0", "7")},
		{"same turn again reads both", anthropicCached(turn1), u(1, 7, 0, 0), hdr("1", "7", "0")},
		{"no lookback past the last checkpoint", anthropicCached(`[{"role":"user","content":[{"type":"text","text":"read this long text"}]}]`), u(4, 3, 0, 0), hdr("4", "3", "0")},
		{
			"lookback finds turn 1's prefix; string content equals a text block",
			anthropicCached(`[{"role":"user","content":"read this long text"},{"role":"assistant","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]`),
			u(0, 7, 1, 0), hdr("0", "7", "1"),
		},
		{"turn 2 reads turn 1, writes the new tail", anthropicCached(turn2), u(0, 7, 4, 0), hdr("0", "7", "4")},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			gotUsage, gotHeader := invoke(t, st.body)
			if diff := cmp.Diff(st.wantUsage, gotUsage); diff != "" {
				t.Errorf("InvokeModel usage mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(st.wantHeader, gotHeader); diff != "" {
				t.Errorf("InvokeModel token headers mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("stream: message_start usage and invocation metrics", func(t *testing.T) {
		out, err := client.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{ModelId: aws.String(model), Body: anthropicCached(turn1)})
		if err != nil {
			t.Fatalf("InvokeModelWithResponseStream error = %v", err)
		}
		stream := out.GetStream()
		defer stream.Close()
		var start anthropicUsage
		var metrics map[string]int64
		for ev := range stream.Events() {
			var inner struct {
				Type    string `json:"type"`
				Message struct {
					Usage anthropicUsage `json:"usage"`
				} `json:"message"`
				Metrics map[string]int64 `json:"amazon-bedrock-invocationMetrics"`
			}
			if err := json.Unmarshal(ev.(*types.ResponseStreamMemberChunk).Value.Bytes, &inner); err != nil {
				t.Fatal(err)
			}
			if inner.Type == "message_start" {
				start = inner.Message.Usage
			}
			if inner.Metrics != nil {
				metrics = inner.Metrics
			}
		}
		if start.CacheRead != 7 || start.InputTokens != 1 {
			t.Errorf("message_start usage = %+v, want 1 input token and 7 read from the cache", start)
		}
		want := map[string]int64{"inputTokenCount": 1, "outputTokenCount": 4, "invocationLatency": 100, "firstByteLatency": 50, "cacheReadInputTokenCount": 7, "cacheWriteInputTokenCount": 0}
		if diff := cmp.Diff(want, metrics); diff != "" {
			t.Errorf("amazon-bedrock-invocationMetrics mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("invalid cache_control", func(t *testing.T) {
		for name, msgs := range map[string]string{
			"unknown type":  `[{"role":"user","content":[{"type":"text","text":"a","cache_control":{"type":"persistent"}}]}]`,
			"unknown TTL":   `[{"role":"user","content":[{"type":"text","text":"a","cache_control":{"type":"ephemeral","ttl":"2h"}}]}]`,
			"not an object": `[{"role":"user","content":[{"type":"text","text":"a","cache_control":"ephemeral"}]}]`,
			"five breakpoints": `[{"role":"user","content":[` + strings.Repeat(`{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},`, 4) +
				`{"type":"text","text":"b"}]}]`,
		} {
			_, err := client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(model), Body: anthropicCached(msgs)})
			if code, status := apiError(t, err); code != "ValidationException" || status != 400 {
				t.Errorf("InvokeModel(%s) error = %s (HTTP %d), want ValidationException (HTTP 400)", name, code, status)
			}
		}
	})

	t.Run("tools come first in the prefix", func(t *testing.T) {
		body := []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,` +
			`"tools":[{"name":"get_weather","description":"weather","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],` +
			`"messages":[{"role":"user","content":"hello world"}]}`)
		first, _ := invoke(t, body)
		second, _ := invoke(t, body)
		// Tools carry no counted words, so the checkpoint caches 0 tokens
		// but is still reported.
		if first != u(2, 0, 0, 0) || second != u(2, 0, 0, 0) {
			t.Errorf("InvokeModel with cached tools = %+v then %+v, want 2 input tokens and nothing cached", first, second)
		}
	})
}

// TestPromptCacheExpiry drives the cache with a clock far from real time,
// which SDK-signed requests cannot use.
func TestPromptCacheExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	point := func(text string, ttl time.Duration) prompt {
		pp := newPromptPrefix("123456789012", "m")
		pp.add([]byte(text), 3)
		pp.breakpoint(ttl)
		pp.add([]byte("tail"), 1)
		return prompt{words: pp.words, points: pp.points}
	}
	steps := []struct {
		advance     time.Duration
		prompt      string
		ttl         time.Duration
		read, write int64
	}{
		{0, "a", defaultCacheTTL, 0, 3},
		{4 * time.Minute, "a", defaultCacheTTL, 3, 0}, // hit refreshes the entry
		{4 * time.Minute, "a", defaultCacheTTL, 3, 0}, // 8 minutes after the write, 4 after the hit
		{5 * time.Minute, "a", defaultCacheTTL, 0, 3}, // expired
		{0, "b", longCacheTTL, 0, 3},
		{59 * time.Minute, "b", defaultCacheTTL, 3, 0}, // a 5-minute checkpoint reads the hour-long entry...
		{6 * time.Minute, "b", defaultCacheTTL, 3, 0},  // ...and the read renewed it for an hour
		{61 * time.Minute, "b", defaultCacheTTL, 0, 3},
	}
	for i, st := range steps {
		advance(st.advance)
		in, cu := s.inputUsage(point(st.prompt, st.ttl))
		if in != 1 || cu.read != st.read || cu.write != st.write || !cu.used {
			t.Errorf("step %d (%q after %v): inputUsage = %d, %+v; want 1, read %d, write %d", i, st.prompt, st.advance, in, cu, st.read, st.write)
		}
	}
}

func FuzzParseAnthropicCache(f *testing.F) {
	f.Add(string(anthropicCached(`[{"role":"user","content":[{"type":"text","text":"a b","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]`)))
	f.Add(`{"anthropic_version":"x","max_tokens":1,"tools":[{"name":"t","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi"}]}`)
	f.Add(`{"anthropic_version":"x","max_tokens":1,"system":"s","messages":[{"role":"user","content":[{"text":5}]}]}`)
	f.Add(`{"anthropic_version":"x","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"a","cache_control":null}]}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		p1, e1 := parseInvoke("anthropic.claude", []byte(body), newPromptPrefix(testAccount, "anthropic.claude"))
		p2, e2 := parseInvoke("anthropic.claude", []byte(body), newPromptPrefix(testAccount, "anthropic.claude"))
		if (e1 == nil) != (e2 == nil) || !cmp.Equal(p1, p2, cmp.AllowUnexported(prompt{}, cacheBreakpoint{})) {
			t.Fatalf("parseInvoke(%q) is not deterministic", body)
		}
		if e1 != nil {
			if e1.status != 400 || e1.typ != "ValidationException" {
				t.Fatalf("parseInvoke(%q) error = %v, want a ValidationException", body, e1)
			}
			return
		}
		var explicit int
		var prev int64
		for _, pt := range p1.points {
			if pt.explicit {
				explicit++
			}
			if pt.words < prev || pt.words > p1.words {
				t.Fatalf("parseInvoke(%q) points out of order: %+v", body, p1.points)
			}
			prev = pt.words
		}
		if explicit > maxCachePoints {
			t.Fatalf("parseInvoke(%q) accepted %d checkpoints", body, explicit)
		}
	})
}
