package openai

// Errors in OpenAI's shape, so the OpenAI SDKs raise their typed errors.
//
// The SDKs read an error answer's body as {"error": {...}} and build their
// error from the inner object's message, type, param and code
// (openai-go internal/requestconfig: gjson "error" then apierror.Error;
// openai-node src/core/error.ts APIError.generate). The error class is
// chosen by HTTP status alone: 400 BadRequestError, 401
// AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 409
// ConflictError, 422 UnprocessableEntityError, 429 RateLimitError, >=500
// InternalServerError, anything else a plain APIError (openai-node
// APIError.generate; openai-python maps the same). The status also decides
// retries: 408, 409, 429 and >=500 are retried with backoff, others not
// (openai-go requestconfig.shouldRetry; openai-node and openai-python
// alike). So the status chosen for each Bedrock error below is chosen for
// the class and retry behaviour an SDK user should get; type is
// informational (no SDK branches on it) and code carries Bedrock's own
// error name, so two Bedrock errors that share a status can still be told
// apart.

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// OpenAI error types written by this package. OpenAI documents
// invalid_request_error, rate_limit_error, server_error and
// service_unavailable_error among its error types; permission_error,
// not_found_error and timeout_error name the remaining cases the same way.
// No authentication_error: the caller's key is the gateway's to check,
// and a credential Bedrock refuses is the gateway's own (see below).
const (
	errTypeInvalidRequest     = "invalid_request_error"
	errTypePermission         = "permission_error"
	errTypeNotFound           = "not_found_error"
	errTypeRateLimit          = "rate_limit_error"
	errTypeServer             = "server_error"
	errTypeServiceUnavailable = "service_unavailable_error"
	errTypeTimeout            = "timeout_error"
)

// maxBedrockErrorText is the longest Bedrock message passed through, in
// bytes. Bedrock's messages are short sentences; a longer one is cut so an
// error body stays small whatever the upstream sent.
const maxBedrockErrorText = 1024

// bedrockErrorMap says, for each Bedrock error name (x-amzn-ErrorType,
// sanitized; or a stream exception's :exception-type with its first letter
// upper-cased), what status and OpenAI type the caller gets. Bedrock's
// statuses are those of the Bedrock Runtime service model (botocore
// bedrock-runtime 2023-09-30, error httpStatusCode) and the Bedrock user
// guide's "Troubleshooting Amazon Bedrock API error codes".
//
//	Bedrock error                  Bedrock  OpenAI  type                       why
//	ValidationException              400     400    invalid_request_error      the request is wrong; not retried
//	AccessDeniedException            403     403    permission_error           the user's session may not call this model; not retried
//	ResourceNotFoundException        404     404    not_found_error            unknown model or profile; not retried
//	ThrottlingException              429     429    rate_limit_error           account quota hit; SDKs back off and retry
//	ServiceQuotaExceededException    400     429    rate_limit_error           "exceeds the service quota ... resubmit later": OpenAI answers quota exhaustion with 429 too
//	ModelNotReadyException           429     503    service_unavailable_error  model not ready to serve (AWS SDKs retry it); 503 is retried and does not claim the caller was rate-limited
//	ModelTimeoutException            408     504    timeout_error              the model took too long; a gateway timeout, retried
//	ModelErrorException              424     502    server_error               the model itself failed (originalStatusCode); a bad upstream, retried, where 424 would be neither
//	ModelStreamErrorException        424     502    server_error               as ModelErrorException, for streams
//	InternalServerException          500     500    server_error               retried
//	ServiceUnavailableException      503     503    service_unavailable_error  retried
//	IncompleteSignature,
//	InvalidSignatureException,
//	InvalidClientTokenId,
//	UnrecognizedClientException,
//	ExpiredTokenException            4xx     500    server_error               the gateway's own AWS credentials were refused: not the caller's key (401 would say so), and a retry may meet refreshed credentials
//
// Any other name falls back on Bedrock's status (see fallbackError).
var bedrockErrorMap = map[string]struct {
	status int
	typ    string
}{
	"ValidationException":           {http.StatusBadRequest, errTypeInvalidRequest},
	"AccessDeniedException":         {http.StatusForbidden, errTypePermission},
	"ResourceNotFoundException":     {http.StatusNotFound, errTypeNotFound},
	"ThrottlingException":           {http.StatusTooManyRequests, errTypeRateLimit},
	"ServiceQuotaExceededException": {http.StatusTooManyRequests, errTypeRateLimit},
	"ModelNotReadyException":        {http.StatusServiceUnavailable, errTypeServiceUnavailable},
	"ModelTimeoutException":         {http.StatusGatewayTimeout, errTypeTimeout},
	"ModelErrorException":           {http.StatusBadGateway, errTypeServer},
	"ModelStreamErrorException":     {http.StatusBadGateway, errTypeServer},
	"InternalServerException":       {http.StatusInternalServerError, errTypeServer},
	"ServiceUnavailableException":   {http.StatusServiceUnavailable, errTypeServiceUnavailable},
	"IncompleteSignature":           {http.StatusInternalServerError, errTypeServer},
	"InvalidSignatureException":     {http.StatusInternalServerError, errTypeServer},
	"InvalidClientTokenId":          {http.StatusInternalServerError, errTypeServer},
	"UnrecognizedClientException":   {http.StatusInternalServerError, errTypeServer},
	"ExpiredTokenException":         {http.StatusInternalServerError, errTypeServer},
}

