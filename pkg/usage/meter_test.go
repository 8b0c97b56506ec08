package usage

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/google/go-cmp/cmp"
)

// The frames in these tests are built with the AWS SDK's own event-stream
// encoder, so the meter's decoder is checked against an independent
// implementation rather than against itself.

func encodeFrames(tb testing.TB, msgs ...eventstream.Message) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc := eventstream.NewEncoder()
	for _, m := range msgs {
		if err := enc.Encode(&buf, m); err != nil {
			tb.Fatalf("encode %v: %v", m.Headers, err)
		}
	}
	return buf.Bytes()
}

// event is a Bedrock event frame as the service sends it.
func event(eventType, payload string) eventstream.Message {
	return eventstream.Message{
		Headers: eventstream.Headers{
			{Name: ":event-type", Value: eventstream.StringValue(eventType)},
			{Name: ":content-type", Value: eventstream.StringValue("application/json")},
			{Name: ":message-type", Value: eventstream.StringValue("event")},
		},
		Payload: []byte(payload),
	}
}

func exceptionFrame(exceptionType, payload string) eventstream.Message {
	return eventstream.Message{
		Headers: eventstream.Headers{
			{Name: ":exception-type", Value: eventstream.StringValue(exceptionType)},
			{Name: ":content-type", Value: eventstream.StringValue("application/json")},
			{Name: ":message-type", Value: eventstream.StringValue("exception")},
		},
		Payload: []byte(payload),
	}
}

// chunk is an InvokeModelWithResponseStream chunk carrying one model event,
// with Bedrock's random padding field.
func chunk(modelEvent string) eventstream.Message {
	return event("chunk", `{"bytes":"`+base64.StdEncoding.EncodeToString([]byte(modelEvent))+`","p":"abcdefghijklmnopqrstuvwxyzABCDEFGH"}`)
}

const (
	converseDelta = `{"contentBlockIndex":0,"delta":{"text":"The quick brown fox jumps over the lazy dog"},"p":"abcdefghijklmnopqrstu"}`

	anthropicStart = `{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant",` +
		`"model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,` +
		`"usage":{"input_tokens":25,"cache_creation_input_tokens":7,"cache_read_input_tokens":100,"output_tokens":1}}}`
	anthropicBlockStart = `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`
	anthropicDelta      = `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello, \"usage\": world"}}`
	anthropicBlockStop  = `{"type":"content_block_stop","index":0}`
	anthropicMsgDelta1  = `{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":5}}`
	anthropicMsgDelta2  = `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}`
	anthropicStop       = `{"type":"message_stop"}`
	// Bedrock's metrics deliberately differ from Anthropic's own counts
	// so the tests can tell which one the meter used.
	anthropicStopMetrics = `{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":26,` +
		`"outputTokenCount":13,"invocationLatency":812,"firstByteLatency":301,"cacheReadInputTokenCount":101,"cacheWriteInputTokenCount":8}}`
)

type meterResult struct {
	Tokens    Tokens
	OK        bool
	Exception string
	Events    int
	Err       string
}

func resultOf(m *StreamMeter) meterResult {
	r := meterResult{Exception: m.Exception(), Events: m.Events()}
	r.Tokens, r.OK = m.Tokens()
	if err := m.Err(); err != nil {
		r.Err = err.Error()
	}
	return r
}

type meterCase struct {
	name   string
	op     string
	stream []byte
	want   meterResult
}

// escapedChunk is a chunk whose base64 is JSON-escaped ("\/"), which no
// Bedrock encoder is known to do but JSON allows; the meter must fall back
// to encoding/json for it.
func escapedChunk(tb testing.TB, modelEvent string) eventstream.Message {
	tb.Helper()
	for i := range 4 {
		// "???" encodes as "Pz8/"; one of four alignments shows a '/'.
		b64 := base64.StdEncoding.EncodeToString([]byte(`{"pad":"` + strings.Repeat("?", 3+i) + `",` + modelEvent[1:]))
		if strings.Contains(b64, "/") {
			return event("chunk", `{ "bytes" : "`+strings.ReplaceAll(b64, "/", `\/`)+`" }`)
		}
	}
	tb.Fatal("no padding puts a '/' in the base64")
	return eventstream.Message{}
}

