package fakeaws

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
)

// weatherTool is a tool with one string parameter.
func weatherTool() *types.ToolConfiguration {
	schema := document.NewLazyDocument(map[string]any{"type": "object",
		"properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}})
	return &types.ToolConfiguration{Tools: []types.Tool{&types.ToolMemberToolSpec{Value: types.ToolSpecification{
		Name: aws.String("get_weather"), InputSchema: &types.ToolInputSchemaMemberJson{Value: schema}}}}}
}

func userMsg(s string) types.Message {
	return types.Message{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: s}}}
}

// TestConverseToolUse: offered a tool, the fake model calls it (toolUse,
// stopReason tool_use), plain and streamed through the real SDK; given
// the tool's result it answers in text; tool blocks without toolConfig,
// or a result for a call never made, are refused as Bedrock refuses them.
func TestConverseToolUse(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "alice", map[string]string{"team": "ml"}))
	ctx := context.Background()

	out, err := client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("m"),
		Messages: []types.Message{userMsg("weather in Paris?")}, ToolConfig: weatherTool()})
	if err != nil {
		t.Fatal(err)
	}
	msg := out.Output.(*types.ConverseOutputMemberMessage).Value
	use, ok := msg.Content[0].(*types.ContentBlockMemberToolUse)
	if out.StopReason != types.StopReasonToolUse || !ok || aws.ToString(use.Value.Name) != "get_weather" {
		t.Fatalf("Converse with a tool = %v, %#v; want a get_weather toolUse", out.StopReason, msg.Content)
	}
	var input map[string]string
	if err := use.Value.Input.UnmarshalSmithyDocument(&input); err != nil || input["city"] != "fake" {
		t.Errorf("tool input = %v (%v), want city fake", input, err)
	}

	// The result goes back; the model answers in text.
	turn := []types.Message{userMsg("weather in Paris?"), {Role: types.ConversationRoleAssistant, Content: msg.Content},
		{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberToolResult{Value: types.ToolResultBlock{
			ToolUseId: use.Value.ToolUseId, Content: []types.ToolResultContentBlock{&types.ToolResultContentBlockMemberText{Value: "sunny"}}}}}}}
	out, err = client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("m"), Messages: turn, ToolConfig: weatherTool()})
	if err != nil {
		t.Fatal(err)
	}
	if out.StopReason != types.StopReasonEndTurn {
		t.Errorf("after the tool result: stopReason %v, want end_turn", out.StopReason)
	}

	// Streamed: the toolUse start and its input in pieces.
	stream, err := client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String("m"),
		Messages: []types.Message{userMsg("weather?")}, ToolConfig: weatherTool()})
	if err != nil {
		t.Fatal(err)
	}
	var name, inputJSON string
	var stop types.StopReason
	for ev := range stream.GetStream().Events() {
		switch v := ev.(type) {
		case *types.ConverseStreamOutputMemberContentBlockStart:
			if s, ok := v.Value.Start.(*types.ContentBlockStartMemberToolUse); ok {
				name = aws.ToString(s.Value.Name)
			}
		case *types.ConverseStreamOutputMemberContentBlockDelta:
			if d, ok := v.Value.Delta.(*types.ContentBlockDeltaMemberToolUse); ok {
				inputJSON += aws.ToString(d.Value.Input)
			}
		case *types.ConverseStreamOutputMemberMessageStop:
			stop = v.Value.StopReason
		}
	}
	if err := stream.GetStream().Err(); err != nil {
		t.Fatal(err)
	}
	if name != "get_weather" || inputJSON != `{"city":"fake"}` || stop != types.StopReasonToolUse {
		t.Errorf("streamed tool call: %q %q %v; want get_weather {\"city\":\"fake\"} tool_use", name, inputJSON, stop)
	}

	for name, in := range map[string]*bedrockruntime.ConverseInput{
		"tool blocks without toolConfig": {ModelId: aws.String("m"), Messages: turn},
		"result for a call never made": {ModelId: aws.String("m"), ToolConfig: weatherTool(), Messages: []types.Message{
			{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberToolResult{Value: types.ToolResultBlock{
				ToolUseId: aws.String("nope"), Content: []types.ToolResultContentBlock{&types.ToolResultContentBlockMemberText{Value: "x"}}}}}}}},
	} {
		var ve *types.ValidationException
		if _, err := client.Converse(ctx, in); !errors.As(err, &ve) {
			t.Errorf("%s: err = %v, want a ValidationException", name, err)
		}
	}
}
