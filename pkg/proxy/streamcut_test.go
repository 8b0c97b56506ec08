package proxy

import (
	"bytes"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// invokeChunk is an InvokeModelWithResponseStream chunk event carrying one
// Anthropic model event, as Bedrock frames it.
func invokeChunk(t *testing.T, modelEvent string) []byte {
	t.Helper()
	msg := eventstream.Message{Payload: []byte(`{"bytes":"` + base64.StdEncoding.EncodeToString([]byte(modelEvent)) + `"}`)}
	msg.Headers.Set(":message-type", eventstream.StringValue("event"))
	msg.Headers.Set(":event-type", eventstream.StringValue("chunk"))
	msg.Headers.Set(":content-type", eventstream.StringValue("application/json"))
	var b bytes.Buffer
	if err := eventstream.NewEncoder().Encode(&b, msg); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestUpstreamStreamCut: an event stream Bedrock cuts before its end
// (connection closed or reset, or ended inside a frame) is recorded as
// UpstreamStreamCut with the tokens metered before the cut, counted in
// the usage metrics, and passed on as a cut to the client (not a clean
// end); a complete stream is not.
func TestUpstreamStreamCut(t *testing.T) {
	start := invokeChunk(t, `{"type":"message_start","message":{"role":"assistant","usage":{"input_tokens":12,"output_tokens":1}}}`)
	delta := invokeChunk(t, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`)
	end := invokeChunk(t, `{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":3}}`)

	// hangUp ends the upstream connection without finishing the chunked
	// body; reset does so with a TCP RST.
	hangUp := func(w http.ResponseWriter, reset bool) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok && reset {
			tc.SetLinger(0)
		}
		conn.Close()
	}
	tests := []struct {
		name   string
		send   func(w http.ResponseWriter)
		frames int // complete frames the client gets
		cut    bool
		tokens usage.Tokens
	}{
		{"connection closed after two frames", func(w http.ResponseWriter) { w.Write(start); w.Write(delta); flushed(w); hangUp(w, false) },
			2, true, usage.Tokens{Input: 12, Output: 1}},
		{"connection reset after two frames", func(w http.ResponseWriter) { w.Write(start); w.Write(delta); flushed(w); hangUp(w, true) },
			2, true, usage.Tokens{Input: 12, Output: 1}},
		{"body ends inside a frame", func(w http.ResponseWriter) { w.Write(start); w.Write(delta[:len(delta)/2]) },
			1, true, usage.Tokens{Input: 12, Output: 1}},
		{"complete", func(w http.ResponseWriter) { w.Write(start); w.Write(delta); w.Write(end) },
			3, false, usage.Tokens{Input: 12, Output: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", eventStreamType)
				w.Header().Set("X-Amzn-Requestid", "upstream-1")
				w.WriteHeader(http.StatusOK)
				tt.send(w)
			}))
			t.Cleanup(upstream.Close)
			sink := &recordSink{}
			reg := prometheus.NewRegistry()
			metrics, err := usage.NewMetrics(usage.MetricsConfig{Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, fakeaws.Options{}, func(c *Config) {
				c.Endpoint, _ = url.Parse(upstream.URL)
				c.Usage = usage.Sinks{metrics, sink} // the metrics first: once the sink has the record, the counters are up to date
			})
			resp := h.post(t, "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke-with-response-stream",
				`{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, authed())
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			got := 0
			var err2 error
			for {
				if _, err2 = readFrame(resp.Body); err2 != nil {
					break
				}
				got++
			}
			if got != tt.frames {
				t.Errorf("client read %d frames, want %d", got, tt.frames)
			}
			if clean := err2 == io.EOF; clean == tt.cut {
				t.Errorf("client's stream ended with %v; cut upstream = %v", err2, tt.cut)
			}
			waitFor(t, func() bool { return len(sink.all()) == 1 })
			r := sink.all()[0]
			wantErr := ""
			if tt.cut {
				wantErr = usage.ErrorUpstreamStreamCut
			}
			if r.Status != http.StatusOK || r.ErrorType != wantErr || r.ClientGone || r.Tokens != tt.tokens {
				t.Errorf("usage record = status %d, error %q, client gone %v, tokens %+v; want 200 %q, not gone, %+v",
					r.Status, r.ErrorType, r.ClientGone, r.Tokens, wantErr, tt.tokens)
			}
			wantCuts := 0.0
			if tt.cut {
				wantCuts = 1
			}
			const op = "InvokeModelWithResponseStream"
			if n := counterValue(t, reg, "bedrock_gateway_upstream_stream_cuts_total", op); n != wantCuts {
				t.Errorf("upstream stream cuts = %v, want %v", n, wantCuts)
			}
			if n := counterValue(t, reg, "bedrock_gateway_client_disconnects_total", op); n != 0 {
				t.Errorf("client disconnects = %v, want 0: a cut upstream is not the client going away", n)
			}
		})
	}
}

// flushed flushes what w has buffered to the connection.
func flushed(w http.ResponseWriter) {
	if err := http.NewResponseController(w).Flush(); err != nil {
		panic(err)
	}
}

// counterValue is the value of the counter family name for operation op
// in reg (0 if it has no such series).
func counterValue(t *testing.T, reg prometheus.Gatherer, name, op string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" && l.GetValue() == op {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
