package usage

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
)

// Streaming operations a StreamMeter understands (BR-model operation names).
const (
	opConverseStream = "ConverseStream"
	opInvokeStream   = "InvokeModelWithResponseStream"
)

// AWS event-stream framing (smithy-go eventstream/message.go, aws-wire-facts
// §2.1): [total u32][headers u32][prelude crc u32][headers][payload][crc u32].
const (
	esPreludeLen = 12 // total length, headers length, prelude CRC
	esMinFrame   = 16 // prelude + message CRC

	// esMaxFrame caps one frame at 16 MiB, the limit of the AWS event-stream
	// format as first specified (aws-sdk-go v1 eventstream maxPayloadLen).
	// Bedrock's largest frame, a chunk, carries at most 1,000,000 bytes of
	// model output (BR-model PayloadPart.bytes), about 1.4 MB once
	// base64-encoded in JSON, so anything near the cap is not Bedrock.
	esMaxFrame = 16 << 20
	// esMaxHeaders caps the header block at 128 KiB (aws-sdk-go v1
	// eventstream maxHeadersLen).
	esMaxHeaders = 128 << 10

	// esKeepBuf is the largest buffer a meter keeps between frames; a
	// bigger one, grown for an unusually large frame, is let go so that
	// long-lived streams do not pin it.
	esKeepBuf = 64 << 10
)

// ErrBadFrame is wrapped by every framing error a StreamMeter reports: a bad
// CRC, impossible lengths, an over-large frame or a malformed header. Bedrock
// never sends one; seeing it means the bytes are not an AWS event stream.
var ErrBadFrame = errors.New("malformed event-stream frame")

// A StreamMeter reads token usage out of a Bedrock Runtime event stream as
// the proxy relays it. It is an io.Writer meant to sit on a tee of the
// relayed bytes: Write never fails, never blocks on anything but the
// meter's own lock, and never keeps more than one partial frame, so metering
// cannot slow down, alter or break the stream the client receives. Frames
// may be split across Write calls at any byte.
//
// For ConverseStream usage is the metadata event's usage object. For
// InvokeModelWithResponseStream it is the amazon-bedrock-invocationMetrics
// object Bedrock adds to the last chunk, or, when a stream ends without it,
// what the Anthropic message_start and message_delta events reported.
//
// A StreamMeter is safe for concurrent use.
type StreamMeter struct {
	mu sync.Mutex

	invoke   bool // InvokeModelWithResponseStream; else ConverseStream
	converse bool

	buf     []byte // the start of a frame not yet complete
	scratch []byte // base64-decoded chunk bytes, reused

	tokens    Tokens // authoritative usage (metadata / invocationMetrics)
	haveUsage bool
	// Anthropic-native usage, used only if no invocationMetrics arrive.
	native     Tokens
	haveNative bool
	haveDelta  bool

	exception string
	events    int
	err       error
}

// NewStreamMeter returns a meter for one response of the named operation,
// "ConverseStream" or "InvokeModelWithResponseStream". For any other
// operation the meter still checks framing, counts frames and records
// exceptions, but reports no tokens.
func NewStreamMeter(operation string) *StreamMeter {
	return &StreamMeter{
		converse: operation == opConverseStream,
		invoke:   operation == opInvokeStream,
	}
}

// Write feeds the next bytes of the stream to the meter. It always returns
// len(p), nil. After the first framing error the meter ignores further
// input.
func (m *StreamMeter) Write(p []byte) (int, error) {
	n := len(p)
	m.mu.Lock()
	if m.err == nil {
		m.consume(p)
	}
	m.mu.Unlock()
	return n, nil
}

// Tokens returns the usage the stream has reported so far; ok is false until
// the stream has carried a usage report.
func (m *StreamMeter) Tokens() (t Tokens, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.haveUsage:
		return m.tokens, true
	case m.haveNative:
		return m.native, true
	}
	return Tokens{}, false
}

// Exception returns the :exception-type of the first exception frame in the
// stream (e.g. "modelStreamErrorException"), or the :error-code of the first
// error frame, or "" if there was none. Bedrock ends a stream that failed
// after HTTP 200 with such a frame (aws-wire-facts §7).
func (m *StreamMeter) Exception() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exception
}

// Events returns the number of complete, well-formed frames seen.
func (m *StreamMeter) Events() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.events
}

