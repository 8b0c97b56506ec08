package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/openai"
)

// The OpenAI-compatible API (issue 14): OpenAI-SDK apps point their base
// URL at the gateway (…/v1, or …/openai/v1 as for Bedrock Runtime) and are
// authenticated, resolved, admitted, billed and logged exactly like
// Bedrock API callers. Only the shapes differ: requests and answers are
// OpenAI's, and so are errors, so that the SDKs raise their typed errors.

// OpenAI operation names, for metrics, logs and the ledger.
const (
	opChatCompletions = "ChatCompletions"
	opListModels      = "ListModels"
)

// OpenAIConfig configures the OpenAI-compatible API.
type OpenAIConfig struct {
	// Aliases map a model name callers send to a Bedrock model ID
	// ("fast" → "amazon.nova-lite-v1:0"). Model allow-lists, the ledger
	// and metrics see the Bedrock model ID.
	Aliases map[string]string `yaml:"aliases"`
	// Native lists the Bedrock model IDs Bedrock serves through its own
	// Chat Completions API (POST /openai/v1/chat/completions), which
	// the gateway forwards as they are; an entry ending in '*' is a
	// prefix. Every other model goes through Converse. Default
	// DefaultNativeModels.
	Native []string `yaml:"native"`
	// Models are the model names GET /v1/models offers a caller (those
	// its allow-lists permit), besides every alias.
	Models []string `yaml:"models"`
}

// DefaultNativeModels are the models Bedrock serves natively on its Chat
// Completions endpoint: OpenAI's open-weight models (AWS guide "Invoke a
// model with the OpenAI Chat Completions API"); Claude, Nova and Llama are
// not among them.
var DefaultNativeModels = []string{"openai.*"}

// Validate reports every problem in c at once, each naming its key
// within the openai block.
func (c OpenAIConfig) Validate() error { return errors.Join(c.problems()...) }

// problems reports what is wrong with c, each naming its key.
func (c OpenAIConfig) problems() []error {
	var errs []error
	for name, id := range c.Aliases {
		if name == "" || id == "" {
			errs = append(errs, fmt.Errorf("aliases: %q → %q: neither side may be empty", name, id))
		}
		if _, err := parseModelID(id); err != nil {
			errs = append(errs, fmt.Errorf("aliases.%s: %q is not a Bedrock model ID: %v", name, id, err))
		}
	}
	for _, n := range c.Native {
		if n == "" || n == "*" || strings.Count(n, "*") > 1 || (strings.Contains(n, "*") && !strings.HasSuffix(n, "*")) {
			errs = append(errs, fmt.Errorf("native: %q: want a model ID or a prefix ending in a single '*'", n))
		}
	}
	return errs
}

// resolveModel maps the model a caller named to the Bedrock model ID and
// whether Bedrock's own Chat Completions API serves it.
func (c OpenAIConfig) resolveModel(name string) (modelID string, native bool) {
	modelID = name
	if id, ok := c.Aliases[name]; ok {
		modelID = id
	}
	patterns := c.Native
	if patterns == nil {
		patterns = DefaultNativeModels
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(modelID, prefix) || p == modelID {
			return modelID, true
		}
	}
	return modelID, false
}

// dialect is the API shape a request speaks, for its errors.
type dialect uint8

const (
	dialectBedrock dialect = iota
	dialectOpenAI
)

// speakOpenAI marks requests on the OpenAI routes before anything can
// refuse them (authentication included), so every answer is OpenAI's.
func speakOpenAI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stateFrom(r.Context()).dialect = dialectOpenAI
		next.ServeHTTP(w, r)
	})
}

// openAIErrorCode gives OpenAI's error type and code for one of the
// gateway's own answers; the SDKs pick their typed error by status (400
// BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404
// NotFoundError, 429 RateLimitError, 5xx InternalServerError) and show
// type and code.
func openAIErrorCode(e *Error) (typ, code string) {
	switch {
	case e.openAICode != "":
		return e.openAICode, e.openAICode
	case e.Status == http.StatusUnauthorized:
		return "invalid_request_error", "invalid_api_key"
	case e.Status == http.StatusForbidden:
		return "permission_error", "permission_denied"
	case e.Status == http.StatusNotFound:
		return "invalid_request_error", "not_found"
	case e.Status == http.StatusTooManyRequests:
		return "rate_limit_error", "rate_limit_exceeded"
	case e.Status == http.StatusRequestEntityTooLarge:
		return "invalid_request_error", "request_too_large"
	case e.Status < 500:
		return "invalid_request_error", ""
	default:
		return "server_error", ""
	}
}

// writeOpenAIError sends e in OpenAI's shape,
// {"error":{"message","type","param","code"}}, with the same status,
// Retry-After and request ID header as the Bedrock shape.
func writeOpenAIError(w http.ResponseWriter, requestID string, e *Error) {
	h := w.Header()
	if requestID != "" {
		h.Set("X-Request-Id", requestID)
	}
	setErrorHeaders(h, e)
	typ, code := openAIErrorCode(e)
	w.WriteHeader(e.Status)
	_, _ = w.Write(openai.ErrorBody(e.Msg, typ, e.param, code))
}

// listModels answers GET /v1/models: the configured model names and
// aliases the caller's allow-lists permit, in OpenAI's list shape.
func (p *Proxy) listModels(w http.ResponseWriter, r *http.Request) {
	st := stateFrom(r.Context())
	st.op = opListModels
	allowed, _ := p.cfg.Policy.(interface {
		ModelAllowed(auth.Identity, string) bool
	})
	names := slices.Clone(p.cfg.OpenAI.Models)
	for alias := range p.cfg.OpenAI.Aliases {
		names = append(names, alias)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	data := make([]model, 0, len(names))
	for _, n := range names {
		id, _ := p.cfg.OpenAI.resolveModel(n)
		if allowed != nil && !allowed.ModelAllowed(*st.identity, id) {
			continue
		}
		data = append(data, model{ID: n, Object: "model", OwnedBy: "amazon-bedrock"})
	}
	body, _ := json.Marshal(struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", data})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}