func meterCases(tb testing.TB) []meterCase {
	tb.Helper()
	throttle := exceptionFrame("throttlingException", `{"message":"Too many requests, please wait before trying again."}`)
	converse := []eventstream.Message{
		event("messageStart", `{"p":"abcdefghijklmn","role":"assistant"}`),
		event("contentBlockDelta", converseDelta),
		event("contentBlockDelta", converseDelta),
		event("contentBlockStop", `{"contentBlockIndex":0,"p":"abcdefghijk"}`),
		event("messageStop", `{"p":"abcd","stopReason":"end_turn"}`),
	}
	metadata := event("metadata", `{"metrics":{"latencyMs":812},"p":"abcdefghijklmnopq",`+
		`"usage":{"cacheReadInputTokens":80,"cacheWriteInputTokens":20,"inputTokens":12,"outputTokens":34,"totalTokens":146}}`)
	anthropic := []eventstream.Message{
		chunk(anthropicStart), chunk(anthropicBlockStart), chunk(anthropicDelta), chunk(anthropicDelta),
		chunk(anthropicBlockStop), chunk(anthropicMsgDelta1), chunk(anthropicMsgDelta2),
	}
	allTypes := event("metadata", `{"usage":{"inputTokens":1,"outputTokens":2}}`)
	allTypes.Headers = append(eventstream.Headers{
		{Name: "t", Value: eventstream.BoolValue(true)},
		{Name: "f", Value: eventstream.BoolValue(false)},
		{Name: "i8", Value: eventstream.Int8Value(-8)},
		{Name: "i16", Value: eventstream.Int16Value(-16)},
		{Name: "i32", Value: eventstream.Int32Value(-32)},
		{Name: "i64", Value: eventstream.Int64Value(-64)},
		{Name: "bytes", Value: eventstream.BytesValue([]byte{0, 1, 2, 0xff})},
		{Name: ":exception-type", Value: eventstream.BytesValue("bytes, not a string: ignored")},
		{Name: "ts", Value: eventstream.TimestampValue(time.UnixMilli(1732562400000))},
		{Name: "uuid", Value: eventstream.UUIDValue{0: 1, 15: 2}},
	}, allTypes.Headers...)
	cat := func(parts ...[]eventstream.Message) []eventstream.Message {
		var all []eventstream.Message
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	one := func(m ...eventstream.Message) []eventstream.Message { return m }

	return []meterCase{
		{
			name:   "converse stream",
			op:     "ConverseStream",
			stream: encodeFrames(tb, cat(converse, one(metadata))...),
			want:   meterResult{Tokens: Tokens{Input: 12, Output: 34, CacheRead: 80, CacheWrite: 20}, OK: true, Events: 6},
		},
		{
			name:   "converse stream cut before metadata",
			op:     "ConverseStream",
			stream: encodeFrames(tb, converse...),
			want:   meterResult{Events: 5},
		},
		{
			name:   "converse stream cut mid-frame",
			op:     "ConverseStream",
			stream: func() []byte { s := encodeFrames(tb, cat(converse, one(metadata))...); return s[:len(s)-5] }(),
			want:   meterResult{Events: 5},
		},
		{
			name: "converse stream ends in exception",
			op:   "ConverseStream",
			stream: encodeFrames(tb, cat(converse[:2], one(exceptionFrame("modelStreamErrorException",
				`{"message":"The model failed","originalStatusCode":500,"originalMessage":"overloaded"}`)))...),
			want: meterResult{Exception: "modelStreamErrorException", Events: 3},
		},
		{
			name:   "first exception wins",
			op:     "ConverseStream",
			stream: encodeFrames(tb, throttle, exceptionFrame("internalServerException", `{}`)),
			want:   meterResult{Exception: "throttlingException", Events: 2},
		},
		{
			name: "error frame",
			op:   "ConverseStream",
			stream: encodeFrames(tb, converse[0], eventstream.Message{Headers: eventstream.Headers{
				{Name: ":message-type", Value: eventstream.StringValue("error")},
				{Name: ":error-code", Value: eventstream.StringValue("InternalFailure")},
				{Name: ":error-message", Value: eventstream.StringValue("An internal error occurred")},
			}}),
			want: meterResult{Exception: "InternalFailure", Events: 2},
		},
		{
			name:   "metadata without usage",
			op:     "ConverseStream",
			stream: encodeFrames(tb, event("metadata", `{"metrics":{"latencyMs":1}}`)),
			want:   meterResult{Events: 1},
		},
		{
			name:   "metadata with a negative count",
			op:     "ConverseStream",
			stream: encodeFrames(tb, event("metadata", `{"usage":{"inputTokens":-1,"outputTokens":2}}`)),
			want:   meterResult{Events: 1},
		},
		{
			name:   "metadata not JSON",
			op:     "ConverseStream",
			stream: encodeFrames(tb, event("metadata", `usage: lots`)),
			want:   meterResult{Events: 1},
		},
		{
			name:   "every header value type",
			op:     "ConverseStream",
			stream: encodeFrames(tb, allTypes),
			want:   meterResult{Tokens: Tokens{Input: 1, Output: 2}, OK: true, Events: 1},
		},
		{
			name:   "frame without headers or payload",
			op:     "ConverseStream",
			stream: encodeFrames(tb, eventstream.Message{}, eventstream.Message{}),
			want:   meterResult{Events: 2},
		},
		{
			name:   "invoke stream with invocation metrics",
			op:     "InvokeModelWithResponseStream",
			stream: encodeFrames(tb, cat(anthropic, one(chunk(anthropicStopMetrics)))...),
			want:   meterResult{Tokens: Tokens{Input: 26, Output: 13, CacheRead: 101, CacheWrite: 8}, OK: true, Events: 8},
		},
		{
			name:   "invoke stream, anthropic usage only",
			op:     "InvokeModelWithResponseStream",
			stream: encodeFrames(tb, cat(anthropic, one(chunk(anthropicStop)))...),
			want:   meterResult{Tokens: Tokens{Input: 25, Output: 12, CacheRead: 100, CacheWrite: 7}, OK: true, Events: 8},
		},
		{
			name:   "invoke stream, message_start only",
			op:     "InvokeModelWithResponseStream",
			stream: encodeFrames(tb, anthropic[:3]...),
			want:   meterResult{Tokens: Tokens{Input: 25, Output: 1, CacheRead: 100, CacheWrite: 7}, OK: true, Events: 3},
		},
		{
			name: "invoke stream, metrics before a late message_delta",
			op:   "InvokeModelWithResponseStream",
			stream: encodeFrames(tb, chunk(anthropicStart), chunk(anthropicStopMetrics),
				chunk(`{"type":"message_delta","usage":{"output_tokens":99}}`)),
			want: meterResult{Tokens: Tokens{Input: 26, Output: 13, CacheRead: 101, CacheWrite: 8}, OK: true, Events: 3},
		},
		{
			name: "invoke stream, nova",
			op:   "InvokeModelWithResponseStream",
			stream: encodeFrames(tb,
				chunk(`{"messageStart":{"role":"assistant"}}`),
				chunk(`{"contentBlockDelta":{"delta":{"text":"Hi"},"contentBlockIndex":0}}`),
				chunk(`{"metadata":{"usage":{"inputTokens":14,"outputTokens":3},"metrics":{},"trace":{}},`+
					`"amazon-bedrock-invocationMetrics":{"inputTokenCount":14,"outputTokenCount":3,"invocationLatency":300,"firstByteLatency":100}}`)),
			want: meterResult{Tokens: Tokens{Input: 14, Output: 3}, OK: true, Events: 3},
		},
		{
			name: "invoke stream, llama",
			op:   "InvokeModelWithResponseStream",
			stream: encodeFrames(tb,
				chunk(`{"generation":"Hi","prompt_token_count":18,"generation_token_count":1,"stop_reason":null}`),
				chunk(`{"generation":"","prompt_token_count":null,"generation_token_count":2,"stop_reason":"stop",`+
					`"amazon-bedrock-invocationMetrics":{"inputTokenCount":18,"outputTokenCount":2,"invocationLatency":200,"firstByteLatency":90}}`)),
			want: meterResult{Tokens: Tokens{Input: 18, Output: 2}, OK: true, Events: 2},
		},
		{
			name:   "invoke stream, escaped base64 and odd spacing",
			op:     "InvokeModelWithResponseStream",
			stream: encodeFrames(tb, escapedChunk(tb, anthropicStopMetrics)),
			want:   meterResult{Tokens: Tokens{Input: 26, Output: 13, CacheRead: 101, CacheWrite: 8}, OK: true, Events: 1},
		},
		{
			name: "invoke stream, padding before bytes",
			op:   "InvokeModelWithResponseStream",
			stream: encodeFrames(tb, event("chunk", `{"p":"bytes","bytes":"`+
				base64.StdEncoding.EncodeToString([]byte(anthropicStopMetrics))+`"}`)),
			want: meterResult{Tokens: Tokens{Input: 26, Output: 13, CacheRead: 101, CacheWrite: 8}, OK: true, Events: 1},
		},
		{
			name: "invoke stream, malformed chunks are skipped",
			op:   "InvokeModelWithResponseStream",
			stream: encodeFrames(tb,
				event("chunk", `{"bytes":"!!not base64!!"}`),
				event("chunk", `{"bytes":12}`),
				event("chunk", `not json`),
				event("chunk", `{"bytes":"`+base64.StdEncoding.EncodeToString([]byte(`{"amazon-bedrock-invocationMetrics":{"inputTokenCount":"x"}}`))+`"}`),
				event("chunk", `{"bytes":"`+base64.StdEncoding.EncodeToString([]byte(`{"type":"message_start","message":{"usage":{"input_tokens":-4}}}`))+`"}`),
				event("chunk", `{"bytes":"`+base64.StdEncoding.EncodeToString([]byte(`{"amazon-bedrock-invocationMetrics":`))+`"}`),
			),
			want: meterResult{Events: 6},
		},
		{
			name:   "invoke stream ends in exception",
			op:     "InvokeModelWithResponseStream",
			stream: encodeFrames(tb, anthropic[0], exceptionFrame("modelTimeoutException", `{"message":"timed out"}`)),
			want:   meterResult{Tokens: Tokens{Input: 25, Output: 1, CacheRead: 100, CacheWrite: 7}, OK: true, Exception: "modelTimeoutException", Events: 2},
		},
		{
			name:   "converse meter ignores chunks",
			op:     "ConverseStream",
			stream: encodeFrames(tb, cat(anthropic, one(chunk(anthropicStopMetrics)))...),
			want:   meterResult{Events: 8},
		},
		{
			name:   "invoke meter ignores metadata",
			op:     "InvokeModelWithResponseStream",
			stream: encodeFrames(tb, metadata),
			want:   meterResult{Events: 1},
		},
		{
			name:   "unknown operation still counts and sees exceptions",
			op:     "InvokeModelWithBidirectionalStream",
			stream: encodeFrames(tb, metadata, chunk(anthropicStopMetrics), throttle),
			want:   meterResult{Exception: "throttlingException", Events: 3},
		},
		{
			name: "empty stream",
			op:   "ConverseStream",
		},
	}
}

func TestStreamMeter(t *testing.T) {
	for _, tt := range meterCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			m := NewStreamMeter(tt.op)
			if n, err := m.Write(tt.stream); n != len(tt.stream) || err != nil {
				t.Fatalf("Write(%d bytes) = %d, %v; want %d, nil", len(tt.stream), n, err, len(tt.stream))
			}
			if diff := cmp.Diff(tt.want, resultOf(m)); diff != "" {
				t.Errorf("meter mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// writeChunks writes stream in pieces whose sizes next returns and checks
// that every Write reports success.
func writeChunks(tb testing.TB, m *StreamMeter, stream []byte, next func() int) {
	tb.Helper()
	for len(stream) > 0 {
		k := min(max(next(), 0), len(stream))
		if n, err := m.Write(stream[:k]); n != k || err != nil {
			tb.Fatalf("Write(%d bytes) = %d, %v; want %d, nil", k, n, err, k)
		}
		stream = stream[k:]
	}
}

// TestStreamMeterSplits checks that where TCP reads happen to cut the stream
// never changes what the meter reports.
func TestStreamMeterSplits(t *testing.T) {
	for _, tt := range meterCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			for k := 0; k <= len(tt.stream); k++ {
				m := NewStreamMeter(tt.op)
				m.Write(tt.stream[:k])
				m.Write(tt.stream[k:])
				if diff := cmp.Diff(tt.want, resultOf(m)); diff != "" {
					t.Fatalf("split at %d: meter mismatch (-want +got):\n%s", k, diff)
				}
			}
			m := NewStreamMeter(tt.op)
			writeChunks(t, m, tt.stream, func() int { return 1 })
			if diff := cmp.Diff(tt.want, resultOf(m)); diff != "" {
				t.Fatalf("byte by byte: meter mismatch (-want +got):\n%s", diff)
			}
			for seed := range uint64(20) {
				rng := rand.New(rand.NewPCG(seed, 42))
				m := NewStreamMeter(tt.op)
				writeChunks(t, m, tt.stream, func() int { return rng.IntN(300) })
				if diff := cmp.Diff(tt.want, resultOf(m)); diff != "" {
					t.Fatalf("random chunks, seed %d: meter mismatch (-want +got):\n%s", seed, diff)
				}
			}
		})
	}
}

// TestStreamMeterTestVector rebuilds the 178-byte throttlingException frame
// of aws-wire-facts §2.1 with the SDK encoder and meters it.
func TestStreamMeterTestVector(t *testing.T) {
	// The first seven rows of the hexdump in aws-wire-facts §2.1.
	wantHead := strings.ReplaceAll(""+
		"00 00 00 b2 00 00 00 61 35 90 d5 d3 0f 3a 65 78"+
		"63 65 70 74 69 6f 6e 2d 74 79 70 65 07 00 13 74"+
		"68 72 6f 74 74 6c 69 6e 67 45 78 63 65 70 74 69"+
		"6f 6e 0d 3a 63 6f 6e 74 65 6e 74 2d 74 79 70 65"+
		"07 00 10 61 70 70 6c 69 63 61 74 69 6f 6e 2f 6a"+
		"73 6f 6e 0d 3a 6d 65 73 73 61 67 65 2d 74 79 70"+
		"65 07 00 09 65 78 63 65 70 74 69 6f 6e 7b 22 6d", " ", "")
	frame := encodeFrames(t, exceptionFrame("throttlingException", `{"message":"Too many requests, please wait before trying again."}`))
	if len(frame) != 178 {
		t.Fatalf("len(frame) = %d, want 178", len(frame))
	}
	if got := hex.EncodeToString(frame[:112]); got != wantHead {
		t.Errorf("frame head = %s, want %s", got, wantHead)
	}
	if got, want := binary.BigEndian.Uint32(frame[8:12]), uint32(0x3590d5d3); got != want {
		t.Errorf("prelude crc = %#08x, want %#08x", got, want)
	}
	if got, want := crc32.ChecksumIEEE(frame[:8]), uint32(0x3590d5d3); got != want {
		t.Errorf("crc32(prelude) = %#08x, want %#08x", got, want)
	}
	if got, want := hex.EncodeToString(frame[174:]), "e8ffb26a"; got != want {
		t.Errorf("message crc = %s, want %s", got, want)
	}
	m := NewStreamMeter("ConverseStream")
	m.Write(frame)
	want := meterResult{Exception: "throttlingException", Events: 1}
	if diff := cmp.Diff(want, resultOf(m)); diff != "" {
		t.Errorf("meter mismatch (-want +got):\n%s", diff)
	}
}

// prelude returns a 12-byte prelude with a correct CRC.
func prelude(total, headers uint32) []byte {
	p := binary.BigEndian.AppendUint32(nil, total)
	p = binary.BigEndian.AppendUint32(p, headers)
	return binary.BigEndian.AppendUint32(p, crc32.ChecksumIEEE(p))
}

// rawFrame builds a frame from a raw header block with correct CRCs, for
// header blocks the SDK encoder refuses to produce.
func rawFrame(headers, payload []byte) []byte {
	f := prelude(uint32(esMinFrame+len(headers)+len(payload)), uint32(len(headers)))
	f = append(f, headers...)
	f = append(f, payload...)
	return binary.BigEndian.AppendUint32(f, crc32.ChecksumIEEE(f))
}

func TestStreamMeterBadFrames(t *testing.T) {
	good := encodeFrames(t, event("metadata", `{"usage":{"inputTokens":1,"outputTokens":2}}`))
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name       string
		stream     []byte
		wantEvents int
		wantErr    string
	}{
		{"prelude crc", flip(good, 9), 0, "frame 1: prelude crc"},
		{"total length bit flipped", flip(good, 3), 0, "frame 1: prelude crc"},
		{"message crc", flip(good, len(good)-1), 0, "frame 1: message crc"},
		{"payload bit flipped", flip(good, len(good)-10), 0, "frame 1: message crc"},
		{"header bit flipped", flip(good, 14), 0, "frame 1: message crc"},
		{"second frame corrupt", append(bytes.Clone(good), flip(good, len(good)-1)...), 1, "frame 2: message crc"},
		{"total below minimum", prelude(15, 0), 0, "frame 1: total length 15 below minimum 16"},
		{"total zero", prelude(0, 0), 0, "frame 1: total length 0 below minimum 16"},
		{"total above maximum", prelude(esMaxFrame+1, 0), 0, "frame 1: total length 16777217 above maximum"},
		{"total 4 GiB", prelude(0xffffffff, 0), 0, "frame 1: total length 4294967295 above maximum"},
		{"headers longer than frame", prelude(100, 85), 0, "frame 1: headers length 85 exceeds frame length 100"},
		{"headers length wraps", prelude(100, 0xfffffff0), 0, "frame 1: headers length 4294967280 exceeds"},
		{"headers above maximum", prelude(1<<20, 200<<10), 0, "frame 1: headers length 204800 above maximum"},
		{"unknown header type", rawFrame([]byte("\x02:a\x0a"), nil), 0, `frame 1: header ":a": unknown value type 10`},
		{"header name overruns", rawFrame([]byte("\x09:abc"), nil), 0, "frame 1: header at 0: bad name length 9"},
		{"header without type", rawFrame([]byte("\x02:a"), nil), 0, "frame 1: header at 0: bad name length 2"},
		{"string length overruns", rawFrame([]byte("\x02:a\x07\x00\x09abc"), nil), 0, `frame 1: header ":a": value of 9 bytes overruns`},
		{"string length truncated", rawFrame([]byte("\x02:a\x07\x00"), nil), 0, `frame 1: header ":a": truncated value length`},
		{"uuid truncated", rawFrame([]byte("\x02:a\x09\x00\x01"), nil), 0, `frame 1: header ":a": value of 16 bytes overruns`},
		{"not an event stream", []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}"), 0, "frame 1: prelude crc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []int{len(tt.stream), 1, 11, 12, 13} {
				m := NewStreamMeter("ConverseStream")
				writeChunks(t, m, tt.stream, func() int { return split })
				err := m.Err()
				if !errors.Is(err, ErrBadFrame) {
					t.Fatalf("split %d: Err() = %v, want an ErrBadFrame", split, err)
				}
				if !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Errorf("split %d: Err() = %q, want prefix %q", split, err, tt.wantErr)
				}
				// The meter has stopped: good frames after the bad one
				// are neither counted nor metered, and Write still
				// reports success.
				before := resultOf(m)
				writeChunks(t, m, good, func() int { return 7 })
				if diff := cmp.Diff(before, resultOf(m)); diff != "" {
					t.Errorf("split %d: meter changed after its error (-before +after):\n%s", split, diff)
				}
				if got := m.Events(); got != tt.wantEvents {
					t.Errorf("split %d: Events() = %d, want %d", split, got, tt.wantEvents)
				}
				if m.buf != nil || m.scratch != nil {
					t.Errorf("split %d: meter kept buffers (%d, %d bytes) after its error", split, cap(m.buf), cap(m.scratch))
				}
			}
		})
	}
}

