package openai

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go/auth/bearer"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Test images: the signature bytes of each format plus a little more. The
// request side checks signatures only; Bedrock decodes the image.
var (
	rqPNG  = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01")
	rqJPEG = []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01")
	rqGIF  = []byte("GIF89a\x01\x00\x01\x00\x80\x00")
	rqWEBP = []byte("RIFF\x1a\x00\x00\x00WEBPVP8 ")
)

func rqB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func rqDataURL(mediaType string, b []byte) string {
	return "data:" + mediaType + ";base64," + rqB64(b)
}

// rqUser wraps messages (JSON) in a request with model "m".
func rqReq(extra string, messages ...string) string {
	s := `{"model":"m","messages":[` + strings.Join(messages, ",") + `]`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

const (
	rqHi        = `{"role":"user","content":"Hi"}`
	rqToolsDecl = `"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`
	rqCallA     = `{"role":"assistant","content":null,"tool_calls":[{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}`
	rqResultA   = `{"role":"tool","tool_call_id":"call_a","content":"18C"}`
	rqWeatherTS = `{"toolSpec":{"name":"get_weather","description":"Weather for a city","inputSchema":{"json":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}}`
)

type rqOKCase struct {
	name string
	in   string
	want string // the Converse body
}

func rqOKCases() []rqOKCase {
	return []rqOKCase{
		{
			name: "minimal",
			in:   rqReq("", rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`,
		},
		{
			name: "system and developer messages anywhere become system blocks in order",
			in: rqReq("",
				`{"role":"system","content":"Be brief."}`,
				rqHi,
				`{"role":"developer","content":[{"type":"text","text":"Answer in French."},{"type":"text","text":"  "}]}`,
				`{"role":"assistant","content":"Bonjour"}`,
				`{"role":"system","content":""}`,
				`{"role":"user","content":"Thanks"}`),
			want: `{"system":[{"text":"Be brief."},{"text":"Answer in French."}],"messages":[
				{"role":"user","content":[{"text":"Hi"}]},
				{"role":"assistant","content":[{"text":"Bonjour"}]},
				{"role":"user","content":[{"text":"Thanks"}]}]}`,
		},
		{
			name: "user parts: text and inline images, format from the bytes",
			in: rqReq("", `{"role":"user","content":[
				{"type":"text","text":"What is in these?"},
				{"type":"image_url","image_url":{"url":"`+rqDataURL("image/png", rqPNG)+`","detail":"high"}},
				{"type":"image_url","image_url":{"url":"`+rqDataURL("image/jpg", rqJPEG)+`"}},
				{"type":"image_url","image_url":{"url":"`+rqDataURL("image/png", rqGIF)+`","detail":"low"}},
				{"type":"image_url","image_url":{"url":"DATA:IMAGE/WEBP;BASE64,`+base64.RawStdEncoding.EncodeToString(rqWEBP)+`"}}]}`),
			want: `{"messages":[{"role":"user","content":[
				{"text":"What is in these?"},
				{"image":{"format":"png","source":{"bytes":"` + rqB64(rqPNG) + `"}}},
				{"image":{"format":"jpeg","source":{"bytes":"` + rqB64(rqJPEG) + `"}}},
				{"image":{"format":"gif","source":{"bytes":"` + rqB64(rqGIF) + `"}}},
				{"image":{"format":"webp","source":{"bytes":"` + rqB64(rqWEBP) + `"}}}]}]}`,
		},
		{
			name: "consecutive messages of one role are merged, blank text left out",
			in: rqReq("",
				`{"role":"user","content":"a"}`,
				`{"role":"user","content":[{"type":"text","text":"b"},{"type":"text","text":""}]}`,
				`{"role":"assistant","content":"c"}`,
				`{"role":"assistant","content":[{"type":"text","text":"d"}]}`,
				`{"role":"user","content":"e"}`),
			want: `{"messages":[
				{"role":"user","content":[{"text":"a"},{"text":"b"}]},
				{"role":"assistant","content":[{"text":"c"},{"text":"d"}]},
				{"role":"user","content":[{"text":"e"}]}]}`,
		},
		{
			name: "an empty assistant message is dropped",
			in:   rqReq("", `{"role":"user","content":"a"}`, `{"role":"assistant","content":""}`, `{"role":"user","content":"b"}`),
			want: `{"messages":[{"role":"user","content":[{"text":"a"},{"text":"b"}]}]}`,
		},
		{
			name: "tool calls and results; tool messages merge into one user message with the next user text",
			in: rqReq(rqToolsDecl,
				rqHi,
				`{"role":"assistant","content":"Let me check.","tool_calls":[
					{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
					{"id":"toolu_01.b:c-d","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"n\":12345678901234567890,\"x\":1.50}"}}]}`,
				`{"role":"tool","tool_call_id":"toolu_01.b:c-d","content":[{"type":"text","text":"-3C"},{"type":"text","text":"snow"}]}`,
				`{"role":"system","content":"Use Celsius."}`,
				rqResultA,
				`{"role":"user","content":"Thanks"}`),
			want: `{"system":[{"text":"Use Celsius."}],"messages":[
				{"role":"user","content":[{"text":"Hi"}]},
				{"role":"assistant","content":[{"text":"Let me check."},
					{"toolUse":{"toolUseId":"call_a","name":"get_weather","input":{"city":"Paris"}}},
					{"toolUse":{"toolUseId":"toolu_01.b:c-d","name":"get_weather","input":{"city":"Oslo","n":12345678901234567890,"x":1.50}}}]},
				{"role":"user","content":[
					{"toolResult":{"toolUseId":"toolu_01.b:c-d","content":[{"text":"-3C"},{"text":"snow"}]}},
					{"toolResult":{"toolUseId":"call_a","content":[{"text":"18C"}]}},
					{"text":"Thanks"}]}],
				"toolConfig":{"tools":[` + rqWeatherTS + `]}}`,
		},
		{
			name: "empty arguments are no arguments; an empty tool result stays empty",
			in: rqReq(`"tools":[{"type":"function","function":{"name":"now"}}]`,
				rqHi,
				`{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"now","arguments":""}}]}`,
				`{"role":"tool","tool_call_id":"c1","content":""}`),
			want: `{"messages":[
				{"role":"user","content":[{"text":"Hi"}]},
				{"role":"assistant","content":[{"toolUse":{"toolUseId":"c1","name":"now","input":{}}}]},
				{"role":"user","content":[{"toolResult":{"toolUseId":"c1","content":[{"text":""}]}}]}],
				"toolConfig":{"tools":[{"toolSpec":{"name":"now","inputSchema":{"json":{"type":"object","properties":{}}}}}]}}`,
		},
		{
			name: "refusals are what the assistant said",
			in: rqReq("", rqHi,
				`{"role":"assistant","content":null,"refusal":"I can't help with that."}`,
				`{"role":"user","content":"Why?"}`,
				`{"role":"assistant","content":[{"type":"refusal","refusal":"Policy."}]}`,
				`{"role":"user","content":"OK"}`),
			want: `{"messages":[
				{"role":"user","content":[{"text":"Hi"}]},
				{"role":"assistant","content":[{"text":"I can't help with that."}]},
				{"role":"user","content":[{"text":"Why?"}]},
				{"role":"assistant","content":[{"text":"Policy."}]},
				{"role":"user","content":[{"text":"OK"}]}]}`,
		},
		{
			name: "tools: default, typeless and strict schemas; tool_choice auto",
			in: rqReq(`"tools":[
				{"type":"function","function":{"name":"a","description":"","parameters":{}}},
				{"type":"function","function":{"name":"b-2","parameters":{"properties":{"q":{"type":"string"}}},"strict":true}},
				{"type":"function","function":{"name":"C_3","description":"c","strict":false}}],
				"tool_choice":"auto"`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"toolConfig":{"tools":[
				{"toolSpec":{"name":"a","inputSchema":{"json":{"type":"object"}}}},
				{"toolSpec":{"name":"b-2","inputSchema":{"json":{"type":"object","properties":{"q":{"type":"string"}}}},"strict":true}},
				{"toolSpec":{"name":"C_3","description":"c","inputSchema":{"json":{"type":"object","properties":{}}}}}],
				"toolChoice":{"auto":{}}}}`,
		},
		{
			name: "tool_choice required is any",
			in:   rqReq(rqToolsDecl+`,"tool_choice":"required","parallel_tool_calls":true`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"toolConfig":{"tools":[` + rqWeatherTS + `],"toolChoice":{"any":{}}}}`,
		},
		{
			name: "tool_choice naming a function is tool",
			in:   rqReq(rqToolsDecl+`,"tool_choice":{"type":"function","function":{"name":"get_weather"}}`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"toolConfig":{"tools":[` + rqWeatherTS + `],"toolChoice":{"tool":{"name":"get_weather"}}}}`,
		},
		{
			name: "tool_choice none without tool history offers no tools, so parallel_tool_calls false holds",
			in:   rqReq(rqToolsDecl+`,"tool_choice":"none","parallel_tool_calls":false`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`,
		},
		{
			name: "parallel_tool_calls false without tools",
			in:   rqReq(`"parallel_tool_calls":false,"tools":[]`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`,
		},
		{
			name: "inference parameters",
			in:   rqReq(`"max_tokens":256,"max_completion_tokens":256,"temperature":0.5,"top_p":0.9,"stop":["\n\n","END"]`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"maxTokens":256,"temperature":0.5,"topP":0.9,"stopSequences":["\n\n","END"]}}`,
		},
		{
			name: "zero temperature, integral float max_completion_tokens, stop string",
			in:   rqReq(`"max_completion_tokens":1e3,"temperature":0,"top_p":1,"stop":"###"`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"maxTokens":1000,"temperature":0,"topP":1,"stopSequences":["###"]}}`,
		},
		{
			name: "temperature 1 is the top of both ranges",
			in:   rqReq(`"temperature":1`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"temperature":1}}`,
		},
		{
			name: "streaming does not change the body",
			in:   rqReq(`"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`,
		},
		{
			name: "response_format json_schema is structured output; reasoning_effort is effort",
			in: rqReq(`"response_format":{"type":"json_schema","json_schema":{"name":"answer","description":"The answer","strict":true,
				"schema":{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"],"additionalProperties":false}}},
				"reasoning_effort":"high"`, rqHi),
			want: `{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"outputConfig":{"effort":"high","textFormat":{"type":"json_schema","structure":{"jsonSchema":{
				"name":"answer","description":"The answer",
				"schema":"{\"additionalProperties\":false,\"properties\":{\"n\":{\"type\":\"integer\"}},\"required\":[\"n\"],\"type\":\"object\"}"}}}}}`,
		},
		{
			name: "accepted and ignored: defaults, hints, names, annotations, nulls",
			in: rqReq(`"response_format":{"type":"text"},"n":1,"logprobs":false,"top_logprobs":0,"logit_bias":{},
				"presence_penalty":0,"frequency_penalty":0.0,"modalities":["text"],"store":false,"service_tier":"auto",
				"user":"u-1","safety_identifier":"hash","prompt_cache_key":"k","prompt_cache_retention":"24h",
				"prompt_cache_options":{"mode":"implicit","ttl":"30m"},"metadata":{"team":"a","run":"7"},
				"seed":null,"audio":null,"functions":null,"function_call":null,"stream":null,"stream_options":null,
				"tools":null,"tool_choice":null,"max_tokens":null,"temperature":null,"stop":null,"reasoning_effort":null`,
				`{"role":"system","name":"sys","content":"S"}`,
				`{"role":"user","name":"alice","content":[{"type":"text","text":"Hi","prompt_cache_breakpoint":{"mode":"explicit"}}]}`,
				`{"role":"assistant","name":"bot","content":"Hello","refusal":null,"annotations":[],"audio":null,"function_call":null,"tool_calls":[]}`,
				`{"role":"user","content":"Bye"}`),
			want: `{"system":[{"text":"S"}],"messages":[
				{"role":"user","content":[{"text":"Hi"}]},
				{"role":"assistant","content":[{"text":"Hello"}]},
				{"role":"user","content":[{"text":"Bye"}]}]}`,
		},
		{
			name: "image limits count per Converse message; tool messages may carry a name",
			in: rqReq(`"tools":[{"type":"function","function":{"name":"look"}}]`,
				`{"role":"user","content":[`+strings.Repeat(`{"type":"image_url","image_url":{"url":"`+rqDataURL("image/png", rqPNG)+`"}},`, 19)+`{"type":"text","text":"a"}]}`,
				`{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"look","arguments":"{}"}}]}`,
				`{"role":"tool","tool_call_id":"c","name":"look","content":"seen"}`,
				`{"role":"user","content":[`+strings.Repeat(`{"type":"image_url","image_url":{"url":"`+rqDataURL("image/png", rqPNG)+`"}},`, 19)+`{"type":"text","text":"b"}]}`),
			want: `{"messages":[
				{"role":"user","content":[` + strings.Repeat(`{"image":{"format":"png","source":{"bytes":"`+rqB64(rqPNG)+`"}}},`, 19) + `{"text":"a"}]},
				{"role":"assistant","content":[{"toolUse":{"toolUseId":"c","name":"look","input":{}}}]},
				{"role":"user","content":[{"toolResult":{"toolUseId":"c","content":[{"text":"seen"}]}},` + strings.Repeat(`{"image":{"format":"png","source":{"bytes":"`+rqB64(rqPNG)+`"}}},`, 19) + `{"text":"b"}]}],
				"toolConfig":{"tools":[{"toolSpec":{"name":"look","inputSchema":{"json":{"type":"object","properties":{}}}}}]}}`,
		},
		{
			name: "text is sent as given, unicode and markup included",
			in:   rqReq("", `{"role":"user","content":"<b>caf\u00e9</b> & \ud83d\ude00 \u0000"}`),
			want: `{"messages":[{"role":"user","content":[{"text":"<b>café</b> & 😀 \u0000"}]}]}`,
		},
	}
}

