package openai

// The streaming response side: ConverseStream events become
// chat.completion.chunk server-sent events.
//
// What OpenAI sends and the SDKs read (openai-go ChatCompletionChunk,
// ChatCompletionChunkChoice, ChatCompletionChunkChoiceDelta,
// ChatCompletionChunkChoiceDeltaToolCall; the stream_options.include_usage
// documentation; openai-go packages/ssestream, openai-node
// src/core/streaming.ts, openai-python _streaming.py):
//   - every event is one "data: <json>" line and a blank line; the stream
//     ends with "data: [DONE]".
//   - every chunk carries id, object "chat.completion.chunk", created and
//     model, the same in every chunk.
//   - the first chunk's delta is {"role":"assistant","content":""}; text
//     then arrives as delta.content; a tool call starts with
//     delta.tool_calls [{index, id, type:"function", function:{name,
//     arguments:""}}] and its arguments follow as
//     delta.tool_calls [{index, function:{arguments:<piece>}}], index
//     counting the answer's tool calls from 0; a last chunk with an empty
//     delta carries finish_reason.
//   - with include_usage, "an additional chunk will be streamed before the
//     data: [DONE] message. The usage field on this chunk shows the token
//     usage statistics for the entire request, and the choices field will
//     always be an empty array. All other chunks will also include a usage
//     field, but with a null value." Without it, no chunk has a usage
//     field.
//   - an error inside the stream is a data event whose JSON has an "error"
//     key: openai-go ends the stream with a StreamError ("received error
//     while streaming"), openai-node and openai-python raise APIError with
//     the inner object as its body. No chunk may therefore carry an
//     "error" key of its own, and none does.
//
// ConverseStream's events (Converse API reference, ConverseStreamOutput):
// messageStart {role}; contentBlockStart {contentBlockIndex, start:
// {toolUse: {toolUseId, name}}} (text blocks may have no start event);
// contentBlockDelta {contentBlockIndex, delta: {text | toolUse: {input:
// <piece of JSON text>} | reasoningContent | citation}}; contentBlockStop;
// messageStop {stopReason}; metadata {usage, metrics}. Exceptions
// (internalServerException, modelStreamErrorException,
// validationException, throttlingException, serviceUnavailableException)
// arrive as frames with :message-type exception.

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// StreamTranslator turns ConverseStream events into
// chat.completion.chunk SSE lines, for one answer. It keeps the state a
// translation needs (whether the first chunk is out, which content block
// is which tool call, the usage), so events must be given in the order
// Bedrock sent them. It is not safe for concurrent use.
type StreamTranslator struct {
	// prefix is every chunk's opening, up to and including "choices":.
	prefix       []byte
	includeUsage bool
	// started: the role chunk is out. finished: the finish_reason chunk
	// is out. ended: an exception or [DONE] closed the stream; nothing
	// more is written.
	started, finished, ended bool
	// toolIndex maps a toolUse content block to its tool_calls index.
	toolIndex map[int]int
	// usage is the metadata event's usage; usageSent, whether its chunk
	// is out.
	usage     *outUsage
	usageSent bool
}

// NewStreamTranslator returns a translator for one streamed answer: model
// as the caller named it, id and created minted by the caller (the same in
// every chunk, as OpenAI's are), and includeUsage as the request's
// stream_options.include_usage.
func NewStreamTranslator(model, id string, created int64, includeUsage bool) *StreamTranslator {
	p := make([]byte, 0, 96+len(id)+len(model))
	p = append(p, `{"id":`...)
	p = append(p, encodeOut(id)...)
	p = append(p, `,"object":"chat.completion.chunk","created":`...)
	p = strconv.AppendInt(p, created, 10)
	p = append(p, `,"model":`...)
	p = append(p, encodeOut(model)...)
	p = append(p, `,"choices":`...)
	return &StreamTranslator{prefix: p, includeUsage: includeUsage, toolIndex: map[int]int{}}
}

// Chunk parts. A delta's members are omitted when empty, so the finish
// chunk's delta is {}; content is a pointer so the first chunk can carry
// content "".
type outChunkChoice struct {
	Index        int       `json:"index"`
	Delta        outDelta  `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"` // always null
	FinishReason *string   `json:"finish_reason"`
}

type outDelta struct {
	Role      string             `json:"role,omitempty"`
	Content   *string            `json:"content,omitempty"`
	ToolCalls []outDeltaToolCall `json:"tool_calls,omitempty"`
}

