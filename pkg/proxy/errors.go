package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/budget"
	"github.com/bedrock-gateway/gateway/pkg/policy"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// Error is an answer the gateway gives itself, in the shape Bedrock uses so
// that SDKs raise their typed exceptions: the status, an x-amzn-ErrorType
// header naming the exception, and a JSON body {"message": ...}.
//
// Msg is what the client sees; Err is the cause, for logs only. Neither ever
// carries a secret, and Msg never carries ARNs, account IDs or upstream
// error text.
type Error struct {
	Status int
	Type   string // Bedrock exception name, e.g. "ValidationException"
	Msg    string
	Err    error
	// RetryAfter, if set, is sent as Retry-After (whole seconds, at least
	// one), which Claude Code and the Anthropic SDKs honour.
	RetryAfter time.Duration
	// param names the request parameter at fault, for OpenAI-shaped
	// answers ("" if none).
	param string
	// openAICode, if set, is the type and code of OpenAI-shaped answers
	// in place of those the status implies.
	openAICode string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s (%d): %s: %v", e.Type, e.Status, e.Msg, e.Err)
	}
	return fmt.Sprintf("%s (%d): %s", e.Type, e.Status, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Bedrock exception names used by the gateway's own answers (Bedrock Runtime
// service model, aws-wire-facts §7).
const (
	typeValidation    = "ValidationException"
	typeAccessDenied  = "AccessDeniedException"
	typeNotFound      = "ResourceNotFoundException"
	typeUnknownOp     = "UnknownOperationException"
	typeThrottling    = "ThrottlingException"
	typeUnavailable   = "ServiceUnavailableException"
	typeInternal      = "InternalServerException"
	typeModelTimeout  = "ModelTimeoutException"
	typeRequestTooBig = "ValidationException"
	// typeRequestTimeout answers a request body that did not arrive in
	// time (408). Bedrock has no exception for it; this is the code AWS
	// SDKs (Go v2, botocore, JavaScript v3) treat as a transient error and
	// retry, which suits a body that was slow rather than malformed.
	typeRequestTimeout = "RequestTimeoutException"
)

// defaultRetryAfter is the Retry-After of a 503 whose cause carries no
// hint of its own. Every 503 the gateway gives has one, so that SDKs and
// Claude Code wait before retrying instead of hammering a dependency that
// is down.
const defaultRetryAfter = 2 * time.Second

// retryAfter is the wait err suggests (sessioncache.RetryAfter: an STS
// back-off or the admission budget), else defaultRetryAfter.
func retryAfter(err error) time.Duration {
	if d, ok := sessioncache.RetryAfter(err); ok {
		return d
	}
	return defaultRetryAfter
}

// statusClientClosed is the de-facto status (nginx) for a client that went
// away before the answer; it is logged, the client never sees it.
const statusClientClosed = 499

// fail answers with e and remembers it for the epilogue. A client that has
// gone away gets nothing: there is no one to answer.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, e *Error) {
	sw, _ := w.(*statusWriter)
	if sw != nil {
		sw.err = e
	}
	if e.Status == statusClientClosed {
		if sw != nil {
			sw.status = statusClientClosed
		}
		return
	}
	id := ""
	st := stateFrom(r.Context())
	if st != nil {
		id = st.id
	}
	// Refused before its body was read: the connection is closed after
	// the answer, and net/http's drain of the unread body (up to 256 KiB,
	// after the handler returns, even on a closing connection) gets
	// unreadBodyGrace instead of waiting for bytes a client may never
	// send. HTTP/1 only: on HTTP/2 an unread body ends with its stream,
	// and Connection: close would make net/http send GOAWAY to every
	// other stream of the connection.
	if r.ProtoMajor == 1 && (st == nil || !st.bodyRead) && r.Body != nil && r.Body != http.NoBody {
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(unreadBodyGrace))
	}
	if st != nil && st.dialect == dialectOpenAI {
		writeOpenAIError(w, id, e)
		return
	}
	writeError(w, id, e)
}

