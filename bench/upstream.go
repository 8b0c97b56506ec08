package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// holdModel is the model ID whose ConverseStream the upstream holds open
// after the first frame, until the client goes away or the upstream closes.
const holdModel = "amazon.nova-hold-v1:0"

// upstream is a Bedrock Runtime that answers at once and checks nothing
// (no SigV4), so the bare proxy's unsigned requests and the gateway's
// signed ones cost it the same: the floor is the proxies, not the model.
type upstream struct {
	accepts  atomic.Int64 // TCP connections accepted, both listeners
	converse []byte       // the canned Converse answer
	frames   [][]byte     // the canned ConverseStream frames, encoded
	release  chan struct{}
	servers  []*http.Server

	// signed is the header and body length of the last signed Converse
	// (one carrying a session token): what the gateway sends, which the
	// size-matched control copies.
	mu           sync.Mutex
	signedHeader http.Header
	signedBody   int64
}

func newUpstream() *upstream {
	u := &upstream{release: make(chan struct{})}
	usage := map[string]int{"inputTokens": 2, "outputTokens": 5, "totalTokens": 7}
	u.converse, _ = json.Marshal(map[string]any{
		"output": map[string]any{"message": map[string]any{"role": "assistant",
			"content": []map[string]string{{"text": "Hello from the benchmark."}}}},
		"stopReason": "end_turn",
		"usage":      usage,
		"metrics":    map[string]int{"latencyMs": 1},
	})
	events := []struct {
		typ     string
		payload any
	}{
		{"messageStart", map[string]string{"role": "assistant"}},
		{"contentBlockDelta", map[string]any{"contentBlockIndex": 0, "delta": map[string]string{"text": "Hello "}}},
		{"contentBlockDelta", map[string]any{"contentBlockIndex": 0, "delta": map[string]string{"text": "there."}}},
		{"contentBlockStop", map[string]int{"contentBlockIndex": 0}},
		{"messageStop", map[string]string{"stopReason": "end_turn"}},
		{"metadata", map[string]any{"usage": usage, "metrics": map[string]int{"latencyMs": 1}}},
	}
	enc := eventstream.NewEncoder()
	for _, e := range events {
		var m eventstream.Message
		m.Headers.Set(":event-type", eventstream.StringValue(e.typ))
		m.Headers.Set(":content-type", eventstream.StringValue("application/json"))
		m.Headers.Set(":message-type", eventstream.StringValue("event"))
		m.Payload, _ = json.Marshal(e.payload)
		var b bytes.Buffer
		if err := enc.Encode(&b, m); err != nil {
			panic(err) // a fixed, valid message
		}
		u.frames = append(u.frames, b.Bytes())
	}
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/converse"):
		if r.Header.Get("X-Amz-Security-Token") != "" {
			u.mu.Lock()
			if u.signedHeader == nil {
				u.signedHeader, u.signedBody = r.Header.Clone(), r.ContentLength
			}
			u.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(u.converse)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/converse-stream"):
		w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
		rc := http.NewResponseController(w)
		for i, f := range u.frames {
			if _, err := w.Write(f); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			if i == 0 && strings.Contains(r.URL.Path, holdModel) {
				select {
				case <-r.Context().Done():
					return
				case <-u.release:
				}
			}
		}
	default:
		http.NotFound(w, r)
	}
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// serve starts the upstream on loopback: plain HTTP/1.1, and, with cert,
// HTTPS offering h2 and http/1.1. It returns their base URLs.
func (u *upstream) serve(cert tls.Certificate) (plainURL, tlsURL string, err error) {
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		plain.Close()
		return "", "", err
	}
	h1 := &http.Server{Handler: u}
	h1.SetKeepAlivesEnabled(true)
	h2 := &http.Server{Handler: u, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}}
	u.servers = []*http.Server{h1, h2}
	go h1.Serve(countingListener{plain, &u.accepts})
	go h2.ServeTLS(countingListener{secure, &u.accepts}, "", "")
	return "http://" + plain.Addr().String(), "https://" + secure.Addr().String(), nil
}

// releaseHeld lets every held stream finish.
func (u *upstream) releaseHeld() {
	select {
	case <-u.release:
	default:
		close(u.release)
	}
}

func (u *upstream) close() {
	u.releaseHeld()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range u.servers {
		if err := s.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Close()
		}
	}
}
