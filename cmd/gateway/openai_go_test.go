package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

// TestCompatOpenAIGo runs the official Go SDK (github.com/openai/openai-go)
// against the gateway's OpenAI-compatible API: chat through Converse,
// streaming with usage, a tool-call round trip plain and streamed, a model
// Bedrock serves natively, embeddings, the models list, and a bad key
// raising the SDK's 401 error. Every call is billed to the caller's own session with
// its tags, and the ledger's tokens equal the fake's bill.
func TestCompatOpenAIGo(t *testing.T) {
	e := startEnvWith(t, extraConfig{top: "openai: {aliases: {sonnet: " + compatModel + "}, models: [sonnet, " + compatNativeModel + "]}"}, alice, bob)
	key := e.keys[alice.user]
	client := openai.NewClient(option.WithBaseURL(e.baseURL+"/v1/"), option.WithAPIKey(key),
		option.WithHTTPClient(e.client), option.WithMaxRetries(0))
	ctx := context.Background()
	ask := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")}
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:       "get_weather",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	})}

	chat, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "sonnet",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("hello there gateway")}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(chat.Choices[0].Message.Content, fakeaws.ReplyText) || chat.Usage.CompletionTokens == 0 || chat.Model != "sonnet" {
		t.Errorf("chat = %q usage %+v model %q", chat.Choices[0].Message.Content, chat.Usage, chat.Model)
	}

	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "sonnet",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there gateway")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(acc.Choices[0].Message.Content, fakeaws.ReplyText) || acc.Usage.CompletionTokens == 0 {
		t.Errorf("stream = %q usage %+v", acc.Choices[0].Message.Content, acc.Usage)
	}

	call, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "sonnet", Messages: ask, Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	if call.Choices[0].FinishReason != "tool_calls" || len(call.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("tool call = %+v", call.Choices[0])
	}
	tc := call.Choices[0].Message.ToolCalls[0]
	answer, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "sonnet", Tools: tools,
		Messages: append(append(ask, call.Choices[0].Message.ToParam()), openai.ToolMessage("sunny", tc.ID))})
	if err != nil {
		t.Fatal(err)
	}
	if tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city":"fake"}` || answer.Choices[0].FinishReason != "stop" {
		t.Errorf("tool round trip: %s(%s) then %q", tc.Function.Name, tc.Function.Arguments, answer.Choices[0].FinishReason)
	}

	stream = client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "sonnet", Messages: ask, Tools: tools})
	acc = openai.ChatCompletionAccumulator{}
	var finished *openai.FinishedChatCompletionToolCall
	for stream.Next() {
		acc.AddChunk(stream.Current())
		if f, ok := acc.JustFinishedToolCall(); ok {
			finished = &f
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if finished == nil || finished.Name != "get_weather" || finished.Arguments != `{"city":"fake"}` {
		t.Errorf("streamed tool call = %+v", finished)
	}

	native, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: compatNativeModel,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there")}})
	if err != nil {
		t.Fatal(err)
	}
	if native.Choices[0].Message.Content == "" || native.Usage.CompletionTokens == 0 {
		t.Errorf("native = %+v", native)
	}

	emb, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: compatEmbedModel,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello there", "gateway"}}, Dimensions: openai.Int(256)})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 2 || len(emb.Data[1].Embedding) != 256 || emb.Usage.PromptTokens == 0 {
		t.Errorf("embeddings: %d vectors, %d dims, usage %+v", len(emb.Data), len(emb.Data[1].Embedding), emb.Usage)
	}

	var models []string
	for page := client.Models.ListAutoPaging(ctx); page.Next(); {
		models = append(models, page.Current().ID)
	}
	if strings.Join(models, ",") != compatNativeModel+",sonnet" {
		t.Errorf("models = %v", models)
	}

	bad := openai.NewClient(option.WithBaseURL(e.baseURL+"/v1/"), option.WithAPIKey("sk-not-a-gateway-key"),
		option.WithHTTPClient(e.client), option.WithMaxRetries(0))
	_, err = bad.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "sonnet", Messages: ask})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || apiErr.Code != "invalid_api_key" {
		t.Errorf("bad key: err = %v, want the SDK's 401 invalid_api_key error", err)
	}

	// whoami names the principal the bill shows for these calls.
	req, _ := http.NewRequest(http.MethodGet, e.baseURL+"/gateway/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var who struct {
		Session struct {
			PrincipalARN string `json:"principal_arn"`
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&who)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}

	e.stop()
	invs := e.fake.Invocations()
	for _, inv := range invs {
		if inv.PrincipalARN != who.Session.PrincipalARN {
			t.Errorf("%s billed to %s; /gateway/whoami says %s", inv.Operation, inv.PrincipalARN, who.Session.PrincipalARN)
		}
	}
	var ops []string
	for _, inv := range invs {
		ops = append(ops, inv.Operation)
	}
	if want := "Converse,ConverseStream,Converse,Converse,ConverseStream,ChatCompletions,InvokeModel,InvokeModel"; strings.Join(ops, ",") != want {
		t.Errorf("Bedrock operations %v, want %s", ops, want)
	}
	assertAttributed(t, e, alice, invs, 0, openAINotBilled)
}
