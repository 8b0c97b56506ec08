package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
)

// Bedrock Runtime operation names, as in the service model.
const (
	opConverse          = "Converse"
	opConverseStream    = "ConverseStream"
	opInvoke            = "InvokeModel"
	opInvokeStream      = "InvokeModelWithResponseStream"
	opCountTokens       = "CountTokens"
	opBidirectional     = "InvokeModelWithBidirectionalStream"
	opApplyGuardrail    = "ApplyGuardrail"
	opStartAsyncInvoke  = "StartAsyncInvoke"
	opGetAsyncInvoke    = "GetAsyncInvoke"
	opListAsyncInvokes  = "ListAsyncInvokes"
	opInferenceProfiles = "InferenceProfiles" // control plane; refused
)

// target is where a vetted request goes upstream, built from parsed
// values only: nothing of the inbound path or query is copied.
type target struct {
	path  string // escaped path below the endpoint, e.g. /model/m%3A0/invoke
	query string // encoded query, rebuilt from parsed parameters
	model string // model ID for metering and logs ("" if none)
	body  bool   // whether the request body is forwarded
	// invocationARN is GetAsyncInvoke's invocation, whose owner is
	// checked before it goes upstream.
	invocationARN string
}

// route is one Bedrock Runtime operation the gateway forwards.
type route struct {
	op      string
	method  string
	pattern string
	target  func(r *http.Request, body []byte) (target, error)
	// stamp says where the caller's identity is written for Bedrock's
	// invocation logs.
	stamp stampKind
}

func modelRoute(op, suffix string, stamp stampKind) route {
	return route{op, http.MethodPost, "/model/{modelId}/" + suffix, func(r *http.Request, _ []byte) (target, error) {
		id, err := parseModelID(chi.URLParam(r, "modelId"))
		if err != nil {
			return target{}, fmt.Errorf("invalid model identifier: %w", err)
		}
		return target{path: "/model/" + escapeLabel(id) + "/" + suffix, model: id, body: true}, nil
	}, stamp}
}

// routes are the Bedrock Runtime HTTP bindings (service model, API version
// 2023-09-30) the gateway forwards.
var routes = []route{
	modelRoute(opConverse, "converse", stampConverseBody),
	modelRoute(opConverseStream, "converse-stream", stampConverseBody),
	modelRoute(opInvoke, "invoke", stampInvokeHeader),
	modelRoute(opInvokeStream, "invoke-with-response-stream", stampInvokeHeader),
	modelRoute(opCountTokens, "count-tokens", stampNone),
	{opApplyGuardrail, http.MethodPost, "/guardrail/{guardrailIdentifier}/version/{guardrailVersion}/apply", guardrailTarget, stampNone},
	{opStartAsyncInvoke, http.MethodPost, "/async-invoke", startAsyncTarget, stampNone},
	{opListAsyncInvokes, http.MethodGet, "/async-invoke", listAsyncTarget, stampNone},
	{opGetAsyncInvoke, http.MethodGet, "/async-invoke/{invocationArn}", getAsyncTarget, stampNone},
}

// Identifier syntax from the Bedrock Runtime service model.
var (
	// GuardrailIdentifier: an ID or a guardrail ARN, at most 2048.
	guardrailIDPattern = regexp.MustCompile(`^(?:[a-z0-9]+|arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+)$`)
	// GuardrailVersion: DRAFT or 1-99999999.
	guardrailVersionPattern = regexp.MustCompile(`^(?:[1-9][0-9]{0,7}|DRAFT)$`)
	// InvocationArn of an async invocation.
	asyncArnPattern = regexp.MustCompile(`^arn:[a-z0-9-]+:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:async-invoke/[a-z0-9]{1,64}$`)
	// StartAsyncInvoke's modelId: [a-zA-Z_\.\-/0-9:]+, at most 256.
	asyncModelPattern = regexp.MustCompile(`^[a-zA-Z_.\-/0-9:]{1,256}$`)
)

func pathLabel(r *http.Request, name string, pattern *regexp.Regexp, max int) (string, error) {
	v, err := url.PathUnescape(chi.URLParam(r, name))
	if err != nil {
		return "", fmt.Errorf("%s is not validly escaped", name)
	}
	if v == "" || len(v) > max || !pattern.MatchString(v) {
		return "", fmt.Errorf("%s is not valid", name)
	}
	return v, nil
}

func guardrailTarget(r *http.Request, _ []byte) (target, error) {
	id, err := pathLabel(r, "guardrailIdentifier", guardrailIDPattern, 2048)
	if err != nil {
		return target{}, err
	}
	version, err := pathLabel(r, "guardrailVersion", guardrailVersionPattern, 8)
	if err != nil {
		return target{}, err
	}
	return target{path: "/guardrail/" + escapeLabel(id) + "/version/" + escapeLabel(version) + "/apply", body: true}, nil
}