// TestStreamMeterDoesNotAllocateClaimedLength feeds preludes that claim huge
// frames and checks the meter does not reserve memory for them.
func TestStreamMeterDoesNotAllocateClaimedLength(t *testing.T) {
	tests := []struct {
		name    string
		total   uint32
		wantErr bool
	}{
		{"largest allowed", esMaxFrame, false},
		{"4 GiB", 0xffffffff, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := append(prelude(tt.total, 0), make([]byte, 100)...)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			m := NewStreamMeter("ConverseStream")
			m.Write(p[:5])
			m.Write(p[5:])
			runtime.ReadMemStats(&after)
			if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
				t.Errorf("metering a %d-byte prelude allocated %d bytes, want < 1 MiB", len(p), got)
			}
			if got := m.Err() != nil; got != tt.wantErr {
				t.Errorf("Err() = %v, want error: %v", m.Err(), tt.wantErr)
			}
			if m.Events() != 0 {
				t.Errorf("Events() = %d, want 0", m.Events())
			}
		})
	}
}

// TestStreamMeterBuffering checks the promise that a meter holds at most one
// partial frame: whole frames are parsed in place, a partial one is held
// only until it completes, and a large buffer is not kept afterwards.
func TestStreamMeterBuffering(t *testing.T) {
	small := encodeFrames(t, event("contentBlockDelta", converseDelta))
	big := encodeFrames(t, event("contentBlockDelta", `{"delta":{"text":"`+strings.Repeat("x", 200<<10)+`"}}`))

	m := NewStreamMeter("ConverseStream")
	m.Write(bytes.Repeat(small, 10))
	if m.Events() != 10 || cap(m.buf) != 0 {
		t.Errorf("after 10 whole frames: Events() = %d, buffer cap %d; want 10, 0", m.Events(), cap(m.buf))
	}

	stream := append(bytes.Clone(small), big...)
	stream = append(stream, small...)
	m = NewStreamMeter("ConverseStream")
	for off := 0; off < len(stream); off += 1000 {
		m.Write(stream[off:min(off+1000, len(stream))])
		if len(m.buf) > len(big) {
			t.Fatalf("after %d bytes: buffered %d bytes, more than the largest frame (%d)", off+1000, len(m.buf), len(big))
		}
	}
	if m.Events() != 3 || m.Err() != nil {
		t.Fatalf("Events(), Err() = %d, %v; want 3, nil", m.Events(), m.Err())
	}
	if cap(m.buf) > esKeepBuf {
		t.Errorf("kept a %d-byte buffer after a large frame, want at most %d", cap(m.buf), esKeepBuf)
	}
}