// unreadBodyGrace is how long net/http may go on reading the body of a
// request refused before it was read, so that a client still sending gets
// a clean close (FIN), not a reset that could destroy the answer in its
// receive buffer; net/http itself waits 500ms before closing for the
// same reason (rstAvoidanceDelay).
const unreadBodyGrace = 500 * time.Millisecond

// writeError sends e to the client. The request ID is echoed in the header
// SDKs read it from (x-amzn-RequestId), so a user can quote it to an operator.
func writeError(w http.ResponseWriter, requestID string, e *Error) {
	h := w.Header()
	h.Set("X-Amzn-ErrorType", e.Type)
	if requestID != "" {
		h.Set("X-Amzn-RequestId", requestID)
	}
	setErrorHeaders(h, e)
	w.WriteHeader(e.Status)
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{e.Msg})
	_, _ = w.Write(body)
}

// setErrorHeaders sets what every answer of the gateway's own carries,
// in either API's shape: the JSON content type, Retry-After when there is
// a wait to suggest (every 503 says when to come back) and, for 401, the
// scheme to authenticate with.
func setErrorHeaders(h http.Header, e *Error) {
	h.Set("Content-Type", "application/json")
	retry := e.RetryAfter
	if retry <= 0 && e.Status == http.StatusServiceUnavailable {
		retry = defaultRetryAfter
	}
	if retry > 0 {
		h.Set("Retry-After", strconv.Itoa(int(max(1, math.Ceil(retry.Seconds())))))
	}
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="bedrock-gateway"`)
	}
}

func errValidation(msg string, cause error) *Error {
	return &Error{Status: http.StatusBadRequest, Type: typeValidation, Msg: msg, Err: cause}
}

// Answers for requests the gateway does not forward at all.

func errUnknownOperation() *Error {
	return &Error{Status: http.StatusNotFound, Type: typeUnknownOp, Msg: "unknown operation: this gateway serves the Bedrock Runtime API"}
}

func errMethodNotAllowed() *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Type: typeValidation, Msg: "method not allowed for this operation"}
}

func errControlPlane() *Error {
	return &Error{Status: http.StatusNotFound, Type: typeNotFound,
		Msg: "inference profiles are a Bedrock control-plane API; this gateway serves Bedrock Runtime only"}
}

func errBidirectionalUnsupported() *Error {
	return &Error{Status: http.StatusNotImplemented, Type: typeValidation,
		Msg: "InvokeModelWithBidirectionalStream is not supported by this gateway yet"}
}

// authError maps an authentication failure to the client's answer. The
// cause, which may say why a credential was refused, goes to the log.
func authError(err error) *Error {
	switch {
	case errors.Is(err, auth.ErrBadRequest):
		return &Error{Status: http.StatusBadRequest, Type: typeValidation,
			Msg: "the request's credentials or identity headers are malformed or ambiguous: send exactly one credential, and identity headers only with a platform key", Err: err}
	case errors.Is(err, auth.ErrForbidden):
		return &Error{Status: http.StatusForbidden, Type: typeAccessDenied, Msg: "your key may not act for this tenant or user", Err: err}
	case errors.Is(err, auth.ErrNoCredentials):
		return &Error{Status: http.StatusUnauthorized, Type: typeAccessDenied,
			Msg: "missing credentials: send your gateway API key as \"Authorization: Bearer <key>\" (AWS_BEARER_TOKEN_BEDROCK) or \"x-api-key\", or an identity-provider token as a bearer token", Err: err}
	case errors.Is(err, auth.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, RetryAfter: defaultRetryAfter,
			Msg: "the identity provider that issued your token could not be reached to check it (the token was not refused); retry shortly", Err: err}
	default:
		return &Error{Status: http.StatusUnauthorized, Type: typeAccessDenied, Msg: "the credentials are not valid", Err: err}
	}
}

// bodyError maps a failure to read the request body.
func bodyError(err error, limit int64) *Error {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return errTooLarge(limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Status: http.StatusRequestTimeout, Type: typeRequestTimeout,
			Msg: "the request body did not arrive in time", Err: err}
	}
	return errValidation("could not read the request body", err)
}

// errTooLarge answers a body over MaxBodyBytes, declared or read.
func errTooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Type: typeRequestTooBig,
		Msg: fmt.Sprintf("request body is larger than %d bytes", limit)}
}

// resolveError maps a failure to turn an identity into a session.
func resolveError(err error) *Error {
	if errors.Is(err, tenancy.ErrInexpressible) {
		return &Error{Status: http.StatusForbidden, Type: typeAccessDenied,
			Msg: "your identity cannot be expressed as an AWS session (session name or tags): ask the gateway operator", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Type: typeInternal, Msg: "the gateway could not map your identity to an AWS session", Err: err}
}

// policyError maps a Policy refusal to the client's answer.
func policyError(err error) *Error {
	var te *policy.ThrottledError
	switch {
	case errors.As(err, &te):
		return &Error{Status: http.StatusTooManyRequests, Type: typeThrottling,
			Msg: "rate or token limit reached for your " + te.Scope + "; retry later", RetryAfter: te.RetryAfter, Err: err}
	case errors.Is(err, policy.ErrModelNotAllowed):
		return &Error{Status: http.StatusForbidden, Type: typeAccessDenied, Msg: "your team or tenant is not allowed to use this model", Err: err}
	default:
		return &Error{Status: http.StatusInternalServerError, Type: typeInternal, Msg: "internal error while checking limits", Err: err}
	}
}

// budgetError answers a request refused because a hard spend budget is
// spent: 429 with the budget, its limit and its reset in the message, and
// Retry-After until the reset. OpenAI's shape calls it insufficient_quota,
// as OpenAI does for a spent quota.
func budgetError(err error) *Error {
	var be *budget.ExceededError
	if !errors.As(err, &be) {
		return &Error{Status: http.StatusInternalServerError, Type: typeInternal, Msg: "internal error while checking budgets", Err: err}
	}
	return &Error{Status: http.StatusTooManyRequests, Type: typeThrottling, Msg: be.Error(), RetryAfter: be.RetryAfter,
		Err: err, openAICode: "insufficient_quota"}
}

// credentialError maps a session-cache failure to the client's answer. The
// cause (which may name ARNs) goes to the log only.
func credentialError(ctx context.Context, err error) *Error {
	switch {
	case ctx.Err() != nil:
		return &Error{Status: statusClientClosed, Type: typeValidation, Msg: "client closed the request", Err: err}
	case errors.Is(err, sessioncache.ErrAccessDenied):
		return &Error{Status: http.StatusForbidden, Type: typeAccessDenied, Msg: "the gateway is not allowed to create an AWS session for you: ask the gateway operator", Err: err}
	case errors.Is(err, sessioncache.ErrInvalidSession):
		return &Error{Status: http.StatusInternalServerError, Type: typeInternal, Msg: "AWS refused the session the gateway built for you: ask the gateway operator", Err: err}
	case errors.Is(err, sessioncache.ErrOverloaded):
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, RetryAfter: retryAfter(err),
			Msg: "the gateway is creating AWS sessions for many users at once; retry shortly", Err: err}
	case errors.Is(err, sessioncache.ErrThrottled), errors.Is(err, sessioncache.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, RetryAfter: retryAfter(err),
			Msg: "the gateway could not obtain AWS credentials for you right now; retry later", Err: err}
	default:
		return &Error{Status: http.StatusInternalServerError, Type: typeInternal, Msg: "internal error while obtaining AWS credentials", Err: err}
	}
}

// upstreamError maps a failed upstream exchange, one that ended before
// Bedrock's response arrived. It never echoes the transport error's text.
func upstreamError(ctx context.Context, err error) *Error {
	switch {
	case ctx.Err() != nil:
		return &Error{Status: statusClientClosed, Type: typeValidation, Msg: "client closed the request", Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusGatewayTimeout, Type: typeUnavailable, Msg: "Bedrock did not answer in time", Err: err}
	default:
		return &Error{Status: http.StatusBadGateway, Type: typeUnavailable, Msg: "the gateway could not reach Bedrock", Err: err}
	}
}
