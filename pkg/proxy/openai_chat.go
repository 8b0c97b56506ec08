package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"

	"github.com/bedrock-gateway/gateway/internal/jsonscan"
	"github.com/bedrock-gateway/gateway/pkg/openai"
)

// nativeChatPath is where Bedrock Runtime serves OpenAI's Chat
// Completions itself (AWS guide "Invoke a model with the OpenAI Chat
// Completions API").
const nativeChatPath = "/openai/v1/chat/completions"

// maxErrorAnswer bounds how much of a Bedrock error answer is read to
// translate it.
const maxErrorAnswer = 64 << 10

// chatCompletions serves POST /v1/chat/completions: the request is
// checked, its model resolved (aliases) and admitted like any Bedrock
// call, then sent to Bedrock's own Chat Completions API for the models it
// serves (as it is) or to Converse / ConverseStream (translated both
// ways), signed with the caller's session.
func (p *Proxy) chatCompletions(w http.ResponseWriter, r *http.Request) {
	st := stateFrom(r.Context())
	st.op = opChatCompletions
	out, err := p.prepareChat(w, r, st)
	p.dispatch(w, r, st, out, err)
}

// prepareChat is prepare for a chat completion: every check before
// anything goes upstream, cheapest first, STS last.
func (p *Proxy) prepareChat(w http.ResponseWriter, r *http.Request, st *reqState) (*outbound, *Error) {
	out := &st.outVal
	out.method = http.MethodPost
	body, err := p.readBody(w, r, out)
	if err != nil {
		return out, err
	}
	// The model decides the path; the whole body must be JSON either
	// way. It is read exactly as Bedrock reads it, from the one member
	// named "model" (encoding/json would also take "MODEL", and the last
	// of two): the policy must admit the model Bedrock will run.
	model, merr := requestModel(body)
	if merr != nil {
		return out, merr
	}
	modelID, native := p.cfg.OpenAI.resolveModel(model)
	// Bedrock's own Chat Completions API checks its requests itself (and
	// takes parameters Converse cannot, such as n and seed); a request
	// for Converse is checked and translated here.
	var req *openai.ChatRequest
	if !native {
		var perr error
		if req, perr = openai.ParseChatRequest(body); perr != nil {
			return out, openAIRequestError(perr)
		}
	}
	if id, err := parseModelID(modelID); err != nil || id != modelID {
		return out, &Error{Status: http.StatusBadRequest, Type: typeValidation, param: "model",
			Msg: "model is not a valid Bedrock model identifier or configured alias"}
	}
	out.model = modelID
	spec, err := p.resolve(*st.identity)
	if err != nil {
		return out, err
	}
	st.specVal = spec
	out.spec = &st.specVal
	if err = p.admit(r.Context(), *st.identity, opChatCompletions, modelID); err != nil {
		return out, err
	}
	base := strings.TrimSuffix(p.cfg.Endpoint.EscapedPath(), "/")
	out.header = outboundHeader(http.Header{"Content-Type": {"application/json"}}, p.cfg.UserAgent)
	created := p.cfg.Now().Unix()
	id := "chatcmpl-" + st.id
	if native {
		// An alias becomes the model ID in the body too.
		if out.body, err = setModel(body, model, modelID); err != nil {
			return out, err
		}
		out.rawPath = base + nativeChatPath
		out.meterOp = opInvoke // usage.{prompt_tokens,completion_tokens}, as InvokeModel's OpenAI-style answers
		out.respond = p.openAIPassThrough
	} else {
		converse, cerr := req.ConverseBody()
		if cerr != nil {
			return out, openAIRequestError(cerr)
		}
		var md map[string]string
		if !p.cfg.DisableMetadataStamp {
			md = identityMetadata(st.identity, out.spec)
		}
		if out.body, err = stampBody(converse, md); err != nil {
			return out, err
		}
		if req.Stream {
			out.rawPath = base + "/model/" + escapeLabel(modelID) + "/converse-stream"
			out.meterOp = opConverseStream
			t := openai.NewStreamTranslator(req.Model, id, created, req.IncludeUsage())
			out.respond = func(w http.ResponseWriter, resp *http.Response) error { return p.openAIStream(w, resp, t) }
		} else {
			out.rawPath = base + "/model/" + escapeLabel(modelID) + "/converse"
			out.meterOp = opConverse
			out.respond = func(w http.ResponseWriter, resp *http.Response) error {
				return p.openAICompletion(w, resp, req.Model, id, created)
			}
		}
	}
	return out, p.seal(r.Context(), out)
}

// requestModel is the model an OpenAI request body names: the value of
// its one top-level member named exactly "model", a non-empty string.
func requestModel(body []byte) (string, *Error) {
	bad := func(err error) (string, *Error) {
		return "", &Error{Status: http.StatusBadRequest, Type: typeValidation, param: "model",
			Msg: "the body must be a JSON object naming its model, once", Err: err}
	}
	if !json.Valid(body) {
		return bad(nil)
	}
	// One walk of the top level: exactly one member whose name, after
	// unescaping, is "model" in any case, and that one spelt "model". A
	// "Model" or "MODEL", or a second "model", is refused: a parser that
	// matches names without case (encoding/json does) or keeps the last
	// of two could read another model than the policy admitted.
	var raw []byte
	refused := false
	err := jsonscan.Members(body, func(m jsonscan.Span) bool {
		n := string(m.Name)
		if m.Escaped && json.Unmarshal(body[m.KeyStart:m.KeyStart+len(m.Name)+2], &n) != nil {
			refused = true
		}
		if strings.EqualFold(n, "model") {
			refused = refused || n != "model" || raw != nil
			raw = body[m.Start:m.End]
		}
		return !refused
	})
	var model string
	if err != nil || refused || raw == nil || json.Unmarshal(raw, &model) != nil || model == "" {
		return bad(err)
	}
	return model, nil
}