// TestStreamMeterPending: a stream that stops inside a frame leaves its
// bytes pending, so the proxy can tell a cut stream from a finished one;
// at a frame boundary nothing is pending, and after a framing error the
// meter holds nothing.
func TestStreamMeterPending(t *testing.T) {
	frames := encodeFrames(t, event("contentBlockDelta", converseDelta), event("metadata", `{"usage":{"inputTokens":3,"outputTokens":4}}`))
	first := len(encodeFrames(t, event("contentBlockDelta", converseDelta)))
	for _, tt := range []struct {
		n    int // bytes of frames written
		want int
	}{
		{0, 0},
		{5, 5}, // inside the first prelude
		{first - 1, first - 1},
		{first, 0},
		{first + 20, 20},
		{len(frames), 0},
	} {
		m := NewStreamMeter("ConverseStream")
		m.Write(frames[:tt.n])
		if got := m.Pending(); got != tt.want {
			t.Errorf("after %d of %d bytes: Pending() = %d, want %d", tt.n, len(frames), got, tt.want)
		}
	}
	m := NewStreamMeter("ConverseStream")
	m.Write(bytes.Repeat([]byte{0xff}, 30))
	if m.Err() == nil || m.Pending() != 0 {
		t.Errorf("after garbage: Err() = %v, Pending() = %d; want a framing error, 0", m.Err(), m.Pending())
	}
}