// Pending returns the number of bytes the meter holds of a frame not yet
// complete: non-zero when the stream so far ends inside a frame, which at
// the end of a stream means it was cut short.
func (m *StreamMeter) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.buf)
}

// Err returns the first framing error, which wraps ErrBadFrame, or nil.
func (m *StreamMeter) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// consume parses as many frames as p completes. Frames wholly inside p are
// parsed in place; only a frame that straddles Write calls is copied.
func (m *StreamMeter) consume(p []byte) {
	if len(m.buf) > 0 {
		p = m.fill(p)
		if m.err != nil || len(m.buf) > 0 {
			return
		}
	}
	for len(p) > 0 {
		if len(p) < esPreludeLen {
			m.buf = append(m.buf, p...)
			return
		}
		total, err := esCheckPrelude(p)
		if err != nil {
			m.fail(err)
			return
		}
		if len(p) < total {
			m.buf = append(m.buf, p...)
			return
		}
		m.frame(p[:total])
		if m.err != nil {
			return
		}
		p = p[total:]
	}
}

// fill moves bytes from p into the partial frame in m.buf, parses the frame
// if it is now complete, and returns what is left of p.
func (m *StreamMeter) fill(p []byte) []byte {
	if len(m.buf) < esPreludeLen {
		k := min(esPreludeLen-len(m.buf), len(p))
		m.buf = append(m.buf, p[:k]...)
		p = p[k:]
		if len(m.buf) < esPreludeLen {
			return p
		}
		if _, err := esCheckPrelude(m.buf); err != nil {
			m.fail(err)
			return nil
		}
	}
	total := int(binary.BigEndian.Uint32(m.buf)) // checked by esCheckPrelude
	k := min(total-len(m.buf), len(p))
	m.buf = append(m.buf, p[:k]...)
	p = p[k:]
	if len(m.buf) < total {
		return p
	}
	m.frame(m.buf)
	if cap(m.buf) > esKeepBuf {
		m.buf = nil
	} else {
		m.buf = m.buf[:0]
	}
	return p
}

func (m *StreamMeter) fail(err error) {
	m.err = fmt.Errorf("frame %d: %w", m.events+1, err)
	m.buf, m.scratch = nil, nil
}

// esCheckPrelude validates the 12-byte prelude at the start of p and returns
// the frame's total length. It is called before any byte past the prelude is
// buffered, so a frame that claims to be huge is refused before memory is
// spent on it.
func esCheckPrelude(p []byte) (int, error) {
	total := binary.BigEndian.Uint32(p[0:4])
	headers := binary.BigEndian.Uint32(p[4:8])
	if got, want := crc32.ChecksumIEEE(p[:8]), binary.BigEndian.Uint32(p[8:12]); got != want {
		return 0, fmt.Errorf("prelude crc %#08x, want %#08x: %w", got, want, ErrBadFrame)
	}
	switch {
	case total < esMinFrame:
		return 0, fmt.Errorf("total length %d below minimum %d: %w", total, esMinFrame, ErrBadFrame)
	case total > esMaxFrame:
		return 0, fmt.Errorf("total length %d above maximum %d: %w", total, esMaxFrame, ErrBadFrame)
	case headers > total-esMinFrame:
		return 0, fmt.Errorf("headers length %d exceeds frame length %d: %w", headers, total, ErrBadFrame)
	case headers > esMaxHeaders:
		return 0, fmt.Errorf("headers length %d above maximum %d: %w", headers, esMaxHeaders, ErrBadFrame)
	}
	return int(total), nil
}

// frame handles one complete frame whose prelude has been checked.
func (m *StreamMeter) frame(f []byte) {
	end := len(f) - 4
	if got, want := crc32.ChecksumIEEE(f[:end]), binary.BigEndian.Uint32(f[end:]); got != want {
		m.fail(fmt.Errorf("message crc %#08x, want %#08x: %w", got, want, ErrBadFrame))
		return
	}
	hdrEnd := esPreludeLen + int(binary.BigEndian.Uint32(f[4:8]))
	h, err := esScanHeaders(f[esPreludeLen:hdrEnd])
	if err != nil {
		m.fail(err)
		return
	}
	m.events++
	payload := f[hdrEnd:end]

	switch string(h.messageType) {
	case "event":
		switch {
		case m.converse && string(h.eventType) == "metadata":
			m.metadata(payload)
		case m.invoke && string(h.eventType) == "chunk":
			m.chunk(payload)
		}
	case "exception":
		if m.exception == "" {
			m.exception = string(h.exceptionType)
		}
	case "error":
		if m.exception == "" {
			m.exception = string(h.errorCode)
		}
	}
}

