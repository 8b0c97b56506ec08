package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

// patience bounds how long a raw-connection test waits for the gateway
// to answer or to close; a gateway that does neither fails the test at
// this point instead of hanging it. No test sleeps for it.
const patience = 5 * time.Second

// rawExchange writes head (and whatever part of the body it includes) to
// a fresh connection to the gateway and reads the answer. The request
// body it declares is never completed.
func rawExchange(t *testing.T, addr, head string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(patience))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer from the gateway: %v", err)
	}
	return resp, conn, br
}

// expectClosed reads the rest of resp and then expects the gateway to
// close the connection (EOF) rather than wait for the unsent body.
func expectClosed(t *testing.T, resp *http.Response, br *bufio.Reader) {
	t.Helper()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatalf("read answer body: %v", err)
	}
	if !resp.Close {
		t.Errorf("answer lacks Connection: close (header %q)", resp.Header.Get("Connection"))
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the answer, read = %v, want EOF: the gateway kept the connection open", err)
	}
}

// TestRefusalBeforeBodyClosesConnection: a request refused before its
// body was read is answered at once with Connection: close, and the
// connection is closed, even when the client never sends the body it
// declared. Before, net/http tried to drain the unread body first, so
// the answer never came and the connection stayed open.
func TestRefusalBeforeBodyClosesConnection(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, nil)
	addr := strings.TrimPrefix(h.gateway.URL, "http://")
	const key = "Authorization: Bearer " + testKey + "\r\n"
	tests := []struct {
		name   string
		head   string
		status int
		typ    string
	}{
		{"no key, 1 of 100 bytes", "POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
			401, "AccessDeniedException"},
		{"no key, chunked, unfinished", "POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"mess",
			401, "AccessDeniedException"},
		{"key, 30 MB declared, none sent", "POST /model/m/converse HTTP/1.1\r\nHost: gw\r\n" + key + "Content-Length: 30000000\r\n\r\n",
			413, "ValidationException"},
		{"key, gzip, none sent", "POST /model/m/converse HTTP/1.1\r\nHost: gw\r\n" + key + "Content-Encoding: gzip\r\nContent-Length: 100\r\n\r\n",
			400, "ValidationException"},
		{"key, unknown operation", "POST /model/m/explode HTTP/1.1\r\nHost: gw\r\n" + key + "Content-Length: 100\r\n\r\n",
			404, "UnknownOperationException"},
		{"key, wrong method", "PUT /model/m/converse HTTP/1.1\r\nHost: gw\r\n" + key + "Content-Length: 100\r\n\r\n",
			405, "ValidationException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _, br := rawExchange(t, addr, tt.head)
			if resp.StatusCode != tt.status || resp.Header.Get("X-Amzn-ErrorType") != tt.typ {
				t.Errorf("answer = %d %q, want %d %q", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), tt.status, tt.typ)
			}
			expectClosed(t, resp, br)
		})
	}
	if n := h.creds.calls.Load(); n != 0 {
		t.Errorf("credential source called %d times, want 0", n)
	}
}

// TestBodyDeadline: a keyed request whose body does not arrive within
// the body deadline gets 408 and a closed connection, and its usage
// record says so; it does not hold the connection open.
func TestBodyDeadline(t *testing.T) {
	sink := &recordSink{}
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.BodyTimeout = 100 * time.Millisecond; c.Usage = sink })
	addr := strings.TrimPrefix(h.gateway.URL, "http://")
	start := time.Now()
	resp, _, br := rawExchange(t, addr, "POST /model/amazon.nova-lite-v1:0/converse HTTP/1.1\r\nHost: gw\r\n"+
		"Authorization: Bearer "+testKey+"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"messages\"")
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("X-Amzn-ErrorType") != typeRequestTimeout {
		t.Errorf("answer = %d %q, want 408 %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), typeRequestTimeout)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("answered after %v, before the body deadline", d)
	}
	expectClosed(t, resp, br)
	waitFor(t, func() bool { return len(sink.all()) == 1 })
	if r := sink.all()[0]; r.Status != http.StatusRequestTimeout || r.ErrorType != typeRequestTimeout || r.ClientGone {
		t.Errorf("usage record = status %d, error %q, client gone %v; want 408 %s, not gone", r.Status, r.ErrorType, r.ClientGone, typeRequestTimeout)
	}
	if n := h.creds.calls.Load(); n != 0 {
		t.Errorf("credential source called %d times, want 0", n)
	}
}