func TestParseChatRequestConverseBody(t *testing.T) {
	for _, tc := range rqOKCases() {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseChatRequest([]byte(tc.in))
			if err != nil {
				t.Fatalf("ParseChatRequest() error = %v", err)
			}
			if r.Model != "m" {
				t.Errorf("Model = %q, want %q", r.Model, "m")
			}
			got, err := r.ConverseBody()
			if err != nil {
				t.Fatalf("ConverseBody() error = %v", err)
			}
			rqJSONEqual(t, got, []byte(tc.want))
			rqCheckMirror(t, got)
			rqSDKRoundTrip(t, got)
		})
	}
}

type rqErrCase struct {
	name  string
	in    string
	param string
	code  string
}

func rqErrCases() []rqErrCase {
	big := strings.Repeat("A", 5600000) // 4.2 MB decoded
	var manyImages []string
	for range 21 {
		manyImages = append(manyImages, `{"type":"image_url","image_url":{"url":"`+rqDataURL("image/png", rqPNG)+`"}}`)
	}
	user := func(content string) string { return rqReq("", `{"role":"user","content":`+content+`}`) }
	part := func(p string) string { return user(`[{"type":"text","text":"x"},` + p + `]`) }
	call := func(id, name, args string) string {
		return fmt.Sprintf(`{"role":"assistant","tool_calls":[{"id":%q,"type":"function","function":{"name":%q,"arguments":%q}}]}`, id, name, args)
	}
	return []rqErrCase{
		// The body.
		{"empty body", ``, "", "invalid_json"},
		{"truncated", `{"model":"m","messages":[`, "", "invalid_json"},
		{"trailing data", rqReq("", rqHi) + `{}`, "", "invalid_json"},
		{"array body", `[` + rqReq("", rqHi) + `]`, "", "invalid_json"},
		{"string body", `"hi"`, "", "invalid_json"},
		{"unknown parameter", rqReq(`"foo":1`, rqHi), "foo", "unknown_parameter"},
		{"misspelt parameter", rqReq(`"max_token":1`, rqHi), "max_token", "unknown_parameter"},

		// model and messages.
		{"no model", `{"messages":[` + rqHi + `]}`, "model", "missing_required_parameter"},
		{"null model", `{"model":null,"messages":[` + rqHi + `]}`, "model", "missing_required_parameter"},
		{"empty model", `{"model":" ","messages":[` + rqHi + `]}`, "model", "invalid_value"},
		{"numeric model", `{"model":5,"messages":[` + rqHi + `]}`, "model", "invalid_type"},
		{"no messages", `{"model":"m"}`, "messages", "missing_required_parameter"},
		{"empty messages", `{"model":"m","messages":[]}`, "messages", "invalid_value"},
		{"messages object", `{"model":"m","messages":{}}`, "messages", "invalid_type"},
		{"message string", `{"model":"m","messages":["hi"]}`, "messages[0]", "invalid_type"},
		{"no role", rqReq("", `{"content":"hi"}`), "messages[0].role", "missing_required_parameter"},
		{"bad role", rqReq("", `{"role":"human","content":"hi"}`), "messages[0].role", "invalid_value"},
		{"function role", rqReq("", rqHi, `{"role":"function","name":"f","content":"x"}`), "messages[1].role", "unsupported_value"},
		{"unknown message key", rqReq("", `{"role":"user","content":"hi","tool_calls":[]}`), "messages[0].tool_calls", "unknown_parameter"},
		{"no user content", rqReq("", `{"role":"user"}`), "messages[0].content", "missing_required_parameter"},
		{"numeric content", user(`5`), "messages[0].content", "invalid_type"},
		{"empty content", user(`""`), "messages[0].content", "invalid_value"},
		{"blank content", user(`" \n\t"`), "messages[0].content", "invalid_value"},
		{"no parts", user(`[]`), "messages[0].content", "invalid_value"},
		{"numeric name", rqReq("", `{"role":"user","content":"hi","name":1}`), "messages[0].name", "invalid_type"},
		{"only system", rqReq("", `{"role":"system","content":"S"}`), "messages", "invalid_value"},
		{"assistant first", rqReq("", `{"role":"system","content":"S"}`, `{"role":"assistant","content":"Hello"}`, rqHi), "messages[1].role", "invalid_value"},

		// Content parts.
		{"part without type", part(`{"text":"y"}`), "messages[0].content[1].type", "missing_required_parameter"},
		{"unknown part type", part(`{"type":"image","image":"x"}`), "messages[0].content[1].type", "invalid_value"},
		{"text without text", part(`{"type":"text"}`), "messages[0].content[1].text", "missing_required_parameter"},
		{"unknown part key", part(`{"type":"text","text":"y","cache_control":{}}`), "messages[0].content[1].cache_control", "unknown_parameter"},
		{"input_audio", part(`{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}`), "messages[0].content[1].type", "unsupported_value"},
		{"file", part(`{"type":"file","file":{"file_id":"f"}}`), "messages[0].content[1].type", "unsupported_value"},
		{"refusal part in user message", part(`{"type":"refusal","refusal":"no"}`), "messages[0].content[1].type", "invalid_value"},
		{"image in system message", rqReq("", `{"role":"system","content":[{"type":"image_url","image_url":{"url":"x"}}]}`, rqHi), "messages[0].content[0].type", "invalid_value"},
		{"image in assistant message", rqReq("", rqHi, `{"role":"assistant","content":[{"type":"image_url","image_url":{"url":"x"}}]}`), "messages[1].content[0].type", "invalid_value"},
		{"image in tool message", rqReq(rqToolsDecl, rqHi, rqCallA, `{"role":"tool","tool_call_id":"call_a","content":[{"type":"image_url","image_url":{"url":"x"}}]}`), "messages[2].content[0].type", "invalid_value"},
		{"https image", part(`{"type":"image_url","image_url":{"url":"https://example.com/cat.png?X-Amz-Signature=secret"}}`), "messages[0].content[1].image_url.url", "unsupported_value"},
		{"http image", part(`{"type":"image_url","image_url":{"url":"HTTP://example.com/cat.png"}}`), "messages[0].content[1].image_url.url", "unsupported_value"},
		{"ftp image", part(`{"type":"image_url","image_url":{"url":"ftp://example.com/cat.png"}}`), "messages[0].content[1].image_url.url", "invalid_value"},
		{"image_url string", part(`{"type":"image_url","image_url":"data:image/png;base64,AAAA"}`), "messages[0].content[1].image_url", "invalid_type"},
		{"image without url", part(`{"type":"image_url","image_url":{"detail":"low"}}`), "messages[0].content[1].image_url.url", "missing_required_parameter"},
		{"bad detail", part(`{"type":"image_url","image_url":{"url":"` + rqDataURL("image/png", rqPNG) + `","detail":"ultra"}}`), "messages[0].content[1].image_url.detail", "invalid_value"},
		{"pdf data URL", part(`{"type":"image_url","image_url":{"url":"` + rqDataURL("application/pdf", []byte("%PDF-1.7")) + `"}}`), "messages[0].content[1].image_url.url", "unsupported_value"},
		{"data URL without base64", part(`{"type":"image_url","image_url":{"url":"data:image/png,abc"}}`), "messages[0].content[1].image_url.url", "invalid_value"},
		{"data URL without comma", part(`{"type":"image_url","image_url":{"url":"data:image/png;base64"}}`), "messages[0].content[1].image_url.url", "invalid_value"},
		{"bad base64", part(`{"type":"image_url","image_url":{"url":"data:image/png;base64,***"}}`), "messages[0].content[1].image_url.url", "invalid_value"},
		{"empty image", part(`{"type":"image_url","image_url":{"url":"data:image/png;base64,"}}`), "messages[0].content[1].image_url.url", "invalid_value"},
		{"not an image", part(`{"type":"image_url","image_url":{"url":"` + rqDataURL("image/png", []byte("hello, world")) + `"}}`), "messages[0].content[1].image_url.url", "unsupported_value"},
		{"bmp image", part(`{"type":"image_url","image_url":{"url":"` + rqDataURL("image/bmp", []byte("BM\x00\x00\x00\x00")) + `"}}`), "messages[0].content[1].image_url.url", "unsupported_value"},
		{"image too large", part(`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + big + `"}}`), "messages[0].content[1].image_url.url", "invalid_value"},
		{"21 images", user(`[` + strings.Join(manyImages, ",") + `]`), "messages[0].content[20]", "invalid_value"},
		{"21 images in merged user messages", rqReq("",
			`{"role":"user","content":[`+strings.Join(manyImages[:11], ",")+`]}`,
			`{"role":"user","content":[`+strings.Join(manyImages[:10], ",")+`]}`), "messages[1].content[9]", "invalid_value"},

		// Assistant messages and tool calls.
		{"function_call in assistant", rqReq("", rqHi, `{"role":"assistant","function_call":{"name":"f","arguments":"{}"}}`), "messages[1].function_call", "unsupported_parameter"},
		{"audio in assistant", rqReq("", rqHi, `{"role":"assistant","audio":{"id":"a1"}}`), "messages[1].audio", "unsupported_parameter"},
		{"custom tool call", rqReq(rqToolsDecl, rqHi, `{"role":"assistant","tool_calls":[{"id":"c","type":"custom","custom":{"name":"x","input":"y"}}]}`), "messages[1].tool_calls[0].type", "unsupported_value"},
		{"tool call without type", rqReq(rqToolsDecl, rqHi, `{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"get_weather","arguments":"{}"}}]}`), "messages[1].tool_calls[0].type", "missing_required_parameter"},
		{"tool call without id", rqReq(rqToolsDecl, rqHi, `{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`), "messages[1].tool_calls[0].id", "missing_required_parameter"},
		{"tool call without arguments", rqReq(rqToolsDecl, rqHi, `{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"get_weather"}}]}`), "messages[1].tool_calls[0].function.arguments", "missing_required_parameter"},
		{"object arguments", rqReq(rqToolsDecl, rqHi, `{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"get_weather","arguments":{}}}]}`), "messages[1].tool_calls[0].function.arguments", "invalid_type"},
		{"array arguments", rqReq(rqToolsDecl, rqHi, call("c", "get_weather", `[1]`)), "messages[1].tool_calls[0].function.arguments", "invalid_value"},
		{"non-JSON arguments", rqReq(rqToolsDecl, rqHi, call("c", "get_weather", `{city: Paris}`)), "messages[1].tool_calls[0].function.arguments", "invalid_value"},
		{"arguments with trailing data", rqReq(rqToolsDecl, rqHi, call("c", "get_weather", `{}{}`)), "messages[1].tool_calls[0].function.arguments", "invalid_value"},
		{"arguments with trailing garbage", rqReq(rqToolsDecl, rqHi, call("c", "get_weather", `{"city":"Paris"} x`)), "messages[1].tool_calls[0].function.arguments", "invalid_value"},
		{"arguments with a trailing bracket", rqReq(rqToolsDecl, rqHi, call("c", "get_weather", `{"city":"Paris"}]`)), "messages[1].tool_calls[0].function.arguments", "invalid_value"},
		{"tool call ID Converse refuses", rqReq(rqToolsDecl, rqHi, call("call a", "get_weather", `{}`)), "messages[1].tool_calls[0].id", "invalid_value"},
		{"tool call ID too long", rqReq(rqToolsDecl, rqHi, call(strings.Repeat("c", 65), "get_weather", `{}`)), "messages[1].tool_calls[0].id", "invalid_value"},
		{"tool call name Converse refuses", rqReq(rqToolsDecl, rqHi, call("c", "get weather", `{}`)), "messages[1].tool_calls[0].function.name", "invalid_value"},
		{"duplicate tool call IDs", rqReq(rqToolsDecl, rqHi, `{"role":"assistant","tool_calls":[
			{"id":"c","type":"function","function":{"name":"get_weather","arguments":"{}"}},
			{"id":"c","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`), "messages[1].tool_calls[1].id", "invalid_value"},

		// Tool messages.
		{"tool message without tool_call_id", rqReq(rqToolsDecl, rqHi, rqCallA, `{"role":"tool","content":"x"}`), "messages[2].tool_call_id", "missing_required_parameter"},
		{"tool message without content", rqReq(rqToolsDecl, rqHi, rqCallA, `{"role":"tool","tool_call_id":"call_a"}`), "messages[2].content", "missing_required_parameter"},
		{"tool result for an unknown call", rqReq(rqToolsDecl, rqHi, rqCallA, `{"role":"tool","tool_call_id":"call_b","content":"x"}`), "messages[2].tool_call_id", "invalid_value"},
		{"tool result answered twice", rqReq(rqToolsDecl, rqHi, rqCallA, rqResultA, rqResultA), "messages[3].tool_call_id", "invalid_value"},
		{"tool result without a call", rqReq(rqToolsDecl, rqHi, rqResultA), "messages[1].tool_call_id", "invalid_value"},
		{"tool result after the user spoke", rqReq(rqToolsDecl, rqHi, rqCallA, rqResultA, `{"role":"user","content":"and?"}`, rqResultA), "messages[4].tool_call_id", "invalid_value"},
		{"tool call not answered before the user", rqReq(rqToolsDecl, rqHi, rqCallA, `{"role":"user","content":"?"}`), "messages[1].tool_calls", "invalid_value"},
		{"tool call not answered before the assistant", rqReq(rqToolsDecl, rqHi, rqCallA, `{"role":"assistant","content":"?"}`), "messages[1].tool_calls", "invalid_value"},
		{"tool call not answered at the end", rqReq(rqToolsDecl, rqHi, rqCallA), "messages[1].tool_calls", "invalid_value"},
		{"tool history without tools", rqReq("", rqHi, rqCallA, rqResultA), "tools", "missing_required_parameter"},
		{"tool_choice none with tool history", rqReq(rqToolsDecl+`,"tool_choice":"none"`, rqHi, rqCallA, rqResultA), "tool_choice", "unsupported_value"},

		// tools and tool_choice.
		{"tools object", rqReq(`"tools":{}`, rqHi), "tools", "invalid_type"},
		{"tool without type", rqReq(`"tools":[{"function":{"name":"f"}}]`, rqHi), "tools[0].type", "missing_required_parameter"},
		{"custom tool", rqReq(`"tools":[{"type":"custom","custom":{"name":"f"}}]`, rqHi), "tools[0].type", "unsupported_value"},
		{"tool without function", rqReq(`"tools":[{"type":"function"}]`, rqHi), "tools[0].function", "missing_required_parameter"},
		{"unknown tool key", rqReq(`"tools":[{"type":"function","function":{"name":"f","examples":[]}}]`, rqHi), "tools[0].function.examples", "unknown_parameter"},
		{"tool name with a space", rqReq(`"tools":[{"type":"function","function":{"name":"get weather"}}]`, rqHi), "tools[0].function.name", "invalid_value"},
		{"tool name too long", rqReq(`"tools":[{"type":"function","function":{"name":"`+strings.Repeat("f", 65)+`"}}]`, rqHi), "tools[0].function.name", "invalid_value"},
		{"duplicate tool names", rqReq(`"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]`, rqHi), "tools[1].function.name", "invalid_value"},
		{"array parameters schema", rqReq(`"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"array"}}}]`, rqHi), "tools[0].function.parameters", "invalid_value"},
		{"string parameters", rqReq(`"tools":[{"type":"function","function":{"name":"f","parameters":"{}"}}]`, rqHi), "tools[0].function.parameters", "invalid_type"},
		{"string strict", rqReq(`"tools":[{"type":"function","function":{"name":"f","strict":"yes"}}]`, rqHi), "tools[0].function.strict", "invalid_type"},
		{"tool_choice required without tools", rqReq(`"tool_choice":"required"`, rqHi), "tool_choice", "invalid_value"},
		{"tool_choice unknown function", rqReq(rqToolsDecl+`,"tool_choice":{"type":"function","function":{"name":"get_time"}}`, rqHi), "tool_choice.function.name", "invalid_value"},
		{"tool_choice bogus", rqReq(rqToolsDecl+`,"tool_choice":"any"`, rqHi), "tool_choice", "invalid_value"},
		{"tool_choice number", rqReq(rqToolsDecl+`,"tool_choice":1`, rqHi), "tool_choice", "invalid_type"},
		{"tool_choice allowed_tools", rqReq(rqToolsDecl+`,"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[]}}`, rqHi), "tool_choice.type", "unsupported_value"},
		{"tool_choice without function", rqReq(rqToolsDecl+`,"tool_choice":{"type":"function"}`, rqHi), "tool_choice.function", "missing_required_parameter"},
		{"parallel_tool_calls false", rqReq(rqToolsDecl+`,"parallel_tool_calls":false`, rqHi), "parallel_tool_calls", "unsupported_value"},
		{"parallel_tool_calls string", rqReq(`"parallel_tool_calls":"no"`, rqHi), "parallel_tool_calls", "invalid_type"},

		// Inference parameters.
		{"max_tokens zero", rqReq(`"max_tokens":0`, rqHi), "max_tokens", "invalid_value"},
		{"max_completion_tokens negative", rqReq(`"max_completion_tokens":-5`, rqHi), "max_completion_tokens", "invalid_value"},
		{"max_tokens beyond int32", rqReq(`"max_tokens":3000000000`, rqHi), "max_tokens", "invalid_value"},
		{"max_tokens huge", rqReq(`"max_tokens":1e300`, rqHi), "max_tokens", "invalid_value"},
		{"max_tokens overflow", rqReq(`"max_tokens":1e400`, rqHi), "max_tokens", "invalid_value"},
		{"max_tokens fraction", rqReq(`"max_tokens":1.5`, rqHi), "max_tokens", "invalid_type"},
		{"max_tokens string", rqReq(`"max_tokens":"10"`, rqHi), "max_tokens", "invalid_type"},
		{"max_tokens and max_completion_tokens differ", rqReq(`"max_tokens":10,"max_completion_tokens":20`, rqHi), "max_tokens", "invalid_value"},
		{"temperature above Converse's 1", rqReq(`"temperature":1.5`, rqHi), "temperature", "unsupported_value"},
		{"temperature above OpenAI's 2", rqReq(`"temperature":2.5`, rqHi), "temperature", "invalid_value"},
		{"negative temperature", rqReq(`"temperature":-0.1`, rqHi), "temperature", "invalid_value"},
		{"temperature string", rqReq(`"temperature":"hot"`, rqHi), "temperature", "invalid_type"},
		{"temperature overflow", rqReq(`"temperature":1e999`, rqHi), "temperature", "invalid_value"},
		{"top_p above 1", rqReq(`"top_p":1.01`, rqHi), "top_p", "invalid_value"},
		{"five stop sequences", rqReq(`"stop":["a","b","c","d","e"]`, rqHi), "stop", "invalid_value"},
		{"empty stop sequence", rqReq(`"stop":["a",""]`, rqHi), "stop[1]", "invalid_value"},
		{"empty stop string", rqReq(`"stop":""`, rqHi), "stop[0]", "invalid_value"},
		{"numeric stop", rqReq(`"stop":5`, rqHi), "stop", "invalid_type"},
		{"numeric stop sequence", rqReq(`"stop":[5]`, rqHi), "stop[0]", "invalid_type"},

		// Streaming.
		{"stream string", rqReq(`"stream":"yes"`, rqHi), "stream", "invalid_type"},
		{"stream_options without stream", rqReq(`"stream_options":{"include_usage":true}`, rqHi), "stream_options", "invalid_value"},
		{"stream_options with stream false", rqReq(`"stream":false,"stream_options":{"include_usage":true}`, rqHi), "stream_options", "invalid_value"},
		{"stream_options unknown key", rqReq(`"stream":true,"stream_options":{"include_usage":true,"chunk_size":1}`, rqHi), "stream_options.chunk_size", "unknown_parameter"},
		{"include_usage string", rqReq(`"stream":true,"stream_options":{"include_usage":"true"}`, rqHi), "stream_options.include_usage", "invalid_type"},

		// Parameters Converse cannot honour.
		{"n 2", rqReq(`"n":2`, rqHi), "n", "unsupported_parameter"},
		{"n 0", rqReq(`"n":0`, rqHi), "n", "invalid_value"},
		{"logprobs", rqReq(`"logprobs":true`, rqHi), "logprobs", "unsupported_parameter"},
		{"top_logprobs", rqReq(`"top_logprobs":5`, rqHi), "top_logprobs", "unsupported_parameter"},
		{"logit_bias", rqReq(`"logit_bias":{"50256":-100}`, rqHi), "logit_bias", "unsupported_parameter"},
		{"presence_penalty", rqReq(`"presence_penalty":0.5`, rqHi), "presence_penalty", "unsupported_parameter"},
		{"frequency_penalty", rqReq(`"frequency_penalty":-1`, rqHi), "frequency_penalty", "unsupported_parameter"},
		{"frequency_penalty out of range", rqReq(`"frequency_penalty":3`, rqHi), "frequency_penalty", "invalid_value"},
		{"seed", rqReq(`"seed":42`, rqHi), "seed", "unsupported_parameter"},
		{"response_format json_object", rqReq(`"response_format":{"type":"json_object"}`, rqHi), "response_format", "unsupported_parameter"},
		{"response_format unknown", rqReq(`"response_format":{"type":"yaml"}`, rqHi), "response_format.type", "invalid_value"},
		{"response_format without schema", rqReq(`"response_format":{"type":"json_schema","json_schema":{"name":"a"}}`, rqHi), "response_format.json_schema.schema", "missing_required_parameter"},
		{"response_format bad schema name", rqReq(`"response_format":{"type":"json_schema","json_schema":{"name":"a b","schema":{}}}`, rqHi), "response_format.json_schema.name", "invalid_value"},
		{"response_format without json_schema", rqReq(`"response_format":{"type":"json_schema"}`, rqHi), "response_format.json_schema", "missing_required_parameter"},
		{"audio", rqReq(`"audio":{"voice":"alloy","format":"wav"}`, rqHi), "audio", "unsupported_parameter"},
		{"audio modality", rqReq(`"modalities":["text","audio"]`, rqHi), "modalities", "unsupported_parameter"},
		{"prediction", rqReq(`"prediction":{"type":"content","content":"x"}`, rqHi), "prediction", "unsupported_parameter"},
		{"web_search_options", rqReq(`"web_search_options":{}`, rqHi), "web_search_options", "unsupported_parameter"},
		{"verbosity", rqReq(`"verbosity":"low"`, rqHi), "verbosity", "unsupported_parameter"},
		{"moderation", rqReq(`"moderation":{"model":"omni-moderation-latest"}`, rqHi), "moderation", "unsupported_parameter"},
		{"functions", rqReq(`"functions":[{"name":"f"}]`, rqHi), "functions", "unsupported_parameter"},
		{"function_call", rqReq(`"function_call":"auto"`, rqHi), "function_call", "unsupported_parameter"},
		{"store true", rqReq(`"store":true`, rqHi), "store", "unsupported_value"},
		{"flex tier", rqReq(`"service_tier":"flex"`, rqHi), "service_tier", "unsupported_value"},
		{"priority tier", rqReq(`"service_tier":"priority"`, rqHi), "service_tier", "unsupported_value"},
		{"unknown tier", rqReq(`"service_tier":"gold"`, rqHi), "service_tier", "invalid_value"},
		{"reasoning_effort minimal", rqReq(`"reasoning_effort":"minimal"`, rqHi), "reasoning_effort", "unsupported_value"},
		{"reasoning_effort none", rqReq(`"reasoning_effort":"none"`, rqHi), "reasoning_effort", "unsupported_value"},
		{"reasoning_effort unknown", rqReq(`"reasoning_effort":"extreme"`, rqHi), "reasoning_effort", "invalid_value"},

		// Accepted-and-ignored parameters still have types.
		{"user number", rqReq(`"user":1`, rqHi), "user", "invalid_type"},
		{"metadata string", rqReq(`"metadata":"x"`, rqHi), "metadata", "invalid_type"},
		{"metadata number value", rqReq(`"metadata":{"a":1}`, rqHi), "metadata.a", "invalid_type"},
		{"metadata too many pairs", rqReq(`"metadata":{`+rqPairs(17)+`}`, rqHi), "metadata", "invalid_value"},
		{"metadata value too long", rqReq(`"metadata":{"a":"`+strings.Repeat("v", 513)+`"}`, rqHi), "metadata.a", "invalid_value"},
		{"safety_identifier too long", rqReq(`"safety_identifier":"`+strings.Repeat("s", 65)+`"`, rqHi), "safety_identifier", "invalid_value"},
		{"prompt_cache_retention unknown", rqReq(`"prompt_cache_retention":"forever"`, rqHi), "prompt_cache_retention", "invalid_value"},
		{"prompt_cache_options unknown key", rqReq(`"prompt_cache_options":{"size":1}`, rqHi), "prompt_cache_options.size", "unknown_parameter"},
		{"annotations object", rqReq("", rqHi, `{"role":"assistant","content":"x","annotations":{}}`), "messages[1].annotations", "invalid_type"},
	}
}

func rqPairs(n int) string {
	var pairs []string
	for i := range n {
		pairs = append(pairs, fmt.Sprintf(`"k%d":"v"`, i))
	}
	return strings.Join(pairs, ",")
}

func TestParseChatRequestErrors(t *testing.T) {
	for _, tc := range rqErrCases() {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseChatRequest([]byte(tc.in))
			if err == nil {
				body, _ := r.ConverseBody()
				t.Fatalf("ParseChatRequest() succeeded, want %s on %s; body %s", tc.code, tc.param, rqHead(body))
			}
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("ParseChatRequest() error = %T %v, want *RequestError", err, err)
			}
			if re.Param != tc.param || re.Code != tc.code {
				t.Errorf("ParseChatRequest() error = {Param: %q, Code: %q, Message: %q}, want Param %q, Code %q", re.Param, re.Code, re.Message, tc.param, tc.code)
			}
			rqCheckMessage(t, re, []byte(tc.in))
		})
	}
}