// metadata reads a ConverseStream metadata event:
// {"usage":{"inputTokens":..,"outputTokens":..,...},"metrics":{...}}.
func (m *StreamMeter) metadata(payload []byte) {
	var b converseBody
	if !unmarshalTolerant(payload, &b) {
		return
	}
	if t, ok := b.Usage.tokens(); ok {
		m.tokens, m.haveUsage = t, true
	}
}

// Prefilters for chunk. The usage keys are matched without their opening
// quote: '"' is the commonest byte in JSON and would make bytes.Index stop at
// every string. A key's text inside a JSON string value is escaped
// (usage\") and so does not match; a false match only costs a JSON parse.
var (
	invocationMetricsKey = []byte(`invocationMetrics"`)
	usageKey             = []byte(`usage"`)
	bytesKey             = []byte(`"bytes"`)
)

// invokeChunk is what a meter reads from the decoded model event of an
// InvokeModelWithResponseStream chunk: Bedrock's invocation metrics, or
// Anthropic's own usage reports.
type invokeChunk struct {
	Metrics *struct {
		InputTokenCount           tokenCount `json:"inputTokenCount"`
		OutputTokenCount          tokenCount `json:"outputTokenCount"`
		CacheReadInputTokenCount  tokenCount `json:"cacheReadInputTokenCount"`
		CacheWriteInputTokenCount tokenCount `json:"cacheWriteInputTokenCount"`
	} `json:"amazon-bedrock-invocationMetrics"`

	// Anthropic Messages streaming events.
	Type    string `json:"type"`
	Message *struct {
		Usage *anthropicStreamUsage `json:"usage"`
	} `json:"message"`
	Usage *anthropicStreamUsage `json:"usage"`
}

type anthropicStreamUsage struct {
	InputTokens              tokenCount `json:"input_tokens"`
	OutputTokens             tokenCount `json:"output_tokens"`
	CacheReadInputTokens     tokenCount `json:"cache_read_input_tokens"`
	CacheCreationInputTokens tokenCount `json:"cache_creation_input_tokens"`
}

// chunk reads an InvokeModelWithResponseStream chunk event,
// {"bytes":"<base64 model event>"[,"p":"padding"]}. Decoding base64 is
// unavoidable to see inside, but the decoded bytes go to encoding/json only
// when they name a usage key, so ordinary content deltas allocate nothing.
func (m *StreamMeter) chunk(payload []byte) {
	enc, ok := esStringField(payload, bytesKey)
	var dec []byte
	if ok {
		n := base64.StdEncoding.DecodedLen(len(enc))
		if cap(m.scratch) < n {
			m.scratch = make([]byte, n)
		}
		n, err := base64.StdEncoding.Decode(m.scratch[:n], enc)
		if err != nil {
			return
		}
		dec = m.scratch[:n]
		defer func() {
			if cap(m.scratch) > esKeepBuf {
				m.scratch = nil
			}
		}()
	} else {
		if !bytes.Contains(payload, bytesKey[1:len(bytesKey)-1]) {
			return
		}
		// Something unusual (escapes, odd spacing): let encoding/json,
		// which also base64-decodes []byte fields, have the last word.
		var c struct {
			Bytes []byte `json:"bytes"`
		}
		if !unmarshalTolerant(payload, &c) {
			return
		}
		dec = c.Bytes
	}

	hasMetrics := bytes.Contains(dec, invocationMetricsKey)
	if !hasMetrics && (m.haveUsage || !bytes.Contains(dec, usageKey)) {
		return
	}
	var c invokeChunk
	if !unmarshalTolerant(dec, &c) {
		return
	}
	if c.Metrics != nil {
		t, ok := countTokens(c.Metrics.InputTokenCount, c.Metrics.OutputTokenCount,
			c.Metrics.CacheReadInputTokenCount, c.Metrics.CacheWriteInputTokenCount)
		if ok {
			m.tokens, m.haveUsage = t, true
			return
		}
	}
	m.anthropic(&c)
}

