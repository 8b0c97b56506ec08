package fakeaws

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// eventStreamContentType is the HTTP Content-Type of every Bedrock
// streaming response.
const eventStreamContentType = "application/vnd.amazon.eventstream"

// frame is one event-stream message of a planned response, plus the
// output tokens the model has produced once the frame is sent (for
// billing a stream the client abandons).
type frame struct {
	msg       eventstream.Message
	outTokens int64
}

// eventFrame builds an event message: :message-type=event,
// :event-type=<union member>, :content-type=application/json.
func eventFrame(eventType string, payload []byte, outTokens int64) frame {
	var m eventstream.Message
	m.Headers.Set(":event-type", eventstream.StringValue(eventType))
	m.Headers.Set(":content-type", eventstream.StringValue("application/json"))
	m.Headers.Set(":message-type", eventstream.StringValue("event"))
	m.Payload = payload
	return frame{msg: m, outTokens: outTokens}
}

// exceptionFrame builds a modelled in-stream error:
// :message-type=exception, :exception-type=<union member>.
func exceptionFrame(exceptionType string, payload []byte, outTokens int64) frame {
	var m eventstream.Message
	m.Headers.Set(":exception-type", eventstream.StringValue(exceptionType))
	m.Headers.Set(":content-type", eventstream.StringValue("application/json"))
	m.Headers.Set(":message-type", eventstream.StringValue("exception"))
	m.Payload = payload
	return frame{msg: m, outTokens: outTokens}
}

// errClientGone reports that a stream could not be completed because
// writing to or flushing the client failed, or its context ended.
var errClientGone = errors.New("client went away mid-stream")

// flush sends what has been written so far. A ResponseWriter that cannot
// flush (a wrapper without Flush or Unwrap) fails the stream rather than
// silently buffering it: streaming tests would otherwise hang.
func flush(rc *http.ResponseController) error {
	if err := rc.Flush(); err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			return fmt.Errorf("response writer cannot flush: %w", err)
		}
		return errClientGone
	}
	return nil
}

// writeStream sends HTTP 200 and then frames one by one: for each frame it
// calls Options.BeforeEvent, then (before the last frame) record, then
// encodes and flushes the frame so the client sees it at once. It returns
// the number of frames fully written and, if it stopped early,
// errClientGone or an error wrapping http.ErrNotSupported.
func (s *Server) writeStream(ctx context.Context, w http.ResponseWriter, op string, frames []frame, extraHeaders http.Header, record func()) (int, error) {
	h := w.Header()
	h.Set("Content-Type", eventStreamContentType)
	for k, v := range extraHeaders {
		h[k] = v
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := flush(rc); err != nil {
		return 0, err
	}
	enc := eventstream.NewEncoder()
	for i, f := range frames {
		if s.opts.BeforeEvent != nil {
			s.opts.BeforeEvent(ctx, op, i)
		}
		if ctx.Err() != nil {
			return i, errClientGone
		}
		if i == len(frames)-1 {
			// Record before the last byte leaves, so a client that has
			// seen the whole stream also sees the record.
			record()
		}
		if err := enc.Encode(w, f.msg); err != nil {
			return i, errClientGone
		}
		if err := flush(rc); err != nil {
			return i, err
		}

	}
	return len(frames), nil
}