// rqCheckMessage checks what every *RequestError must be: a code, a
// sentence, and no more than 64 consecutive bytes of the request in it.
func rqCheckMessage(t testing.TB, re *RequestError, in []byte) {
	t.Helper()
	if re.Code == "" || re.Message == "" {
		t.Errorf("RequestError %+v has an empty Code or Message", re)
	}
	if s, ok := rqEchoes(re.Message, in); ok {
		t.Errorf("RequestError.Message %q echoes %d bytes of the request: %q", re.Message, len(s), s)
	}
	if !strings.Contains(re.Error(), re.Message) || !strings.Contains(re.Error(), re.Code) {
		t.Errorf("Error() = %q lacks the message or code", re.Error())
	}
}

// rqEchoes reports a run of more than 64 bytes of msg that occurs in in.
func rqEchoes(msg string, in []byte) (string, bool) {
	const n = 65
	for i := 0; i+n <= len(msg); i++ {
		if bytes.Contains(in, []byte(msg[i:i+n])) {
			return msg[i : i+n], true
		}
	}
	return "", false
}

func rqHead(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// TestRequestErrorNoEcho sends secrets and long contents where errors
// happen and checks that no message repeats them.
func TestRequestErrorNoEcho(t *testing.T) {
	secret := "sk-" + strings.Repeat("0123456789abcdef", 8)
	for _, in := range []string{
		rqReq(`"`+secret+`":1`, rqHi),
		rqReq("", `{"role":"`+secret+`","content":"x"}`),
		rqReq("", `{"role":"user","content":[{"type":"`+secret+`"}]}`),
		rqReq("", `{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png?token=`+secret+`"}}]}`),
		rqReq("", `{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/`+secret+`;base64,AAAA"}}]}`),
		rqReq("", `{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:`+secret+`;base64,AAAA"}}]}`),
		rqReq(rqToolsDecl, rqHi, `{"role":"assistant","tool_calls":[{"id":"`+secret+`","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`),
		rqReq(rqToolsDecl, rqHi, `{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"`+secret+`","arguments":"{}"}}]}`),
		rqReq(rqToolsDecl, rqHi, `{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"get_weather","arguments":"{\"key\":\"`+secret+`\""}}]}`),
		rqReq(rqToolsDecl, rqHi, rqCallA, `{"role":"tool","tool_call_id":"`+secret+`","content":"`+secret+`"}`),
		rqReq(`"tools":[{"type":"function","function":{"name":"`+secret+`"}}]`, rqHi),
		rqReq(rqToolsDecl+`,"tool_choice":{"type":"function","function":{"name":"`+secret+`"}}`, rqHi),
		rqReq(`"metadata":{"`+secret+`":"`+secret+`"}`, rqHi),
		rqReq(`"service_tier":"`+secret+`"`, rqHi),
		rqReq(`"reasoning_effort":"`+secret+`"`, rqHi),
		rqReq(`"response_format":{"type":"`+secret+`"}`, rqHi),
		rqReq(`"model":"x"`, `{"role":"user","content":"`+secret+`"}`, `{"role":"assistant","content":"`+secret+`","bogus":1}`),
	} {
		_, err := ParseChatRequest([]byte(in))
		var re *RequestError
		if !errors.As(err, &re) {
			t.Errorf("ParseChatRequest(%s) error = %v, want *RequestError", rqHead([]byte(in)), err)
			continue
		}
		if strings.Contains(re.Message, secret[:40]) || strings.Contains(re.Param, secret[:40]) {
			t.Errorf("RequestError %+v repeats the secret", re)
		}
		rqCheckMessage(t, re, []byte(in))
	}
}

func TestIncludeUsage(t *testing.T) {
	for _, tc := range []struct {
		extra string
		want  bool
	}{
		{``, false},
		{`"stream":true`, false},
		{`"stream":true,"stream_options":{}`, false},
		{`"stream":true,"stream_options":{"include_usage":false}`, false},
		{`"stream":true,"stream_options":{"include_usage":true}`, true},
		{`"stream":true,"stream_options":{"include_usage":null}`, false},
	} {
		r, err := ParseChatRequest([]byte(rqReq(tc.extra, rqHi)))
		if err != nil {
			t.Fatalf("ParseChatRequest(%s) error = %v", tc.extra, err)
		}
		if got := r.IncludeUsage(); got != tc.want {
			t.Errorf("IncludeUsage() for {%s} = %v, want %v", tc.extra, got, tc.want)
		}
	}
	if (*ChatRequest)(nil).IncludeUsage() {
		t.Errorf("nil IncludeUsage() = true")
	}
}

func TestParseChatRequestFields(t *testing.T) {
	in := rqReq(`"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false},
		"max_completion_tokens":100,"temperature":0.2,"top_p":0.5,"stop":"x",`+rqToolsDecl+`,
		"tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":true,
		"user":"u","safety_identifier":"s","prompt_cache_key":"p","metadata":{"a":"b"},"service_tier":"default",
		"reasoning_effort":"low"`,
		`{"role":"user","name":"alice","content":[{"type":"text","text":"Hi"},{"type":"image_url","image_url":{"url":"`+rqDataURL("image/png", rqPNG)+`","detail":"low"}}]}`,
		rqCallA, rqResultA)
	r, err := ParseChatRequest([]byte(in))
	if err != nil {
		t.Fatalf("ParseChatRequest() error = %v", err)
	}
	f := false
	tr := true
	n100 := int64(100)
	t02, t05 := 0.2, 0.5
	want := &ChatRequest{
		Model: "m",
		Messages: []Message{
			{Role: "user", Name: "alice", Content: []ContentPart{
				{Type: "text", Text: "Hi"},
				{Type: "image_url", ImageURL: &ImageURL{URL: rqDataURL("image/png", rqPNG), Detail: "low"}},
			}},
			{Role: "assistant", ToolCalls: []ToolCall{{ID: "call_a", Type: "function", Function: ToolCallFunction{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}},
			{Role: "tool", ToolCallID: "call_a", Content: []ContentPart{{Type: "text", Text: "18C"}}},
		},
		Stream:              true,
		StreamOptions:       &StreamOptions{IncludeUsage: true, IncludeObfuscation: &f},
		MaxCompletionTokens: &n100,
		Temperature:         &t02,
		TopP:                &t05,
		Stop:                []string{"x"},
		Tools: []Tool{{Type: "function", Function: FunctionDefinition{Name: "get_weather", Description: "Weather for a city",
			Parameters: json.RawMessage(`{"properties":{"city":{"type":"string"}},"required":["city"],"type":"object"}`)}}},
		ToolChoice:        &ToolChoice{Type: "function", Name: "get_weather"},
		ParallelToolCalls: &tr,
		ReasoningEffort:   "low",
		ServiceTier:       "default",
		User:              "u",
		SafetyIdentifier:  "s",
		PromptCacheKey:    "p",
		Metadata:          map[string]string{"a": "b"},
	}
	if diff := cmp.Diff(want, r, cmpopts.IgnoreUnexported(ContentPart{})); diff != "" {
		t.Errorf("ParseChatRequest() mismatch (-want +got):\n%s", diff)
	}
	if !r.IncludeUsage() {
		t.Errorf("IncludeUsage() = false, want true")
	}
}

// TestConverseBodyBuiltByHand checks ConverseBody on requests the caller
// builds or edits: it validates them as ParseChatRequest would, and decodes
// an image whose URL changed after parsing.
func TestConverseBodyBuiltByHand(t *testing.T) {
	r := &ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: []ContentPart{{Type: "text", Text: "Hi"}}}}}
	body, err := r.ConverseBody()
	if err != nil {
		t.Fatalf("ConverseBody() error = %v", err)
	}
	rqJSONEqual(t, body, []byte(`{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`))

	parsed, err := ParseChatRequest([]byte(rqReq("", `{"role":"user","content":[{"type":"image_url","image_url":{"url":"`+rqDataURL("image/png", rqPNG)+`"}}]}`)))
	if err != nil {
		t.Fatalf("ParseChatRequest() error = %v", err)
	}
	parsed.Messages[0].Content[0].ImageURL.URL = rqDataURL("image/gif", rqGIF)
	body, err = parsed.ConverseBody()
	if err != nil {
		t.Fatalf("ConverseBody() error = %v", err)
	}
	rqJSONEqual(t, body, []byte(`{"messages":[{"role":"user","content":[{"image":{"format":"gif","source":{"bytes":"`+rqB64(rqGIF)+`"}}}]}]}`))

	for _, tc := range []struct {
		name  string
		r     *ChatRequest
		param string
	}{
		{"no messages", &ChatRequest{Model: "m"}, "messages"},
		{"bad role", &ChatRequest{Messages: []Message{{Role: "robot"}}}, "messages[0].role"},
		{"tool calls on a user message", &ChatRequest{Messages: []Message{{Role: "user", Content: []ContentPart{{Type: "text", Text: "x"}}, ToolCalls: []ToolCall{{ID: "c"}}}}}, "messages[0].tool_calls"},
		{"image part without image", &ChatRequest{Messages: []Message{{Role: "user", Content: []ContentPart{{Type: "image_url"}}}}}, "messages[0].content[0].image_url"},
		{"refusal part in a system message", &ChatRequest{Messages: []Message{{Role: "system", Content: []ContentPart{{Type: "refusal"}}}}}, "messages[0].content[0].type"},
		{"tool type", &ChatRequest{Messages: r.Messages, Tools: []Tool{{Type: "web_search"}}}, "tools[0].type"},
		{"unknown tool choice", &ChatRequest{Messages: r.Messages, ToolChoice: &ToolChoice{Type: "some"}}, "tool_choice"},
		{"response format json_object", &ChatRequest{Messages: r.Messages, ResponseFormat: &ResponseFormat{Type: "json_object"}}, "response_format"},
		{"NaN temperature", &ChatRequest{Messages: r.Messages, Temperature: func() *float64 { v := rqNaN(); return &v }()}, "temperature"},
	} {
		_, err := tc.r.ConverseBody()
		var re *RequestError
		if !errors.As(err, &re) || re.Param != tc.param {
			t.Errorf("%s: ConverseBody() error = %v, want a *RequestError on %s", tc.name, err, tc.param)
		}
	}
}