// TestBodyDeadlineEndsWithBody: the body deadline ends with the body, so a
// response that streams for longer than it is not cut. (readBody lifts it
// itself; net/http's HTTP/1 server also lifts a read deadline when a body
// reaches EOF, so this test guards the outcome, not that line.)
func TestBodyDeadlineEndsWithBody(t *testing.T) {
	const bodyTimeout = 50 * time.Millisecond
	sink := &recordSink{}
	var cancelled atomic.Bool
	h := newHarness(t, fakeaws.Options{BeforeEvent: func(ctx context.Context, op string, i int) {
		if i == 1 {
			// Hold event 1 well past the body deadline: a deadline left
			// on the connection would cancel the request meanwhile.
			select {
			case <-ctx.Done():
				cancelled.Store(true)
			case <-time.After(10 * bodyTimeout):
			}
		}
	}}, func(c *Config) { c.BodyTimeout = bodyTimeout; c.Usage = sink })
	resp := h.post(t, "/model/amazon.nova-lite-v1:0/converse-stream", converseBody, authed())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("stream ended with %v", err)
	}
	if cancelled.Load() {
		t.Error("the upstream call was cancelled while the response streamed: the body deadline outlived the body")
	}
	waitFor(t, func() bool { return len(sink.all()) == 1 })
	if r := sink.all()[0]; r.ErrorType != "" || r.ClientGone || r.Output == 0 {
		t.Errorf("usage record = %+v, want a complete stream", r)
	}
}

// TestBodyAllowance: a body gets BodyTimeout, or longer if its declared
// length needs it at BodyMinRate.
func TestBodyAllowance(t *testing.T) {
	c := Config{BodyTimeout: 30 * time.Second, BodyMinRate: 100_000}
	tests := []struct {
		length int64
		want   time.Duration
	}{
		{-1, 30 * time.Second}, // chunked: no declared length
		{0, 30 * time.Second},
		{3_000_000, 30 * time.Second},
		{3_000_001, 30*time.Second + 10*time.Microsecond},
		{25_000_000, 250 * time.Second},
		{1 << 62, maxBodyAllowance},
		{1<<63 - 1, maxBodyAllowance},
	}
	for _, tt := range tests {
		if got := c.bodyAllowance(tt.length); got != tt.want {
			t.Errorf("bodyAllowance(%d) = %v, want %v", tt.length, got, tt.want)
		}
	}
}

// TestBodyDeadlineH2C: over HTTP/2 the body deadline applies per stream,
// and refusals do not tear down the connection the client's other
// streams share (Connection: close would make net/http send GOAWAY).
func TestBodyDeadlineH2C(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.BodyTimeout = 100 * time.Millisecond })
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h.proxy)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	// stalled sends a request whose body stops after its first bytes.
	stalled := func(header http.Header) *http.Response {
		t.Helper()
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/model/amazon.nova-lite-v1:0/converse", pr)
		req.ContentLength = 100
		req.Header = header
		go io.WriteString(pw, `{"messages"`)
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		t.Cleanup(cancel)
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := stalled(http.Header{}); resp.StatusCode != http.StatusUnauthorized || resp.ProtoMajor != 2 {
		t.Errorf("no key: HTTP/%d %d, want HTTP/2 401", resp.ProtoMajor, resp.StatusCode)
	}
	if resp := stalled(authed()); resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("X-Amzn-ErrorType") != typeRequestTimeout {
		t.Errorf("stalled body: %d %q, want 408 %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), typeRequestTimeout)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/model/amazon.nova-lite-v1:0/converse", strings.NewReader(converseBody))
	req.Header = authed()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("complete request: %d, want 200", resp.StatusCode)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 requests, want 1: a refusal closed the shared HTTP/2 connection", n)
	}
}