// anthropic folds Anthropic usage reports into m.native: message_start
// carries the input side (and a provisional output count), message_delta a
// cumulative output count and, in newer versions, cumulative input counts.
func (m *StreamMeter) anthropic(c *invokeChunk) {
	var u *anthropicStreamUsage
	switch c.Type {
	case "message_start":
		if c.Message != nil {
			u = c.Message.Usage
		}
	case "message_delta":
		u = c.Usage
	}
	if u == nil {
		return
	}
	if u.InputTokens.bad || u.OutputTokens.bad || u.CacheReadInputTokens.bad || u.CacheCreationInputTokens.bad ||
		!(u.InputTokens.set || u.OutputTokens.set || u.CacheReadInputTokens.set || u.CacheCreationInputTokens.set) {
		return
	}
	next := m.native
	for _, f := range [...]struct {
		src tokenCount
		dst *int64
	}{
		{u.InputTokens, &next.Input},
		{u.CacheReadInputTokens, &next.CacheRead},
		{u.CacheCreationInputTokens, &next.CacheWrite},
	} {
		if f.src.set {
			*f.dst = f.src.n
		}
	}
	if u.OutputTokens.set && (c.Type == "message_delta" || !m.haveDelta) {
		next.Output = u.OutputTokens.n
		m.haveDelta = m.haveDelta || c.Type == "message_delta"
	}
	m.native, m.haveNative = next, true
}

// esHeaders are the values of the headers a meter acts on; each aliases the
// frame.
type esHeaders struct {
	messageType, eventType, exceptionType, errorCode []byte
}

// Header value types (aws-wire-facts §2.1).
const (
	esBoolTrue = iota
	esBoolFalse
	esInt8
	esInt16
	esInt32
	esInt64
	esBytes
	esString
	esTimestamp
	esUUID
)

// esScanHeaders walks a header block: name_len u8, name, type u8, value. It
// allocates nothing on success.
func esScanHeaders(b []byte) (esHeaders, error) {
	var h esHeaders
	for off := 0; off < len(b); {
		nameLen := int(b[off])
		off++
		if len(b)-off < nameLen+1 {
			return esHeaders{}, fmt.Errorf("header at %d: bad name length %d: %w", off-1, nameLen, ErrBadFrame)
		}
		name := b[off : off+nameLen]
		off += nameLen
		typ := b[off]
		off++
		var size int
		switch typ {
		case esBoolTrue, esBoolFalse:
		case esInt8:
			size = 1
		case esInt16:
			size = 2
		case esInt32:
			size = 4
		case esInt64, esTimestamp:
			size = 8
		case esUUID:
			size = 16
		case esBytes, esString:
			if len(b)-off < 2 {
				return esHeaders{}, fmt.Errorf("header %q: truncated value length: %w", name, ErrBadFrame)
			}
			size = int(binary.BigEndian.Uint16(b[off:]))
			off += 2
		default:
			return esHeaders{}, fmt.Errorf("header %q: unknown value type %d: %w", name, typ, ErrBadFrame)
		}
		if len(b)-off < size {
			return esHeaders{}, fmt.Errorf("header %q: value of %d bytes overruns header block: %w", name, size, ErrBadFrame)
		}
		val := b[off : off+size]
		off += size
		if typ != esString {
			continue
		}
		switch string(name) {
		case ":message-type":
			h.messageType = val
		case ":event-type":
			h.eventType = val
		case ":exception-type":
			h.exceptionType = val
		case ":error-code":
			h.errorCode = val
		}
	}
	return h, nil
}

// esStringField finds key (quoted) in a flat JSON object and returns its
// string value without decoding it. It reports false for anything it is not
// sure about, such as escapes, so the caller can fall back to encoding/json.
func esStringField(obj, key []byte) ([]byte, bool) {
	i := bytes.Index(obj, key)
	if i < 0 || (i > 0 && obj[i-1] == '\\') {
		return nil, false
	}
	rest := esSkipSpace(obj[i+len(key):])
	if len(rest) == 0 || rest[0] != ':' {
		return nil, false
	}
	rest = esSkipSpace(rest[1:])
	if len(rest) == 0 || rest[0] != '"' {
		return nil, false
	}
	rest = rest[1:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return nil, false
	}
	// Only the first occurrence is trusted: a second "bytes" key would make
	// the first one a value or a duplicate, which encoding/json resolves.
	if bytes.Contains(rest[j:], key) {
		return nil, false
	}
	return rest[:j], true
}

func esSkipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}
