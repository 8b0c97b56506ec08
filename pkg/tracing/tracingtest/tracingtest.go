// Package tracingtest is an in-process OTLP trace receiver for tests: an
// OTLP/HTTP one (protobuf POSTs on /v1/traces, as a collector takes them)
// and an OTLP/gRPC one (the collector's TraceService). Both decode what
// they receive with the OTLP protocol's own types, keep the raw requests
// too (for scans that must not miss a byte), and listen on loopback only.
package tracingtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened for assertions.
type Span struct {
	TraceID, SpanID, ParentSpanID string // hex; ParentSpanID "" for a root
	Name                          string
	Kind                          tracepb.Span_SpanKind
	Attrs                         map[string]any // string, int64, float64, bool or a fmt.Sprint of others
	Events                        []Event
	StatusCode                    tracepb.Status_StatusCode
	StatusMessage                 string
	Resource                      map[string]any
	Scope                         string
	StartNanos, EndNanos          uint64
}

// Event is a span event.
type Event struct {
	Name  string
	Attrs map[string]any
}

// Receiver collects what exporters send it. Safe for concurrent use.
type Receiver struct {
	// Endpoint is the URL to configure an exporter with: http://host:port.
	Endpoint string

	mu      sync.Mutex
	spans   []Span
	raw     [][]byte
	headers []map[string][]string // one per export request, names lowercased
}

// NewHTTP starts an OTLP/HTTP receiver, stopped when the test ends. It
// takes protobuf POSTs on /v1/traces and refuses anything else.
func NewHTTP(t testing.TB) *Receiver {
	t.Helper()
	rc := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf POST on /v1/traces", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h := map[string][]string{}
		for k, v := range r.Header {
			h[strings.ToLower(k)] = v
		}
		rc.add(&req, body, h)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	rc.Endpoint = srv.URL
	return rc
}

// NewGRPC starts an OTLP/gRPC receiver (plaintext), stopped when the
// test ends.
func NewGRPC(t testing.TB) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &Receiver{Endpoint: "http://" + ln.Addr().String()}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, grpcService{rc: rc})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return rc
}

type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	rc *Receiver
}

func (g grpcService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	raw, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	md, _ := metadata.FromIncomingContext(ctx)
	g.rc.add(req, raw, md)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (rc *Receiver) add(req *coltracepb.ExportTraceServiceRequest, raw []byte, headers map[string][]string) {
	var spans []Span
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Name:         s.GetName(), Kind: s.GetKind(), Attrs: attrs(s.GetAttributes()),
					StatusCode: s.GetStatus().GetCode(), StatusMessage: s.GetStatus().GetMessage(),
					Resource: res, Scope: ss.GetScope().GetName(),
					StartNanos: s.GetStartTimeUnixNano(), EndNanos: s.GetEndTimeUnixNano(),
				}
				for _, e := range s.GetEvents() {
					sp.Events = append(sp.Events, Event{Name: e.GetName(), Attrs: attrs(e.GetAttributes())})
				}
				spans = append(spans, sp)
			}
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.spans = append(rc.spans, spans...)
	rc.raw = append(rc.raw, raw)
	rc.headers = append(rc.headers, headers)
}

func attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = v.GetStringValue()
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = v.GetIntValue()
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = v.GetDoubleValue()
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = v.GetBoolValue()
		default:
			m[kv.GetKey()] = fmt.Sprint(v)
		}
	}
	return m
}

// Spans returns every span received so far, in arrival order.
func (rc *Receiver) Spans() []Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Span(nil), rc.spans...)
}

// Raw returns every export request received, as sent (protobuf).
func (rc *Receiver) Raw() [][]byte {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([][]byte(nil), rc.raw...)
}

// Headers returns the HTTP headers (or gRPC metadata) of every export
// request, names lowercased.
func (rc *Receiver) Headers() []map[string][]string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]map[string][]string(nil), rc.headers...)
}

// Strings returns every string in s a person or a program could read:
// its name, status message, scope, and the keys and values of its
// attributes, its events' and its resource's, sorted.
func (s Span) Strings() []string {
	out := []string{s.Name, s.StatusMessage, s.Scope}
	add := func(m map[string]any) {
		for k, v := range m {
			out = append(out, k, fmt.Sprint(v))
		}
	}
	add(s.Attrs)
	add(s.Resource)
	for _, e := range s.Events {
		out = append(out, e.Name)
		add(e.Attrs)
	}
	sort.Strings(out)
	return out
}