// startAsyncTarget reads the model from the body (StartAsyncInvoke carries
// modelId there, not in the path) so that it is metered and logged.
func startAsyncTarget(_ *http.Request, body []byte) (target, error) {
	var in struct {
		ModelID string `json:"modelId"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return target{}, errors.New("request body is not a JSON object")
	}
	if !asyncModelPattern.MatchString(in.ModelID) {
		return target{}, errors.New("modelId is missing or not valid")
	}
	return target{path: "/async-invoke", model: in.ModelID, body: true}, nil
}

func getAsyncTarget(r *http.Request, _ []byte) (target, error) {
	arn, err := pathLabel(r, "invocationArn", asyncArnPattern, 2048)
	if err != nil {
		return target{}, err
	}
	return target{path: "/async-invoke/" + escapeLabel(arn), invocationARN: arn}, nil
}

// listAsyncTarget rebuilds ListAsyncInvokes' query from its known,
// validated parameters; anything else is refused.
func listAsyncTarget(r *http.Request, _ []byte) (target, error) {
	in := r.URL.Query()
	out := url.Values{}
	for name, vals := range in {
		if len(vals) != 1 {
			return target{}, fmt.Errorf("query parameter %q must appear once", name)
		}
		v := vals[0]
		ok := false
		switch name {
		case "submitTimeAfter", "submitTimeBefore":
			_, err := time.Parse(time.RFC3339Nano, v)
			ok = err == nil
		case "statusEquals":
			ok = v == "InProgress" || v == "Completed" || v == "Failed"
		case "maxResults":
			n, err := strconv.Atoi(v)
			ok = err == nil && n >= 1 && n <= 1000
		case "nextToken":
			ok = len(v) >= 1 && len(v) <= 2048 && printableASCII(v)
		case "sortBy":
			ok = v == "SubmissionTime"
		case "sortOrder":
			ok = v == "Ascending" || v == "Descending"
		default:
			return target{}, fmt.Errorf("unknown query parameter %.64q", name)
		}
		if !ok {
			return target{}, fmt.Errorf("query parameter %q is not valid", name)
		}
		out.Set(name, v)
	}
	return target{path: "/async-invoke", query: out.Encode()}, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// newRouter serves the routes, behind authentication, under BasePath.
// What the gateway does not forward is answered by the gateway.
func (p *Proxy) newRouter() http.Handler {
	notFound := func(w http.ResponseWriter, r *http.Request) { p.fail(w, r, errUnknownOperation()) }
	methodNotAllowed := func(w http.ResponseWriter, r *http.Request) { p.fail(w, r, errMethodNotAllowed()) }
	api := chi.NewRouter()
	// Claude Code probes the control plane at startup without credentials
	// (its embedded AWS SDK does not send the gateway token there): a
	// clean 404 for everyone, which reveals nothing.
	inferenceProfiles := func(w http.ResponseWriter, r *http.Request) {
		stateFrom(r.Context()).op = opInferenceProfiles
		p.fail(w, r, errControlPlane())
	}
	api.HandleFunc("/inference-profiles", inferenceProfiles)
	api.HandleFunc("/inference-profiles/*", inferenceProfiles)
	api.Group(func(api chi.Router) {
		api.Use(p.authenticate)
		for _, rt := range routes {
			api.Method(rt.method, rt.pattern, p.handle(rt))
		}
		api.Post("/model/{modelId}/invoke-with-bidirectional-stream", func(w http.ResponseWriter, r *http.Request) {
			stateFrom(r.Context()).op = opBidirectional
			p.fail(w, r, errBidirectionalUnsupported())
		})
		api.Get("/gateway/whoami", p.whoami)
	})
	// The OpenAI-compatible API, at /v1 and, as on Bedrock Runtime, at
	// /openai/v1.
	for _, prefix := range []string{"/v1", "/openai/v1"} {
		api.Group(func(api chi.Router) {
			api.Use(speakOpenAI, p.authenticate)
			api.Get(prefix+"/models", p.listModels)
			api.Post(prefix+"/chat/completions", p.chatCompletions)
			api.Post(prefix+"/embeddings", p.embeddings)
			api.HandleFunc(prefix+"/*", func(w http.ResponseWriter, r *http.Request) {
				p.fail(w, r, &Error{Status: http.StatusNotFound, Type: typeUnknownOp,
					Msg: "unknown operation: this gateway serves chat completions, embeddings and models of the OpenAI API"})
			})
		})
	}
	api.NotFound(notFound)
	api.MethodNotAllowed(methodNotAllowed)
	if p.cfg.BasePath == "" {
		return api
	}
	root := chi.NewRouter()
	root.NotFound(notFound)
	root.MethodNotAllowed(methodNotAllowed)
	root.Mount(p.cfg.BasePath, api)
	return root
}