func TestStreamMeterConcurrentUse(t *testing.T) {
	tt := meterCases(t)[0]
	m := NewStreamMeter(tt.op)
	var wg sync.WaitGroup
	wg.Go(func() {
		for s := tt.stream; len(s) > 0; {
			k := min(17, len(s))
			m.Write(s[:k])
			s = s[k:]
		}
	})
	for range 100 {
		resultOf(m)
	}
	wg.Wait()
	if diff := cmp.Diff(tt.want, resultOf(m)); diff != "" {
		t.Errorf("meter mismatch (-want +got):\n%s", diff)
	}
}

// TestStreamMeterNoAllocsPerEvent pins the cheap path: headers are read in
// place and content chunks that name no usage key are never handed to
// encoding/json, so ordinary events, whole or split, allocate nothing.
func TestStreamMeterNoAllocsPerEvent(t *testing.T) {
	if testing.CoverMode() != "" || meterRaceEnabled {
		t.Skip("allocation counts are not meaningful under -race or -cover")
	}
	tests := []struct {
		op    string
		frame []byte
	}{
		{"ConverseStream", encodeFrames(t, event("contentBlockDelta", converseDelta))},
		{"InvokeModelWithResponseStream", encodeFrames(t, chunk(anthropicDelta))},
	}
	for _, tt := range tests {
		m := NewStreamMeter(tt.op)
		m.Write(tt.frame) // warm the buffers
		half := len(tt.frame) / 2
		got := testing.AllocsPerRun(100, func() {
			m.Write(tt.frame)
			m.Write(tt.frame[:half])
			m.Write(tt.frame[half:])
		})
		if got != 0 {
			t.Errorf("%s: %v allocations per 2 events, want 0", tt.op, got)
		}
	}
}

