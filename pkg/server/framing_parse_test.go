package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// watch feeds stream to a new framing in reads of at most chunk bytes, as
// conn.Read would, and returns the framing and where the stream was cut
// (-1 if not).
func watch(start uint8, stream []byte, chunk int) (*framing, int) {
	f := &framing{st: start}
	for off := 0; off < len(stream) && f.st != stOff; {
		end := min(off+chunk, len(stream))
		if cut := f.scan(stream[off:end]); cut >= 0 {
			return f, off + cut
		}
		off = end
	}
	return f, -1
}

var verdictNames = map[uint32]string{keepAlive: "keepAlive", closeAfter: "closeAfter", refuseCLTE: "refuseCLTE",
	refuseTE10: "refuseTE10", refuseObsFold: "refuseObsFold", refuseBadCL: "refuseBadCL"}

var bedrockHeaders = "Host: bedrock-runtime.us-east-1.amazonaws.com\r\n" +
	"User-Agent: aws-sdk-go-v2/1.39.2 ua/2.1 os/linux lang/go#1.26 md/GOOS#linux md/GOARCH#amd64 api/bedrockruntime#1.63.13 m/E,g\r\n" +
	"Accept: application/json\r\n" +
	"Amz-Sdk-Invocation-Id: 0b0c6c9e-9d8c-4c33-8d2a-4f1c3c1a7e55\r\n" +
	"Amz-Sdk-Request: attempt=1; max=3\r\n" +
	"Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImtleS0xIiwidHlwIjoiSldUIn0." + strings.Repeat("eyJzdWIiOiJ1c2VyIn0", 30) + "\r\n" +
	"Content-Type: application/json\r\n" +
	"X-Amz-Date: 20260101T000000Z\r\n"

