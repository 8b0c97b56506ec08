package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/devcert"
)

// serveForTest runs Serve on ln until the test ends.
func serveForTest(t *testing.T, ln net.Listener, h http.Handler, c Config, refused ...func(string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	o := Options{Logger: slog.New(slog.DiscardHandler)}
	if len(refused) > 0 {
		o.Refused = refused[0]
	}
	go func() { done <- Serve(ctx, ln, h, c, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
}

// recorder is a handler that reads the body, answers "ok" and remembers
// each request as "METHOD /path body".
type recorder struct {
	mu   sync.Mutex
	seen []string
	// tls and proto record what the handler saw of the last request.
	tls   *tls.ConnectionState
	proto string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		body = []byte("read error: " + err.Error())
	}
	rec.mu.Lock()
	rec.seen = append(rec.seen, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(body)))
	rec.tls, rec.proto = r.TLS, r.Proto
	rec.mu.Unlock()
	io.WriteString(w, "ok")
}

func (rec *recorder) requests() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.seen)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// readResponse reads one response and its body from br.
func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return resp, string(body)
}

// expectClosed fails unless the server has closed the connection.
func expectClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("connection still open; read %q", append([]byte{b}, rest...))
	}
	if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the response = %v, want the connection closed", err)
	}
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"

// TestFramingRefused: a request whose framing two HTTP parsers may read
// differently (RFC 9112 section 6.1, 5.2) is refused and its connection
// closed, so that the request smuggled behind it never reaches the
// handler.
func TestFramingRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  string
		// wantStatus is the answer; wantMsg, if set, a part of the
		// gateway's message (net/http answers the others itself).
		wantStatus int
		wantMsg    string
	}{
		{"Content-Length then Transfer-Encoding",
			"POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			400, "both Content-Length and Transfer-Encoding"},
		{"Transfer-Encoding then Content-Length",
			"POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n",
			400, "both Content-Length and Transfer-Encoding"},
		{"lower case names, bare LF, Chunked",
			"POST /model/m/converse HTTP/1.1\nhost: gw\ncontent-length: 5\ntransfer-encoding:  Chunked \n\n0\r\n\r\n",
			400, "both Content-Length and Transfer-Encoding"},
		{"HTTP/1.0 keep-alive with both",
			"POST /model/m/converse HTTP/1.0\r\nHost: gw\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
			400, "both Content-Length and Transfer-Encoding"},
		{"HTTP/1.0 keep-alive with Transfer-Encoding",
			"POST /model/m/converse HTTP/1.0\r\nHost: gw\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
			400, "HTTP/1.0"},
		{"obsolete line folding",
			"POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nX-A: b\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
			400, "line folding"},
		// net/http refuses these itself; they are here to show it.
		{"two Transfer-Encoding fields",
			"POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
			501, ""},
		{"Transfer-Encoding other than chunked",
			"POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
			501, ""},
		{"two different Content-Lengths",
			"POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
			400, ""},
		{"space before the colon",
			"POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n",
			400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			ln := listen(t)
			var reasons []string
			var mu sync.Mutex
			serveForTest(t, ln, rec, Config{}, func(r string) { mu.Lock(); reasons = append(reasons, r); mu.Unlock() })
			c, br := dial(t, ln.Addr().String())
			if _, err := io.WriteString(c, tc.req+smuggled); err != nil {
				t.Fatal(err)
			}
			resp, body := readResponse(t, br)
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tc.wantStatus, body)
			}
			if !resp.Close {
				t.Errorf("Connection: %q, want close", resp.Header.Get("Connection"))
			}
			if tc.wantMsg != "" {
				if got := resp.Header.Get("Content-Type"); got != "application/json" {
					t.Errorf("Content-Type %q, want application/json", got)
				}
				if got := resp.Header.Get("X-Amzn-ErrorType"); got != "ValidationException" {
					t.Errorf("X-Amzn-ErrorType %q, want ValidationException", got)
				}
				var msg struct{ Message string }
				if err := json.Unmarshal([]byte(body), &msg); err != nil || !strings.Contains(msg.Message, tc.wantMsg) {
					t.Errorf("body %q (%v), want a message with %q", body, err, tc.wantMsg)
				}
			}
			expectClosed(t, br)
			if got := rec.requests(); len(got) != 0 {
				t.Errorf("handler saw %q, want nothing", got)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.wantMsg != "" && (len(reasons) != 1 || !slices.Contains(RefusalReasons[:], reasons[0])) {
				t.Errorf("Refused told %q, want one of RefusalReasons", reasons)
			}
			if tc.wantMsg == "" && len(reasons) != 0 {
				t.Errorf("Refused told %q for a request net/http refused itself, want nothing", reasons)
			}
		})
	}

	t.Run("after a good request on the same connection", func(t *testing.T) {
		rec := &recorder{}
		ln := listen(t)
		serveForTest(t, ln, rec, Config{})
		c, br := dial(t, ln.Addr().String())
		io.WriteString(c, "POST /good HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi")
		if resp, body := readResponse(t, br); resp.StatusCode != 200 || resp.Close {
			t.Fatalf("good request: status %d, close %v, body %q; want 200, kept open", resp.StatusCode, resp.Close, body)
		}
		io.WriteString(c, "POST /bad HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"+smuggled)
		if resp, _ := readResponse(t, br); resp.StatusCode != 400 || !resp.Close {
			t.Errorf("bad request: status %d, close %v; want 400, closed", resp.StatusCode, resp.Close)
		}
		expectClosed(t, br)
		if got, want := rec.requests(), []string{"POST /good hi"}; !slices.Equal(got, want) {
			t.Errorf("handler saw %q, want %q", got, want)
		}
	})

	t.Run("pipelined behind a good request", func(t *testing.T) {
		rec := &recorder{}
		ln := listen(t)
		serveForTest(t, ln, rec, Config{})
		c, br := dial(t, ln.Addr().String())
		io.WriteString(c, "GET /good HTTP/1.1\r\nHost: gw\r\n\r\n"+
			"POST /bad HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+smuggled)
		// The good request is answered, or refused too when the bad one
		// arrived in the same read; the bad one is refused.
		for {
			resp, body := readResponse(t, br)
			if resp.StatusCode == 400 {
				if !resp.Close {
					t.Errorf("400 without Connection: close")
				}
				break
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d (%q), want 200 or 400", resp.StatusCode, body)
			}
		}
		expectClosed(t, br)
		for _, r := range rec.requests() {
			if r != "GET /good" {
				t.Errorf("handler saw %q", r)
			}
		}
	})
}