func FuzzStreamMeter(f *testing.F) {
	for _, tt := range meterCases(f) {
		f.Add(tt.stream, uint16(len(tt.stream)/2))
	}
	f.Add(rawFrame([]byte("\x02:a\x0a"), nil), uint16(3))
	f.Add(prelude(0xffffffff, 0), uint16(6))
	f.Add(prelude(40, 30), uint16(12))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		for _, op := range []string{"ConverseStream", "InvokeModelWithResponseStream"} {
			whole := NewStreamMeter(op)
			if n, err := whole.Write(data); n != len(data) || err != nil {
				t.Fatalf("Write(%d bytes) = %d, %v; want %d, nil", len(data), n, err, len(data))
			}
			want := resultOf(whole)
			if want.Events > len(data)/esMinFrame {
				t.Errorf("Events() = %d from %d bytes, want at most %d", want.Events, len(data), len(data)/esMinFrame)
			}
			if whole.Err() != nil && !errors.Is(whole.Err(), ErrBadFrame) {
				t.Errorf("Err() = %v, want an ErrBadFrame", whole.Err())
			}
			checkTokens(t, "StreamMeter.Tokens", want.Tokens, want.OK)

			k := int(split) % (len(data) + 1)
			two := NewStreamMeter(op)
			writeChunks(t, two, data[:k], func() int { return k })
			writeChunks(t, two, data[k:], func() int { return len(data) })
			if diff := cmp.Diff(want, resultOf(two)); diff != "" {
				t.Errorf("%s split at %d changed the result (-whole +split):\n%s", op, k, diff)
			}
			step := int(split)%13 + 1
			small := NewStreamMeter(op)
			writeChunks(t, small, data, func() int { return step })
			if diff := cmp.Diff(want, resultOf(small)); diff != "" {
				t.Errorf("%s chunks of %d changed the result (-whole +chunked):\n%s", op, step, diff)
			}
		}
	})
}