// TestImageSizeLimit checks the 3.75 MB Converse limit at its boundary.
func TestImageSizeLimit(t *testing.T) {
	for _, tc := range []struct {
		size int
		ok   bool
	}{{rqMaxImageBytes, true}, {rqMaxImageBytes + 1, false}} {
		img := make([]byte, tc.size)
		copy(img, rqPNG)
		_, err := ParseChatRequest([]byte(rqReq("", `{"role":"user","content":[{"type":"image_url","image_url":{"url":"`+rqDataURL("image/png", img)+`"}}]}`)))
		var re *RequestError
		switch {
		case tc.ok && err != nil:
			t.Errorf("image of %d bytes: error = %v, want none", tc.size, err)
		case !tc.ok && (!errors.As(err, &re) || re.Code != "invalid_value"):
			t.Errorf("image of %d bytes: error = %v, want invalid_value", tc.size, err)
		}
	}
}

// TestToolInputNumbersKept checks that tool call arguments and schemas keep
// their numbers digit for digit (a float64 round trip would not).
func TestToolInputNumbersKept(t *testing.T) {
	in := rqReq(`"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"id":{"type":"integer","maximum":18446744073709551615}}}}}]`,
		rqHi,
		`{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"id\": 12345678901234567891, \"r\": 0.10000000000000000001}"}}]}`,
		`{"role":"tool","tool_call_id":"c","content":"ok"}`)
	r, err := ParseChatRequest([]byte(in))
	if err != nil {
		t.Fatalf("ParseChatRequest() error = %v", err)
	}
	body, err := r.ConverseBody()
	if err != nil {
		t.Fatalf("ConverseBody() error = %v", err)
	}
	for _, want := range []string{`"input":{"id":12345678901234567891,"r":0.10000000000000000001}`, `"maximum":18446744073709551615`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("ConverseBody() = %s, want it to contain %s", body, want)
		}
	}
}