// converse is a request as the AWS SDK for Go sends it, with a body.
func converse(body string) string {
	return "POST /model/anthropic.claude-sonnet-4-20250514-v1%3A0/converse HTTP/1.1\r\n" + bedrockHeaders +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// framingCases are byte streams and what the watcher makes of them; the
// fuzz target starts from them.
var framingCases = []struct {
	name    string
	stream  string
	verdict uint32
	// cut is where the stream is cut: -1 for nowhere, -2 for just
	// before "<CUT>", which is removed from stream.
	cut    int
	wantSt uint8
}{
	{"keep-alive", converse(`{"messages":[]}`) + converse("") + "GET /x HTTP/1.1\r\nHost: gw\r\n\r\n", keepAlive, -1, stStart},
	{"a body holding a header block is skipped", converse("GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), keepAlive, -1, stStart},
	{"in a body", converse("12345")[:len(converse("12345"))-2], keepAlive, -1, stBody},
	{"largest Content-Length", "POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\nab", keepAlive, -1, stBody},
	{"equal Content-Lengths", "POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length:2 \r\n\r\nabGET / HTTP/1.1\r\n\r\n", keepAlive, -1, stStart},
	{"blank lines before a request", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", keepAlive, -1, stStart},
	{"similar names", "POST / HTTP/1.1\r\nContent-Lengths: x\r\nX-Content-Length: 5\r\nTransfer-Encodings: gzip\r\nContent-Type: a\r\nTE: trailers\r\nContent-Length: 1\r\n\r\nxGET / HTTP/1.1\r\n\r\n", keepAlive, -1, stStart},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04", keepAlive, -1, stOff},
	{"almost the preface", "PRI * HTTP/2.0\r\n\r\nSM\r\nGET / HTTP/1.1\r\n\r\n", keepAlive, -1, stStart},
	{"HTTP/1.0", "POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nx", keepAlive, -1, stStart},
	{"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", closeAfter, -1, stOff},
	{"chunked, bare LF", "POST / HTTP/1.1\ntransfer-encoding: chunked\n\n1\r\nx\r\n0\r\n\r\n", closeAfter, -1, stOff},

	{"CL then TE", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n<CUT>0\r\n\r\n" + smuggled, refuseCLTE, -2, stOff},
	{"TE then CL", "POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n<CUT>0\r\n\r\n", refuseCLTE, -2, stOff},
	{"CL and TE, bare LF", "POST / HTTP/1.1\ncontent-length:0\ntransfer-encoding:chunked\n\n<CUT>0\n\n", refuseCLTE, -2, stOff},
	{"CL and TE in the second request", converse("ab") + "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n<CUT>", refuseCLTE, -2, stOff},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n<CUT>0\r\n\r\n", refuseTE10, -2, stOff},
	{"TE in HTTP/1.0, bare LF", "POST / HTTP/1.0\nTransfer-Encoding: chunked\n\n<CUT>", refuseTE10, -2, stOff},
	{"obs-fold", "POST / HTTP/1.1\r\nX-A: b\r\n\tTransfer-Encoding: chunked\r\n\r\n<CUT>", refuseObsFold, -2, stOff},
	{"empty Content-Length", "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n<CUT>", refuseBadCL, -2, stOff},
	{"signed Content-Length", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n<CUT>", refuseBadCL, -2, stOff},
	{"Content-Length list", "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n<CUT>", refuseBadCL, -2, stOff},
	{"Content-Length with inner space", "POST / HTTP/1.1\r\nContent-Length: 1 1\r\n\r\n<CUT>", refuseBadCL, -2, stOff},
	{"Content-Length overflow", "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n<CUT>", refuseBadCL, -2, stOff},
	{"different Content-Lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n<CUT>ab", refuseBadCL, -2, stOff},
}

// TestFramingParse: the watcher reaches the same verdict, cut and state
// whatever the reads the stream arrives in.
func TestFramingParse(t *testing.T) {
	for _, tc := range framingCases {
		t.Run(tc.name, func(t *testing.T) {
			stream, wantCut := tc.stream, tc.cut
			if wantCut == -2 {
				wantCut = strings.Index(stream, "<CUT>")
				stream = strings.Replace(stream, "<CUT>", "", 1)
			}
			for chunk := 1; chunk <= len(stream); chunk++ {
				f, cut := watch(stPreface, []byte(stream), chunk)
				if v := f.verdict.Load(); v != tc.verdict || cut != wantCut || f.st != tc.wantSt {
					t.Fatalf("reads of %d bytes: verdict %s, cut %d, state %d; want %s, %d, %d",
						chunk, verdictNames[v], cut, f.st, verdictNames[tc.verdict], wantCut, tc.wantSt)
				}
			}
		})
	}
}

// FuzzFraming checks the watcher against net/http's own parser: whatever
// the reads, it reaches the same verdict; on every request net/http reads,
// the watcher either stopped (and the connection is refused or closed) or
// agrees where the request ends; and a request net/http reads as chunked
// never leaves the connection open.
func FuzzFraming(f *testing.F) {
	for _, tc := range framingCases {
		f.Add([]byte(strings.Replace(tc.stream, "<CUT>", "", 1)), uint8(7))
	}
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		whole, wholeCut := watch(stPreface, stream, len(stream)+1)
		split, splitCut := watch(stPreface, stream, int(chunk)%16+1)
		if whole.verdict.Load() != split.verdict.Load() || wholeCut != splitCut || whole.st != split.st {
			t.Fatalf("in one read: verdict %d, cut %d, state %d; in reads of %d: %d, %d, %d",
				whole.verdict.Load(), wholeCut, whole.st, int(chunk)%16+1, split.verdict.Load(), splitCut, split.st)
		}

		w := &framing{st: stPreface}
		counted := &countingReader{r: bytes.NewReader(stream)}
		br := bufio.NewReader(counted)
		fed := 0
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			end := counted.n - br.Buffered()
			if w.st != stOff && w.scan(stream[fed:end]) >= 0 {
				return
			}
			fed = end
			if w.st == stOff {
				if w.verdict.Load() == keepAlive && !strings.HasPrefix(string(stream), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") {
					t.Fatalf("watching stopped, connection kept, after %q", stream[:end])
				}
				return
			}
			if req.TransferEncoding != nil {
				t.Fatalf("net/http read %q as chunked, the watcher did not see it", stream[:end])
			}
			if w.st != stStart && w.st != stPreface {
				t.Fatalf("net/http read a request in %q, the watcher is in state %d", stream[:end], w.st)
			}
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// replayConn reads its data over and over.
type replayConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.off == len(c.data) {
		c.off = 0
	}
	n := copy(p, c.data[c.off:])
	c.off += n
	return n, nil
}

const pipelineRequests = 16

// pipeline is requests as the AWS SDK sends them: about 1.4 KB of header
// and bodies of a few KB.
func pipeline() []byte {
	var b strings.Builder
	for i := range pipelineRequests {
		b.WriteString(converse(`{"messages":[{"role":"user","content":[{"text":"` + strings.Repeat("hello ", 100*(i%8)) + `"}]}]}`))
	}
	return []byte(b.String())
}

// TestFramingAllocs: watching costs no allocation per read.
func TestFramingAllocs(t *testing.T) {
	c := &conn{Conn: &replayConn{data: pipeline()}, f: framing{st: stPreface}}
	buf := make([]byte, 4096)
	if n := testing.AllocsPerRun(1000, func() { c.Read(buf) }); n != 0 {
		t.Errorf("%v allocations per read, want 0", n)
	}
	if v := c.f.verdict.Load(); v != keepAlive || c.f.st == stOff {
		t.Errorf("verdict %s, state %d: the pipeline was not followed", verdictNames[v], c.f.st)
	}
}

// BenchmarkConnRead reads a pipeline of SDK requests in 4 KB reads (as
// http.Server's bufio.Reader does) from a plain conn and a watched one.
func BenchmarkConnRead(b *testing.B) {
	data := pipeline()
	for _, bc := range []struct {
		name string
		conn func() net.Conn
	}{
		{"plain", func() net.Conn { return &replayConn{data: data} }},
		{"watched", func() net.Conn { return &conn{Conn: &replayConn{data: data}, f: framing{st: stPreface}} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := bc.conn()
			buf := make([]byte, 4096)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				for n := 0; n < len(data); {
					k, _ := c.Read(buf[:min(len(buf), len(data)-n)])
					n += k
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pipelineRequests), "ns/request")
		})
	}
}

// BenchmarkServe sends SDK-sized requests through http.Server on loopback,
// one keep-alive connection, without and with the watching listener and
// guard.
func BenchmarkServe(b *testing.B) {
	body := `{"messages":[{"role":"user","content":[{"text":"` + strings.Repeat("hello ", 400) + `"}]}]}`
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"output":{}}`)
	})
	for _, bc := range []struct {
		name    string
		watched bool
	}{{"plain", false}, {"watched", true}} {
		b.Run(bc.name, func(b *testing.B) {
			log := slog.New(slog.DiscardHandler)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := New(h, Config{}, log)
			var sl net.Listener = ln
			if bc.watched {
				sl = newListener(ln, DefaultReadHeaderTimeout, log)
			} else {
				srv.Handler, srv.ConnContext = h, nil
			}
			go srv.Serve(sl)
			defer srv.Shutdown(context.Background())
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := "http://" + ln.Addr().String() + "/model/m/converse"
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("POST", url, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+strings.Repeat("x", 800))
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