// fallbackError maps a Bedrock status with an unknown error name: the
// status is kept where an SDK class exists for it (400, 401, 403, 404,
// 409, 422, 429, >=500; 401 here can only be the gateway's credentials,
// so it becomes 500 like the credential errors above), 408 becomes 504 as
// ModelTimeoutException does, other 4xx become 400, and a status that is
// not an error at all (a caller's mistake) becomes 502.
func fallbackError(status int) (int, string) {
	switch {
	case status == http.StatusBadRequest, status == http.StatusConflict, status == http.StatusUnprocessableEntity:
		return status, errTypeInvalidRequest
	case status == http.StatusUnauthorized:
		return http.StatusInternalServerError, errTypeServer
	case status == http.StatusForbidden:
		return status, errTypePermission
	case status == http.StatusNotFound:
		return status, errTypeNotFound
	case status == http.StatusRequestTimeout:
		return http.StatusGatewayTimeout, errTypeTimeout
	case status == http.StatusTooManyRequests:
		return status, errTypeRateLimit
	case status == http.StatusServiceUnavailable:
		return status, errTypeServiceUnavailable
	case status >= 500 && status <= 599:
		return status, errTypeServer
	case status >= 400 && status <= 499:
		return http.StatusBadRequest, errTypeInvalidRequest
	default:
		return http.StatusBadGateway, errTypeServer
	}
}

// classifyBedrockError gives the status and OpenAI type for a Bedrock
// error name and status.
func classifyBedrockError(name string, status int) (int, string) {
	if m, ok := bedrockErrorMap[name]; ok {
		return m.status, m.typ
	}
	return fallbackError(status)
}

// outError is OpenAI's error object. param and code are null when empty,
// as OpenAI sends them.
type outError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// ErrorBody writes an error in OpenAI's shape:
// {"error":{"message","type","param","code"}}, param and code null when
// empty. The SDKs raise their typed errors from this body (and, inside a
// stream, from a data event carrying it).
func ErrorBody(message, typ, param, code string) []byte {
	e := outError{Message: message, Type: typ}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return encodeOut(struct {
		Error outError `json:"error"`
	}{e})
}

// FromBedrockError maps a Bedrock error answer (HTTP status, the
// x-amzn-ErrorType name, sanitized or not, and the body, {"message":...})
// to the status and OpenAI error body an OpenAI SDK expects; see
// bedrockErrorMap for each mapping and why. Bedrock's message is passed
// through (it names the problem and carries no secret), cut to
// maxBedrockErrorText bytes; the error name goes in code. If errorType is
// empty the body's __type is used, as the AWS SDKs do.
func FromBedrockError(status int, errorType string, body []byte) (int, []byte) {
	var b struct {
		Message      string `json:"message"`
		MessageUpper string `json:"Message"`
		Type         string `json:"__type"`
	}
	_ = json.Unmarshal(body, &b) // a body that is not JSON just has no message
	name := bedrockErrorName(errorType)
	if name == "" {
		name = bedrockErrorName(b.Type)
	}
	msg := b.Message
	if msg == "" {
		msg = b.MessageUpper
	}
	outStatus, typ := classifyBedrockError(name, status)
	return outStatus, ErrorBody(bedrockErrorText(msg, name, status), typ, "", name)
}

// bedrockErrorName reduces an x-amzn-ErrorType or __type value to the
// error name: the text before the first ':' and after the first '#'
// ("ThrottlingException:http://internal.amazon.com/coral/..." and
// "com.amazon.bedrock#ThrottlingException" both give
// "ThrottlingException"), as aws-sdk-go-v2's restjson.SanitizeErrorCode
// does.
func bedrockErrorName(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// bedrockErrorText is the message an error body carries: Bedrock's, cut to
// maxBedrockErrorText bytes at a character boundary, or, when Bedrock gave
// none, one naming the error so the caller still learns something.
func bedrockErrorText(msg, name string, status int) string {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		switch {
		case name != "":
			return "Bedrock returned " + name + "."
		case status != 0:
			return "Bedrock returned HTTP " + strconv.Itoa(status) + "."
		default:
			return "Bedrock returned an error."
		}
	}
	if len(msg) <= maxBedrockErrorText {
		return msg
	}
	cut := maxBedrockErrorText
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}