// FuzzStreamMeterFrames explores what lies inside well-formed frames, which
// random bytes almost never reach past the CRCs: arbitrary header blocks,
// and arbitrary payloads both as ConverseStream metadata and as the decoded
// model event of an InvokeModelWithResponseStream chunk.
func FuzzStreamMeterFrames(f *testing.F) {
	headerBlock := func(m eventstream.Message) []byte {
		fr := encodeFrames(f, m)
		return fr[esPreludeLen : esPreludeLen+binary.BigEndian.Uint32(fr[4:8])]
	}
	for _, p := range []string{anthropicStart, anthropicDelta, anthropicMsgDelta2, anthropicStopMetrics,
		`{"usage":{"inputTokens":1,"outputTokens":2,"cacheReadInputTokens":3}}`, `{"usage":{"inputTokens":"1"}}`, ``} {
		f.Add(headerBlock(event("metadata", "")), []byte(p), uint16(len(p)))
	}
	f.Add(headerBlock(exceptionFrame("throttlingException", "")), []byte(`{"message":"slow down"}`), uint16(30))
	f.Add([]byte("\x02:a\x09\x00\x01"), []byte(nil), uint16(0))
	metadataHeaders := headerBlock(event("metadata", ""))
	chunkHeaders := headerBlock(event("chunk", ""))
	f.Fuzz(func(t *testing.T, headers, payload []byte, split uint16) {
		var stream []byte
		stream = append(stream, rawFrame(headers, payload)...)
		stream = append(stream, rawFrame(metadataHeaders, payload)...)
		stream = append(stream, rawFrame(chunkHeaders, []byte(`{"bytes":"`+base64.StdEncoding.EncodeToString(payload)+`"}`))...)
		for _, op := range []string{"ConverseStream", "InvokeModelWithResponseStream"} {
			whole := NewStreamMeter(op)
			whole.Write(stream)
			want := resultOf(whole)
			checkTokens(t, "StreamMeter.Tokens", want.Tokens, want.OK)
			if whole.Err() == nil && want.Events != 3 {
				t.Errorf("%s: Events() = %d without an error, want 3", op, want.Events)
			}
			if whole.Err() != nil && !errors.Is(whole.Err(), ErrBadFrame) {
				t.Errorf("%s: Err() = %v, want an ErrBadFrame", op, whole.Err())
			}
			k := int(split) % (len(stream) + 1)
			two := NewStreamMeter(op)
			two.Write(stream[:k])
			two.Write(stream[k:])
			if diff := cmp.Diff(want, resultOf(two)); diff != "" {
				t.Errorf("%s split at %d changed the result (-whole +split):\n%s", op, k, diff)
			}
		}
	})
}