func rqNaN() float64 {
	var zero float64
	return zero / zero
}

func TestRequestErrorError(t *testing.T) {
	e := &RequestError{Param: "messages[0].content", Code: "invalid_value", Message: "Empty."}
	if got, want := e.Error(), "openai: invalid request (invalid_value, messages[0].content): Empty."; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e = &RequestError{Code: "invalid_json", Message: "Bad."}
	if got, want := e.Error(), "openai: invalid request (invalid_json): Bad."; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// ---------------------------------------------------------------------------
// Checking the Converse body.

func rqJSONEqual(t testing.TB, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", rqHead(got), err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", rqHead(want), err)
	}
	// Converse floats are float32 on the wire: compare at that precision.
	if diff := cmp.Diff(w, g, cmpopts.EquateApprox(1e-6, 0)); diff != "" {
		t.Errorf("Converse body mismatch (-want +got):\n%s\ngot: %s", diff, rqHead(got))
	}
}

// rqMirror mirrors the members of a Converse request (Converse API
// reference: ConverseRequest, Message, ContentBlock, ImageBlock, ToolUseBlock,
// ToolResultBlock, SystemContentBlock, InferenceConfiguration,
// ToolConfiguration, ToolSpecification, ToolChoice, OutputConfig) that
// ConverseBody writes, with their types: decoding with DisallowUnknownFields
// catches a member written under a wrong name or with a wrong type.
type rqMirror struct {
	Messages []struct {
		Role    string `json:"role"`
		Content []struct {
			Text  *string `json:"text"`
			Image *struct {
				Format string `json:"format"`
				Source struct {
					Bytes []byte `json:"bytes"`
				} `json:"source"`
			} `json:"image"`
			ToolUse *struct {
				ToolUseID string         `json:"toolUseId"`
				Name      string         `json:"name"`
				Input     map[string]any `json:"input"`
			} `json:"toolUse"`
			ToolResult *struct {
				ToolUseID string `json:"toolUseId"`
				Content   []struct {
					Text *string `json:"text"`
				} `json:"content"`
			} `json:"toolResult"`
		} `json:"content"`
	} `json:"messages"`
	System []struct {
		Text string `json:"text"`
	} `json:"system"`
	InferenceConfig *struct {
		MaxTokens     *int32   `json:"maxTokens"`
		Temperature   *float32 `json:"temperature"`
		TopP          *float32 `json:"topP"`
		StopSequences []string `json:"stopSequences"`
	} `json:"inferenceConfig"`
	ToolConfig *struct {
		Tools []struct {
			ToolSpec struct {
				Name        string  `json:"name"`
				Description *string `json:"description"`
				InputSchema struct {
					JSON map[string]any `json:"json"`
				} `json:"inputSchema"`
				Strict *bool `json:"strict"`
			} `json:"toolSpec"`
		} `json:"tools"`
		ToolChoice *struct {
			Auto *struct{} `json:"auto"`
			Any  *struct{} `json:"any"`
			Tool *struct {
				Name string `json:"name"`
			} `json:"tool"`
		} `json:"toolChoice"`
	} `json:"toolConfig"`
	OutputConfig *struct {
		TextFormat *struct {
			Type      string `json:"type"`
			Structure struct {
				JSONSchema struct {
					Schema      string  `json:"schema"`
					Name        *string `json:"name"`
					Description *string `json:"description"`
				} `json:"jsonSchema"`
			} `json:"structure"`
		} `json:"textFormat"`
		Effort *string `json:"effort"`
	} `json:"outputConfig"`
}