// outDeltaToolCall is a tool call piece: id, type and name only in the
// first piece of a call; arguments always present ("" in the first).
type outDeltaToolCall struct {
	Index    int              `json:"index"`
	ID       string           `json:"id,omitempty"`
	Type     string           `json:"type,omitempty"`
	Function outDeltaFunction `json:"function"`
}

type outDeltaFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ConverseStream event payloads, the members read.
type (
	cvBlockStart struct {
		ContentBlockIndex int `json:"contentBlockIndex"`
		Start             struct {
			ToolUse *struct {
				ToolUseID string `json:"toolUseId"`
				Name      string `json:"name"`
			} `json:"toolUse"`
		} `json:"start"`
	}
	cvBlockDelta struct {
		ContentBlockIndex int `json:"contentBlockIndex"`
		Delta             struct {
			Text    *string `json:"text"`
			ToolUse *struct {
				Input string `json:"input"`
			} `json:"toolUse"`
			// reasoningContent, citation and other deltas are dropped,
			// as in ChatCompletion (see cvBlock).
		} `json:"delta"`
	}
	cvMessageStop struct {
		StopReason string `json:"stopReason"`
	}
	cvMetadata struct {
		Usage *cvUsage `json:"usage"`
	}
)

// Event takes one ConverseStream event (its :event-type header and JSON
// payload) and appends the SSE bytes it produces (zero or more
// "data: {...}\n\n" lines) to dst. Event types it does not know are
// skipped, so a new Bedrock event does not break streams. It fails, with
// dst unchanged, if the payload is not the event's JSON or a tool-input
// delta names a content block that no toolUse start opened; the stream is
// then broken and the caller should end it with Exception. After
// Exception or Done it appends nothing.
func (t *StreamTranslator) Event(dst []byte, eventType string, payload []byte) ([]byte, error) {
	if t.ended {
		return dst, nil
	}
	switch eventType {
	case "messageStart":
		return t.start(dst), nil

	case "contentBlockStart":
		var e cvBlockStart
		if err := json.Unmarshal(payload, &e); err != nil {
			return dst, fmt.Errorf("openai: reading a contentBlockStart event: %w", err)
		}
		if e.Start.ToolUse == nil {
			return dst, nil
		}
		i := len(t.toolIndex)
		t.toolIndex[e.ContentBlockIndex] = i
		dst = t.start(dst)
		return t.chunk(dst, &outChunkChoice{Delta: outDelta{ToolCalls: []outDeltaToolCall{{
			Index:    i,
			ID:       e.Start.ToolUse.ToolUseID,
			Type:     "function",
			Function: outDeltaFunction{Name: e.Start.ToolUse.Name},
		}}}}, nil), nil

	case "contentBlockDelta":
		var e cvBlockDelta
		if err := json.Unmarshal(payload, &e); err != nil {
			return dst, fmt.Errorf("openai: reading a contentBlockDelta event: %w", err)
		}
		switch {
		case e.Delta.Text != nil:
			if *e.Delta.Text == "" {
				return dst, nil
			}
			dst = t.start(dst)
			return t.chunk(dst, &outChunkChoice{Delta: outDelta{Content: e.Delta.Text}}, nil), nil
		case e.Delta.ToolUse != nil:
			i, ok := t.toolIndex[e.ContentBlockIndex]
			if !ok {
				return dst, fmt.Errorf("openai: tool input for content block %d, which no toolUse start opened", e.ContentBlockIndex)
			}
			if e.Delta.ToolUse.Input == "" {
				return dst, nil
			}
			return t.chunk(dst, &outChunkChoice{Delta: outDelta{ToolCalls: []outDeltaToolCall{{
				Index:    i,
				Function: outDeltaFunction{Arguments: e.Delta.ToolUse.Input},
			}}}}, nil), nil
		}
		return dst, nil

	case "messageStop":
		var e cvMessageStop
		if err := json.Unmarshal(payload, &e); err != nil {
			return dst, fmt.Errorf("openai: reading a messageStop event: %w", err)
		}
		if t.finished {
			return dst, nil
		}
		dst = t.start(dst) // an empty answer still opens with the role chunk
		reason := finishReasonFor(e.StopReason)
		dst = t.chunk(dst, &outChunkChoice{FinishReason: &reason}, nil)
		t.finished = true
		return t.usageChunk(dst), nil

	case "metadata":
		var e cvMetadata
		if err := json.Unmarshal(payload, &e); err != nil {
			return dst, fmt.Errorf("openai: reading a metadata event: %w", err)
		}
		if u := usageFromConverse(e.Usage); u != nil {
			t.usage = u
		}
		// Bedrock sends metadata after messageStop; were it ever to come
		// first, the usage chunk waits for the finish chunk (or Done), so
		// it stays the last chunk, as OpenAI sends it.
		if t.finished {
			dst = t.usageChunk(dst)
		}
		return dst, nil
	}
	// contentBlockStop needs nothing; unknown events are skipped.
	return dst, nil
}