// openAIRequestError is the 400 for a request the translation refused.
func openAIRequestError(err error) *Error {
	var re *openai.RequestError
	if errors.As(err, &re) {
		return &Error{Status: http.StatusBadRequest, Type: typeValidation, Msg: re.Message, param: re.Param, Err: err}
	}
	return &Error{Status: http.StatusBadRequest, Type: typeValidation, Msg: "the request is not a valid chat completion request", Err: err}
}

// stampBody writes the caller's identity into a Converse body's request
// metadata (see stampConverse).
func stampBody(body []byte, md map[string]string) ([]byte, *Error) {
	out, err := stampConverse(body, md)
	if err != nil {
		return nil, errValidation(err.Error(), err)
	}
	return out, nil
}

// setModel replaces the body's top-level "model" with modelID when the
// caller named an alias.
func setModel(body []byte, name, modelID string) ([]byte, *Error) {
	if name == modelID {
		return body, nil
	}
	_, start, end, found, err := jsonscan.Member(body, "model")
	if err != nil || !found {
		return nil, &Error{Status: http.StatusBadRequest, Type: typeValidation, param: "model", Msg: "model is missing", Err: err}
	}
	quoted := fmt.Appendf(nil, "%q", modelID) // a model ID is plain ASCII: %q is its JSON string
	out := make([]byte, 0, len(body)+len(quoted))
	out = append(out, body[:start]...)
	out = append(out, quoted...)
	return append(out, body[end:]...), nil
}

// openAIPassThrough relays Bedrock's own Chat Completions answer as it
// is (flushed chunk by chunk when it streams); a Bedrock error in its
// own shape becomes OpenAI's.
func (p *Proxy) openAIPassThrough(w http.ResponseWriter, resp *http.Response) error {
	if resp.StatusCode != http.StatusOK && resp.Header.Get("X-Amzn-Errortype") != "" {
		return p.openAIUpstreamError(w, resp)
	}
	return p.relayAnswer(w, resp)
}

// openAIUpstreamError answers a Bedrock error in OpenAI's shape.
func (p *Proxy) openAIUpstreamError(w http.ResponseWriter, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorAnswer))
	if err != nil {
		return err
	}
	status, out := openai.FromBedrockError(resp.StatusCode, sanitizeErrorType(resp.Header.Get("X-Amzn-Errortype")), body)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		h.Set("Retry-After", ra)
	}
	w.WriteHeader(status)
	_, err = w.Write(out)
	return err
}

// openAICompletion answers a Converse answer as a chat.completion.
func (p *Proxy) openAICompletion(w http.ResponseWriter, resp *http.Response, model, id string, created int64) error {
	if resp.StatusCode != http.StatusOK {
		return p.openAIUpstreamError(w, resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTapBytes))
	if err != nil {
		return err
	}
	out, err := openai.ChatCompletion(body, model, id, created)
	if err != nil {
		e := &Error{Status: http.StatusBadGateway, Type: typeUnavailable, Msg: "Bedrock's answer could not be read", Err: err}
		writeOpenAIError(w, "", e)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(out)
	return err
}

// openAIStream turns a ConverseStream answer into chat.completion.chunk
// server-sent events, each flushed as its Bedrock event arrives.
func (p *Proxy) openAIStream(w http.ResponseWriter, resp *http.Response, t *openai.StreamTranslator) error {
	if resp.StatusCode != http.StatusOK {
		return p.openAIUpstreamError(w, resp)
	}
	h := w.Header()
	h.Set("Content-Type", sseType)
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(chunk []byte) error {
		if len(chunk) == 0 {
			return nil
		}
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	dec := eventstream.NewDecoder()
	var payload, chunk []byte
	for {
		msg, err := dec.Decode(resp.Body, payload)
		if errors.Is(err, io.EOF) {
			break
		}
		chunk = chunk[:0]
		if err == nil {
			payload = msg.Payload[:0]
			switch headerString(msg, ":message-type") {
			case "event":
				chunk, err = t.Event(chunk, headerString(msg, ":event-type"), msg.Payload)
			case "exception":
				chunk = t.Exception(chunk, headerString(msg, ":exception-type"), msg.Payload)
			case "error":
				body, _ := json.Marshal(map[string]string{"message": headerString(msg, ":error-message")})
				chunk = t.Exception(chunk, headerString(msg, ":error-code"), body)
			}
		}
		if err != nil {
			// Bedrock's stream broke off or could not be read: the
			// client gets an error event, which the OpenAI SDKs raise,
			// rather than a stream that just stops.
			p.log.WarnContext(resp.Request.Context(), "translating Bedrock's stream failed", "error", err)
			return send(t.Exception(chunk[:0], "internalServerException", nil))
		}
		if err := send(chunk); err != nil {
			return err
		}
	}
	return send(t.Done(chunk[:0]))
}

// headerString is an event-stream message's string header ("" if absent).
func headerString(m eventstream.Message, name string) string {
	if v := m.Headers.Get(name); v != nil {
		return v.String()
	}
	return ""
}
