package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

func TestBodyPoolClasses(t *testing.T) {
	for _, tt := range []struct{ n, wantCap int }{
		{1, 1}, {4095, 4095}, {4096, 4096}, {4097, 8192}, {100 << 10, 128 << 10}, {1 << 20, 1 << 20}, {1<<20 + 1, 1<<20 + 1},
	} {
		p := getBuf(tt.n)
		if len(*p) != tt.n || cap(*p) != tt.wantCap {
			t.Errorf("getBuf(%d): len %d cap %d, want len %d cap %d", tt.n, len(*p), cap(*p), tt.n, tt.wantCap)
		}
		putBuf(p)
	}
}

// TestPooledBodyCloseStopsReads: once the transport has closed the body
// (and its buffer may serve another request), a late Read gets an error,
// never bytes; Close and Read exclude each other (run under -race).
func TestPooledBodyCloseStopsReads(t *testing.T) {
	buf := getBuf(8 << 10)
	copy(*buf, bytes.Repeat([]byte("a"), 8<<10))
	b := &pooledBody{buf: buf}
	b.r.Reset(*buf)
	var wg sync.WaitGroup
	wg.Go(func() {
		p := make([]byte, 100)
		for {
			n, err := b.Read(p)
			if bytes.ContainsFunc(p[:n], func(r rune) bool { return r != 'a' }) {
				t.Errorf("Read returned bytes that are not the body's: %q", p[:n])
			}
			if err != nil {
				return
			}
		}
	})
	b.Close()
	b.Close() // twice: the buffer goes back once
	wg.Wait()
	if n, err := b.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("Read after Close = %d, %v; want an error", n, err)
	}
}

// TestPooledBodiesStayTheirOwn sends many concurrent requests of many
// sizes, each with its own marker, through the gateway to the emulated
// Bedrock, which checks each signature against the body it received:
// with buffers reused between requests, every request must still reach
// Bedrock with exactly its own body.
func TestPooledBodiesStayTheirOwn(t *testing.T) {
	// Stamped, the body sent is a second pooled buffer; unstamped, it is
	// the buffer the body was read into.
	for _, stamp := range []bool{true, false} {
		t.Run(fmt.Sprintf("stamp %v", stamp), func(t *testing.T) {
			h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.DisableMetadataStamp = !stamp })
			testBodiesStayTheirOwn(t, h)
		})
	}
}

func testBodiesStayTheirOwn(t *testing.T, h *harness) {
	sizes := []int{100, 3 << 10, 5 << 10, 9 << 10, 20 << 10, 70 << 10}
	const workers, each = 8, 50
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				marker := fmt.Sprintf("marker-%d-%d-", g, i)
				text := marker + strings.Repeat("x", sizes[(g+i)%len(sizes)])
				body := `{"messages":[{"role":"user","content":[{"text":"` + text + `"}]}]}`
				req, _ := http.NewRequest(http.MethodPost, h.gateway.URL+"/model/amazon.nova-lite-v1:0/converse", strings.NewReader(body))
				req.Header = authed()
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s: status %d", marker, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for _, inv := range h.fake.Invocations() {
		s := string(inv.Body)
		i := strings.Index(s, "marker-")
		if i < 0 || strings.Count(s, "marker-") != 1 {
			t.Errorf("invocation body without exactly one marker: %.80q", s)
			continue
		}
		seen[s[i:i+strings.Index(s[i:], "-x")]]++ // marker-g-i
	}
	if len(seen) != workers*each {
		t.Errorf("%d distinct request bodies reached Bedrock, want %d", len(seen), workers*each)
	}
}