// Exception handles an exception event (:message-type exception,
// :exception-type e.g. throttlingException, payload {"message":...})
// arriving mid-stream, after the HTTP status (200) is sent: it appends one
// data event carrying an OpenAI error object,
//
//	data: {"error":{"message":...,"type":...,"param":null,"code":"ThrottlingException"}}
//
// which every OpenAI SDK raises as an error (see the file comment), with
// type and code as FromBedrockError gives them for the same error. The
// stream is then over: no [DONE] follows (Done appends nothing), because
// [DONE] tells a client the answer is complete, and the SDKs have stopped
// reading at the error anyway. The gateway may also call Exception for a
// failure of its own mid-stream (e.g. "internalServerException" when the
// upstream connection breaks).
func (t *StreamTranslator) Exception(dst []byte, exceptionType string, payload []byte) []byte {
	if t.ended {
		return dst
	}
	t.ended = true
	name := bedrockErrorName(exceptionType)
	if name != "" && name[0] >= 'a' && name[0] <= 'z' {
		// The event-stream member name, throttlingException, is the
		// error name with its first letter lowered.
		name = string(name[0]-'a'+'A') + name[1:]
	}
	var p struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(payload, &p) // a payload that is not JSON just has no message
	_, typ := classifyBedrockError(name, 0)
	dst = append(dst, "data: "...)
	dst = append(dst, ErrorBody(bedrockErrorText(p.Message, name, 0), typ, "", name)...)
	return append(dst, "\n\n"...)
}

// Done appends the end of the stream once Bedrock's stream has ended: the
// usage chunk, if includeUsage and Bedrock's metadata gave usage and the
// chunk is not yet out, then "data: [DONE]\n\n". Without usage from
// Bedrock no usage chunk is invented: the include_usage documentation
// warns that an interrupted stream may lack it. If no messageStop came,
// the answer was cut short (the upstream stream ended early), so instead
// of [DONE], which would tell the client the answer is complete, Done
// appends an error event as Exception does (server_error, code null).
// After Exception, or a first Done, it appends nothing.
func (t *StreamTranslator) Done(dst []byte) []byte {
	if t.ended {
		return dst
	}
	if !t.finished {
		t.ended = true
		dst = append(dst, "data: "...)
		dst = append(dst, ErrorBody(incompleteStreamMessage, errTypeServer, "", "")...)
		return append(dst, "\n\n"...)
	}
	t.ended = true
	dst = t.usageChunk(dst)
	return append(dst, "data: [DONE]\n\n"...)
}

// incompleteStreamMessage is the error a stream gets when Bedrock's ended
// without a messageStop.
const incompleteStreamMessage = "The Bedrock stream ended before the answer was complete."

// start appends the role chunk if it is not out yet.
func (t *StreamTranslator) start(dst []byte) []byte {
	if t.started {
		return dst
	}
	t.started = true
	empty := ""
	return t.chunk(dst, &outChunkChoice{Delta: outDelta{Role: "assistant", Content: &empty}}, nil)
}

// usageChunk appends the usage chunk if usage is asked for, known and not
// yet sent.
func (t *StreamTranslator) usageChunk(dst []byte) []byte {
	if !t.includeUsage || t.usage == nil || t.usageSent {
		return dst
	}
	t.usageSent = true
	return t.chunk(dst, nil, t.usage)
}

// chunk appends one chunk event: choice as the only choice (none if nil,
// for the usage chunk), and, when usage is asked for, usage (null if nil).
func (t *StreamTranslator) chunk(dst []byte, choice *outChunkChoice, usage *outUsage) []byte {
	dst = append(dst, "data: "...)
	dst = append(dst, t.prefix...)
	if choice == nil {
		dst = append(dst, "[]"...)
	} else {
		dst = append(dst, '[')
		dst = append(dst, encodeOut(choice)...)
		dst = append(dst, ']')
	}
	if t.includeUsage {
		dst = append(dst, `,"usage":`...)
		if usage == nil {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, encodeOut(usage)...)
		}
	}
	return append(dst, "}\n\n"...)
}