var (
	rqToolNameRE  = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	rqToolUseIDRE = regexp.MustCompile(`^[a-zA-Z0-9_.:-]{1,64}$`)
)

// rqCheckMirror decodes body as a Converse request and checks the rules
// Converse enforces: a conversation that starts with the user and
// alternates, no empty message, no blank text, one member per content block,
// tool results answering the previous turn's tool uses, toolConfig when tool
// blocks are present, and the members' constraints.
func rqCheckMirror(t testing.TB, body []byte) {
	t.Helper()
	if !json.Valid(body) {
		t.Fatalf("Converse body is not valid JSON: %s", rqHead(body))
	}
	var m rqMirror
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("Converse body does not decode as a Converse request: %v\n%s", err, rqHead(body))
	}
	if len(m.Messages) == 0 {
		t.Fatalf("Converse body has no messages")
	}
	var prevUses map[string]bool
	toolBlocks := false
	for i, msg := range m.Messages {
		want := "user"
		if i%2 == 1 {
			want = "assistant"
		}
		if msg.Role != want {
			t.Errorf("messages[%d].role = %q, want %q (start with user, alternate)", i, msg.Role, want)
		}
		if len(msg.Content) == 0 {
			t.Errorf("messages[%d] has no content", i)
		}
		uses := map[string]bool{}
		images := 0
		for j, b := range msg.Content {
			n := 0
			if b.Text != nil {
				n++
				if strings.TrimSpace(*b.Text) == "" {
					t.Errorf("messages[%d].content[%d].text is blank", i, j)
				}
			}
			if b.Image != nil {
				n++
				images++
				if msg.Role != "user" || len(b.Image.Source.Bytes) == 0 || rqSniffImage(b.Image.Source.Bytes) != b.Image.Format {
					t.Errorf("messages[%d].content[%d].image is invalid (role %s, format %s)", i, j, msg.Role, b.Image.Format)
				}
			}
			if b.ToolUse != nil {
				n++
				toolBlocks = true
				if msg.Role != "assistant" || !rqToolNameRE.MatchString(b.ToolUse.Name) || !rqToolUseIDRE.MatchString(b.ToolUse.ToolUseID) || b.ToolUse.Input == nil || uses[b.ToolUse.ToolUseID] {
					t.Errorf("messages[%d].content[%d].toolUse is invalid: %+v", i, j, b.ToolUse)
				}
				uses[b.ToolUse.ToolUseID] = true
			}
			if b.ToolResult != nil {
				n++
				toolBlocks = true
				if msg.Role != "user" || !prevUses[b.ToolResult.ToolUseID] || len(b.ToolResult.Content) == 0 {
					t.Errorf("messages[%d].content[%d].toolResult does not answer a toolUse of the previous message", i, j)
				}
				delete(prevUses, b.ToolResult.ToolUseID)
				for _, c := range b.ToolResult.Content {
					if c.Text == nil {
						t.Errorf("messages[%d].content[%d].toolResult has a content block without text", i, j)
					}
				}
			}
			if n != 1 {
				t.Errorf("messages[%d].content[%d] has %d members, want 1", i, j, n)
			}
		}
		if images > rqMaxImagesPerMessage {
			t.Errorf("messages[%d] has %d images", i, images)
		}
		if len(prevUses) > 0 {
			t.Errorf("messages[%d] leaves tool uses unanswered: %v", i, prevUses)
		}
		prevUses = uses
	}
	if len(prevUses) > 0 && m.Messages[len(m.Messages)-1].Role == "assistant" {
		t.Errorf("the last message's tool uses are unanswered: %v", prevUses)
	}
	for i, s := range m.System {
		if strings.TrimSpace(s.Text) == "" {
			t.Errorf("system[%d] is blank", i)
		}
	}
	if ic := m.InferenceConfig; ic != nil {
		if ic.MaxTokens != nil && *ic.MaxTokens < 1 ||
			ic.Temperature != nil && (*ic.Temperature < 0 || *ic.Temperature > 1) ||
			ic.TopP != nil && (*ic.TopP < 0 || *ic.TopP > 1) ||
			len(ic.StopSequences) > rqMaxStop || slices.Contains(ic.StopSequences, "") ||
			ic.MaxTokens == nil && ic.Temperature == nil && ic.TopP == nil && ic.StopSequences == nil {
			t.Errorf("inferenceConfig is invalid: %+v", ic)
		}
	}
	if toolBlocks && m.ToolConfig == nil {
		t.Errorf("tool blocks without toolConfig")
	}
	if tc := m.ToolConfig; tc != nil {
		if len(tc.Tools) == 0 {
			t.Errorf("toolConfig has no tools")
		}
		names := map[string]bool{}
		for i, tool := range tc.Tools {
			s := tool.ToolSpec
			if !rqToolNameRE.MatchString(s.Name) || names[s.Name] || s.InputSchema.JSON == nil || s.InputSchema.JSON["type"] != "object" ||
				s.Description != nil && *s.Description == "" || s.Strict != nil && !*s.Strict {
				t.Errorf("toolConfig.tools[%d] is invalid: %+v", i, s)
			}
			names[s.Name] = true
		}
		if ch := tc.ToolChoice; ch != nil {
			n := 0
			if ch.Auto != nil {
				n++
			}
			if ch.Any != nil {
				n++
			}
			if ch.Tool != nil {
				n++
				if !names[ch.Tool.Name] {
					t.Errorf("toolChoice names an unknown tool %q", ch.Tool.Name)
				}
			}
			if n != 1 {
				t.Errorf("toolChoice has %d members, want 1", n)
			}
		}
	}
	if oc := m.OutputConfig; oc != nil {
		if oc.TextFormat == nil && oc.Effort == nil {
			t.Errorf("outputConfig is empty")
		}
		if tf := oc.TextFormat; tf != nil {
			var schema map[string]any
			if tf.Type != "json_schema" || json.Unmarshal([]byte(tf.Structure.JSONSchema.Schema), &schema) != nil {
				t.Errorf("outputConfig.textFormat is invalid: %+v", tf)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// The aws-sdk-go-v2 check: the SDK's own serializer must write the same
// body. Messages go through the SDK's deserializer (each one is returned as
// a Converse response's output message) so that the Converse wire shapes of
// every content block are the SDK's, not this test's; the other members are
// converted from the mirror. The SDK then serializes a ConverseInput built
// from them, validating required members on the way, and the body it writes
// must equal ConverseBody's.

type rqFakeHTTP struct {
	mu       sync.Mutex
	response []byte
	request  []byte
}

func (f *rqFakeHTTP) Do(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	f.request = body
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(f.response)),
		ContentLength: int64(len(f.response)),
		Request:       req,
	}, nil
}

func rqSDKRoundTrip(t *testing.T, body []byte) {
	t.Helper()
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "")
	fake := &rqFakeHTTP{}
	client := bedrockruntime.New(bedrockruntime.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("https://bedrock-runtime.us-east-1.amazonaws.com"),
		Credentials:  aws.AnonymousCredentials{},
		// Bedrock takes SigV4 or a bearer token; the fake HTTP client
		// checks neither, so a stub token keeps credentials out of the test.
		BearerAuthTokenProvider: bearer.StaticTokenProvider{Token: bearer.Token{Value: "test"}},
		HTTPClient:              fake,
		Retryer:                 aws.NopRetryer{},
	})
	ctx := context.Background()

	var raw struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("body: %v", err)
	}
	in := &bedrockruntime.ConverseInput{ModelId: aws.String("us.anthropic.claude-sonnet-4-5-20250929-v1:0")}
	for i, msg := range raw.Messages {
		fake.response = []byte(`{"output":{"message":` + string(msg) + `},"stopReason":"end_turn",` +
			`"usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2},"metrics":{"latencyMs":1}}`)
		out, err := client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: in.ModelId, Messages: []types.Message{{
			Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "x"}}}}})
		if err != nil {
			t.Fatalf("SDK Converse reading messages[%d]: %v", i, err)
		}
		om, ok := out.Output.(*types.ConverseOutputMemberMessage)
		if !ok {
			t.Fatalf("SDK read messages[%d] as %T", i, out.Output)
		}
		in.Messages = append(in.Messages, om.Value)
	}

	var m rqMirror
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body: %v", err)
	}
	for _, s := range m.System {
		in.System = append(in.System, &types.SystemContentBlockMemberText{Value: s.Text})
	}
	if ic := m.InferenceConfig; ic != nil {
		in.InferenceConfig = &types.InferenceConfiguration{MaxTokens: ic.MaxTokens, Temperature: ic.Temperature, TopP: ic.TopP, StopSequences: ic.StopSequences}
	}
	if tc := m.ToolConfig; tc != nil {
		in.ToolConfig = &types.ToolConfiguration{}
		for _, tool := range tc.Tools {
			s := tool.ToolSpec
			in.ToolConfig.Tools = append(in.ToolConfig.Tools, &types.ToolMemberToolSpec{Value: types.ToolSpecification{
				Name:        aws.String(s.Name),
				Description: s.Description,
				InputSchema: &types.ToolInputSchemaMemberJson{Value: document.NewLazyDocument(s.InputSchema.JSON)},
				Strict:      s.Strict,
			}})
		}
		if ch := tc.ToolChoice; ch != nil {
			switch {
			case ch.Auto != nil:
				in.ToolConfig.ToolChoice = &types.ToolChoiceMemberAuto{Value: types.AutoToolChoice{}}
			case ch.Any != nil:
				in.ToolConfig.ToolChoice = &types.ToolChoiceMemberAny{Value: types.AnyToolChoice{}}
			case ch.Tool != nil:
				in.ToolConfig.ToolChoice = &types.ToolChoiceMemberTool{Value: types.SpecificToolChoice{Name: aws.String(ch.Tool.Name)}}
			}
		}
	}
	if oc := m.OutputConfig; oc != nil {
		in.OutputConfig = &types.OutputConfig{Effort: oc.Effort}
		if tf := oc.TextFormat; tf != nil {
			js := tf.Structure.JSONSchema
			in.OutputConfig.TextFormat = &types.OutputFormat{
				Type: types.OutputFormatType(tf.Type),
				Structure: &types.OutputFormatStructureMemberJsonSchema{Value: types.JsonSchemaDefinition{
					Schema: aws.String(js.Schema), Name: js.Name, Description: js.Description}},
			}
		}
	}

	fake.response = []byte(`{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn",` +
		`"usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2},"metrics":{"latencyMs":1}}`)
	if _, err := client.Converse(ctx, in); err != nil {
		t.Fatalf("SDK Converse with the body's members: %v", err)
	}
	rqJSONEqual(t, fake.request, body)
}