// TestFramingKeepAlive: well-framed requests keep their connection, one
// after the other or pipelined; a chunked one is served and then its
// connection closed.
func TestFramingKeepAlive(t *testing.T) {
	t.Run("sequential", func(t *testing.T) {
		rec := &recorder{}
		ln := listen(t)
		serveForTest(t, ln, rec, Config{})
		c, br := dial(t, ln.Addr().String())
		var want []string
		for _, body := range []string{"one", "", "three 3"} {
			io.WriteString(c, "POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"+
				"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
			resp, got := readResponse(t, br)
			if resp.StatusCode != 200 || resp.Close || got != "ok" {
				t.Fatalf("request %q: status %d, close %v, body %q; want 200, kept open, ok", body, resp.StatusCode, resp.Close, got)
			}
			want = append(want, strings.TrimSpace("POST /model/m/converse "+body))
		}
		if got := rec.requests(); !slices.Equal(got, want) {
			t.Errorf("handler saw %q, want %q", got, want)
		}
	})

	t.Run("pipelined", func(t *testing.T) {
		rec := &recorder{}
		ln := listen(t)
		serveForTest(t, ln, rec, Config{})
		c, br := dial(t, ln.Addr().String())
		io.WriteString(c, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\n"+
			"POST /b HTTP/1.1\r\nHost: gw\r\nContent-Length: 26\r\n\r\nTransfer-Encoding: chunked"+
			"POST /c HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n\r\nc\r\n"+ // a CRLF after a POST is skipped
			"HEAD /d HTTP/1.1\r\nHost: gw\r\n\r\n")
		for i := range 4 {
			resp, err := http.ReadResponse(br, &http.Request{Method: []string{"GET", "POST", "POST", "HEAD"}[i]})
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Close {
				t.Errorf("response %d: status %d, close %v; want 200, kept open", i, resp.StatusCode, resp.Close)
			}
		}
		io.WriteString(c, "GET /e HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, _ := readResponse(t, br); resp.StatusCode != 200 || resp.Close {
			t.Errorf("after the pipeline: status %d, close %v; want 200, kept open", resp.StatusCode, resp.Close)
		}
		want := []string{"GET /a", "POST /b Transfer-Encoding: chunked", "POST /c c", "HEAD /d", "GET /e"}
		if got := rec.requests(); !slices.Equal(got, want) {
			t.Errorf("handler saw %q, want %q", got, want)
		}
	})

	for _, tc := range []struct{ name, req, want string }{
		{"chunked closes", "POST /model/m/converse HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			"POST /model/m/converse hello"},
		// net/http would answer "OPTIONS *" itself and keep the
		// connection, unwatched.
		{"chunked OPTIONS * closes", "OPTIONS * HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			"OPTIONS * hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			ln := listen(t)
			serveForTest(t, ln, rec, Config{})
			c, br := dial(t, ln.Addr().String())
			io.WriteString(c, tc.req+smuggled)
			resp, body := readResponse(t, br)
			if resp.StatusCode != 200 || body != "ok" || !resp.Close {
				t.Errorf("status %d, body %q, close %v; want 200, ok, closed", resp.StatusCode, body, resp.Close)
			}
			expectClosed(t, br)
			if got, want := rec.requests(), []string{tc.want}; !slices.Equal(got, want) {
				t.Errorf("handler saw %q, want %q", got, want)
			}
		})
	}
}

// testTLS returns a server config (ALPN as cmd/gateway sets it) and a
// client config trusting it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	certFile, keyFile, err := devcert.Write(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		&tls.Config{RootCAs: pool}
}