func benchmarkMeter(b *testing.B, op string, frame []byte) {
	b.Run("frame-per-write", func(b *testing.B) {
		m := NewStreamMeter(op)
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			m.Write(frame)
		}
		if m.Err() != nil {
			b.Fatal(m.Err())
		}
	})
	b.Run("split-in-3", func(b *testing.B) {
		m := NewStreamMeter(op)
		a, c := len(frame)/3, 2*len(frame)/3
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			m.Write(frame[:a])
			m.Write(frame[a:c])
			m.Write(frame[c:])
		}
		if m.Err() != nil {
			b.Fatal(m.Err())
		}
	})
}

// BenchmarkStreamMeterConverseStream meters one contentBlockDelta event (a
// ~100-byte payload) per op.
func BenchmarkStreamMeterConverseStream(b *testing.B) {
	benchmarkMeter(b, "ConverseStream", encodeFrames(b, event("contentBlockDelta", converseDelta)))
}

// BenchmarkStreamMeterInvokeStream meters one ~300-byte chunk carrying an
// Anthropic content_block_delta per op, and, as a contrast, the final chunk
// with invocation metrics that does get parsed as JSON.
func BenchmarkStreamMeterInvokeStream(b *testing.B) {
	benchmarkMeter(b, "InvokeModelWithResponseStream", encodeFrames(b, chunk(anthropicDelta)))
	b.Run("metrics-chunk", func(b *testing.B) {
		frame := encodeFrames(b, chunk(anthropicStopMetrics))
		m := NewStreamMeter("InvokeModelWithResponseStream")
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			m.Write(frame)
		}
	})
}

func BenchmarkFromInvoke(b *testing.B) {
	var body []byte
	for _, tt := range invokeTests {
		if tt.name == "anthropic" {
			body = []byte(tt.body)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		FromInvoke(nil, body)
	}
}