// ---------------------------------------------------------------------------
// Fuzzing.

// FuzzChatRequest feeds ParseChatRequest realistic and broken requests. It
// must never panic; every error is a *RequestError with a code and a message
// that repeats no more than 64 bytes of the request; and every accepted
// request has a Converse body that is a valid Converse request (see
// rqCheckMirror), the same on every call.
func FuzzChatRequest(f *testing.F) {
	for _, tc := range rqOKCases() {
		f.Add([]byte(tc.in))
	}
	for _, tc := range rqErrCases() {
		if len(tc.in) < 4096 {
			f.Add([]byte(tc.in))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseChatRequest(in)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("ParseChatRequest() error = %T %v, want *RequestError", err, err)
			}
			rqCheckMessage(t, re, in)
			return
		}
		if r.Model == "" || len(r.Messages) == 0 {
			t.Fatalf("ParseChatRequest() accepted a request without model or messages")
		}
		if r.IncludeUsage() && !r.Stream {
			t.Errorf("IncludeUsage() without Stream")
		}
		body, err := r.ConverseBody()
		if err != nil {
			t.Fatalf("ConverseBody() of a parsed request error = %v", err)
		}
		rqCheckMirror(t, body)
		again, err := r.ConverseBody()
		if err != nil || !bytes.Equal(again, body) {
			t.Errorf("ConverseBody() is not repeatable: %v", err)
		}
	})
}

// BenchmarkParseChatRequest measures ParseChatRequest plus ConverseBody on
// a tool-using conversation and on a request carrying a 3 MB image.
func BenchmarkParseChatRequest(b *testing.B) {
	img := make([]byte, 3<<20)
	copy(img, rqPNG)
	for _, bc := range []struct {
		name string
		in   string
	}{
		{"tools", rqReq(rqToolsDecl+`,"max_tokens":512,"temperature":0.3`,
			`{"role":"system","content":"You are a weather bot."}`, rqHi, rqCallA, rqResultA,
			`{"role":"assistant","content":"It is 18C in Paris."}`, `{"role":"user","content":"And tomorrow?"}`)},
		{"image", rqReq("", `{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"`+rqDataURL("image/png", img)+`"}}]}`)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(bc.in)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := ParseChatRequest(in)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.ConverseBody(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