// TestTLS: behind a TLS listener HTTP/2 (ALPN) and HTTP/1.1 are served
// with r.TLS set, HTTP/1.1 framing is still checked, and the handshake
// keeps net/http's timeout and its answer to plain HTTP.
func TestTLS(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	rec := &recorder{}
	inner := listen(t)
	addr := inner.Addr().String()
	serveForTest(t, tls.NewListener(inner, serverTLS), rec, Config{ReadHeaderTimeout: 300 * time.Millisecond})

	for _, tc := range []struct {
		name      string
		h1, h2    bool
		wantProto string
	}{
		{"h2", false, true, "HTTP/2.0"},
		{"http/1.1", true, false, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: clientTLS.Clone(), Protocols: new(http.Protocols)}
			tr.Protocols.SetHTTP1(tc.h1)
			tr.Protocols.SetHTTP2(tc.h2)
			defer tr.CloseIdleConnections()
			for range 2 {
				resp, err := (&http.Client{Transport: tr}).Post("https://"+addr+"/model/m/converse", "application/json", strings.NewReader("{}"))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Proto != tc.wantProto {
					t.Errorf("status %d, proto %s; want 200, %s", resp.StatusCode, resp.Proto, tc.wantProto)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if rec.tls == nil || !rec.tls.HandshakeComplete || rec.proto != tc.wantProto {
				t.Errorf("handler saw TLS %v, proto %s; want a completed handshake, %s", rec.tls, rec.proto, tc.wantProto)
			}
		})
	}

	t.Run("smuggling", func(t *testing.T) {
		cfg := clientTLS.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		before := len(rec.requests())
		io.WriteString(c, "POST /bad HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+smuggled)
		br := bufio.NewReader(c)
		if resp, _ := readResponse(t, br); resp.StatusCode != 400 || !resp.Close {
			t.Errorf("status %d, close %v; want 400, closed", resp.StatusCode, resp.Close)
		}
		expectClosed(t, br)
		if got := rec.requests()[before:]; len(got) != 0 {
			t.Errorf("handler saw %q, want nothing", got)
		}
	})

	t.Run("plain HTTP", func(t *testing.T) {
		c, br := dial(t, addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, body := readResponse(t, br)
		if resp.StatusCode != 400 || !strings.Contains(body, "HTTPS") {
			t.Errorf("status %d, body %q; want 400 naming HTTPS", resp.StatusCode, body)
		}
	})

	t.Run("no handshake", func(t *testing.T) {
		start := time.Now()
		_, br := dial(t, addr)
		expectClosed(t, br)
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("closed after %v, before read_header_timeout", d)
		}
	})
}

// TestH2C: HTTP/2 with prior knowledge on a plain listener is served, and
// HTTP/2 itself refuses Transfer-Encoding (RFC 9113 section 8.2.2).
func TestH2C(t *testing.T) {
	rec := &recorder{}
	ln := listen(t)
	addr := ln.Addr().String()
	serveForTest(t, ln, rec, Config{})

	t.Run("request", func(t *testing.T) {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		for range 2 {
			resp, err := (&http.Client{Transport: tr}).Post("http://"+addr+"/model/m/converse", "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
				t.Errorf("status %d, proto %s; want 200, HTTP/2.0", resp.StatusCode, resp.Proto)
			}
		}
	})

	t.Run("Transfer-Encoding", func(t *testing.T) {
		before := len(rec.requests())
		c, br := dial(t, addr)
		// Preface, empty SETTINGS, then HEADERS (END_STREAM|END_HEADERS)
		// on stream 1, HPACK literals without indexing (RFC 7541 6.2.2).
		var block []byte
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/x"}, {":authority", "gw"},
			{"transfer-encoding", "chunked"}, {"content-length", "0"}} {
			block = append(block, 0, byte(len(f[0])))
			block = append(block, f[0]...)
			block = append(block, byte(len(f[1])))
			block = append(block, f[1]...)
		}
		out := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		out = appendFrame(out, 0x4, 0, 0, nil)
		out = appendFrame(out, 0x1, 0x5, 1, block)
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
	frames:
		for {
			var hdr [9]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				t.Fatalf("no answer on stream 1: %v", err)
			}
			n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
			payload := make([]byte, n)
			if _, err := io.ReadFull(br, payload); err != nil {
				t.Fatal(err)
			}
			if stream := binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff; stream != 1 {
				continue
			}
			switch hdr[3] {
			case 0x1: // HEADERS: ":status: 400" is static table entry 12
				if len(payload) == 0 || payload[0] != 0x80|12 {
					t.Errorf("HEADERS %x, want :status 400 first", payload)
				}
			case 0x3: // RST_STREAM: refused as malformed, also fine
			default:
				t.Fatalf("frame type %d on stream 1", hdr[3])
			}
			break frames
		}
		if got := rec.requests()[before:]; len(got) != 0 {
			t.Errorf("handler saw %q, want nothing", got)
		}
	})
}

func appendFrame(b []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, payload...)
}
