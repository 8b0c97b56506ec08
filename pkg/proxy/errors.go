package proxy

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
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
)

func errValidation(msg string, cause error) *Error {
	return &Error{Status: http.StatusBadRequest, Type: typeValidation, Msg: msg, Err: cause}
}

// writeError sends e to the client. The request ID is echoed in the header
// SDKs read it from (x-amzn-RequestId), so a user can quote it to an operator.
func writeError(w http.ResponseWriter, requestID string, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", e.Type)
	if requestID != "" {
		h.Set("X-Amzn-RequestId", requestID)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(max(1, math.Ceil(e.RetryAfter.Seconds())))))
	}
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="bedrock-gateway"`)
	}
	w.WriteHeader(e.Status)
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{e.Msg})
	_, _ = w.Write(body)
}
