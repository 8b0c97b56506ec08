package proxy

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// blockingSink holds each usage record until released.
type blockingSink struct{ release chan struct{} }

func (b blockingSink) Record(usage.Record) { <-b.release }

// TestAnswerBeforeEpilogue: an HTTP/1.1 client has Bedrock's whole JSON
// answer while the request's epilogue (here a usage sink that does not
// return) is still running: the answer does not wait for bookkeeping.
func TestAnswerBeforeEpilogue(t *testing.T) {
	sink := blockingSink{release: make(chan struct{})}
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.Usage = sink })
	got := make(chan error, 1)
	go func() {
		resp := h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, authed())
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && (resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(body))) {
			err = io.ErrUnexpectedEOF
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("answer: %v", err)
		}
	case <-time.After(10 * time.Second): // a deadlock guard, not a timing
		t.Error("the client did not get the answer while the epilogue ran")
	}
	close(sink.release)
}
