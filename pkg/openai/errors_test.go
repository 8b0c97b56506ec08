package openai_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bedrock-gateway/gateway/pkg/openai"
)

// sdkErrorBody mirrors what the SDKs read from an error answer: the
// "error" member (openai-go requestconfig: gjson "error"), decoded as
// openai-go's apierror.Error (code, message, param, type).
type sdkErrorBody struct {
	Error struct {
		Code    *string `json:"code"`
		Message string  `json:"message"`
		Param   *string `json:"param"`
		Type    string  `json:"type"`
	} `json:"error"`
}

func errtDecode(t *testing.T, body []byte) sdkErrorBody {
	t.Helper()
	var e sdkErrorBody
	respDecodeStrict(t, body, &e)
	return e
}

func TestErrorBody(t *testing.T) {
	tests := []struct {
		message, typ, param, code string
		want                      string
	}{
		{"Invalid value for 'messages'.", "invalid_request_error", "messages", "invalid_value",
			`{"error":{"message":"Invalid value for 'messages'.","type":"invalid_request_error","param":"messages","code":"invalid_value"}}`},
		{"Rate limited.", "rate_limit_error", "", "",
			`{"error":{"message":"Rate limited.","type":"rate_limit_error","param":null,"code":null}}`},
		{"quote \" backslash \\ newline \n <html> & \u2028", "server_error", "", "X",
			`{"error":{"message":"quote \" backslash \\ newline \n <html> & \u2028","type":"server_error","param":null,"code":"X"}}`},
		{"", "", "", "",
			`{"error":{"message":"","type":"","param":null,"code":null}}`},
	}
	for _, tt := range tests {
		got := openai.ErrorBody(tt.message, tt.typ, tt.param, tt.code)
		if d := respJSONDiff(t, got, tt.want); d != "" {
			t.Errorf("ErrorBody(%q, %q, %q, %q) (-want +got):\n%s\ngot: %s", tt.message, tt.typ, tt.param, tt.code, d, got)
		}
		errtDecode(t, got)
		if strings.Contains(string(got), "\n") {
			t.Errorf("raw newline in %s", got)
		}
	}
}

func TestFromBedrockError(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		errorType  string
		body       string
		wantStatus int
		wantType   string
		wantCode   string // "" for null
		wantMsg    string
	}{
		// Each documented Bedrock Runtime error, at Bedrock's status.
		{"validation", 400, "ValidationException", `{"message":"Malformed input request: #: extraneous key [foo] is not permitted, please reformat your input and try again."}`,
			400, "invalid_request_error", "ValidationException", "Malformed input request: #: extraneous key [foo] is not permitted, please reformat your input and try again."},
		{"access denied", 403, "AccessDeniedException", `{"message":"You don't have access to the model with the specified model ID."}`,
			403, "permission_error", "AccessDeniedException", "You don't have access to the model with the specified model ID."},
		{"not found", 404, "ResourceNotFoundException", `{"message":"Model not found."}`,
			404, "not_found_error", "ResourceNotFoundException", "Model not found."},
		{"throttling", 429, "ThrottlingException", `{"message":"Too many requests, please wait before trying again."}`,
			429, "rate_limit_error", "ThrottlingException", "Too many requests, please wait before trying again."},
		{"service quota", 400, "ServiceQuotaExceededException", `{"message":"Your request exceeds the service quota for your account."}`,
			429, "rate_limit_error", "ServiceQuotaExceededException", "Your request exceeds the service quota for your account."},
		{"model not ready", 429, "ModelNotReadyException", `{"message":"Model is not ready."}`,
			503, "service_unavailable_error", "ModelNotReadyException", "Model is not ready."},
		{"model timeout", 408, "ModelTimeoutException", `{"message":"Model has timed out in processing the request."}`,
			504, "timeout_error", "ModelTimeoutException", "Model has timed out in processing the request."},
		{"model error", 424, "ModelErrorException", `{"message":"Received server error (500) from model.","originalStatusCode":500,"resourceName":"arn:aws:sagemaker:x"}`,
			502, "server_error", "ModelErrorException", "Received server error (500) from model."},
		{"model stream error", 424, "ModelStreamErrorException", `{"message":"stream failed","originalStatusCode":500,"originalMessage":"boom"}`,
			502, "server_error", "ModelStreamErrorException", "stream failed"},
		{"internal", 500, "InternalServerException", `{"message":"Internal server error"}`,
			500, "server_error", "InternalServerException", "Internal server error"},
		{"unavailable", 503, "ServiceUnavailableException", `{"message":"Service unavailable"}`,
			503, "service_unavailable_error", "ServiceUnavailableException", "Service unavailable"},
		// The gateway's own credentials refused.
		{"expired token", 403, "ExpiredTokenException", `{"message":"The security token included in the request is expired"}`,
			500, "server_error", "ExpiredTokenException", "The security token included in the request is expired"},
		{"unrecognized client", 403, "UnrecognizedClientException", `{"message":"The security token included in the request is invalid."}`,
			500, "server_error", "UnrecognizedClientException", "The security token included in the request is invalid."},
		{"invalid signature", 403, "InvalidSignatureException", `{"message":"The request signature we calculated does not match."}`,
			500, "server_error", "InvalidSignatureException", "The request signature we calculated does not match."},
		{"incomplete signature", 400, "IncompleteSignature", `{"message":"x"}`, 500, "server_error", "IncompleteSignature", "x"},
		{"invalid client token", 403, "InvalidClientTokenId", `{"message":"x"}`, 500, "server_error", "InvalidClientTokenId", "x"},
		// The error name as it arrives.
		{"raw x-amzn-ErrorType", 429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", `{"message":"slow down"}`,
			429, "rate_limit_error", "ThrottlingException", "slow down"},
		{"namespaced __type in the body", 400, "", `{"__type":"com.amazon.bedrock#ValidationException","message":"bad"}`,
			400, "invalid_request_error", "ValidationException", "bad"},
		{"__type with a URL", 429, "", `{"__type":"ThrottlingException:http://internal.amazon.com/coral/","message":"m"}`,
			429, "rate_limit_error", "ThrottlingException", "m"},
		{"header wins over __type", 404, "ResourceNotFoundException", `{"__type":"ValidationException","message":"m"}`,
			404, "not_found_error", "ResourceNotFoundException", "m"},
		{"capitalized Message", 400, "ValidationException", `{"Message":"capital"}`,
			400, "invalid_request_error", "ValidationException", "capital"},
		// Unknown names fall back on the status.
		{"unknown 400", 400, "ConflictException", `{"message":"c"}`, 400, "invalid_request_error", "ConflictException", "c"},
		{"unknown 401", 401, "", `{"message":"unauthorized"}`, 500, "server_error", "", "unauthorized"},
		{"FTU form (404)", 404, "FTUFormNotFilled", `{"message":"fill the form"}`, 404, "not_found_error", "FTUFormNotFilled", "fill the form"},
		{"unknown 403", 403, "", `{"message":"m"}`, 403, "permission_error", "", "m"},
		{"unknown 408", 408, "", `{}`, 504, "timeout_error", "", "Bedrock returned HTTP 408."},
		{"unknown 409", 409, "", `{"message":"m"}`, 409, "invalid_request_error", "", "m"},
		{"unknown 413", 413, "", `{"message":"too big"}`, 400, "invalid_request_error", "", "too big"},
		{"unknown 422", 422, "", `{"message":"m"}`, 422, "invalid_request_error", "", "m"},
		{"unknown 429", 429, "", `{"message":"m"}`, 429, "rate_limit_error", "", "m"},
		{"unknown 502", 502, "", `<html>Bad Gateway</html>`, 502, "server_error", "", "Bedrock returned HTTP 502."},
		{"unknown 503", 503, "", ``, 503, "service_unavailable_error", "", "Bedrock returned HTTP 503."},
		{"unknown 504", 504, "", `{"message":"m"}`, 504, "server_error", "", "m"},
		{"not an error status", 200, "", `{"message":"m"}`, 502, "server_error", "", "m"},
		{"no status", 0, "", ``, 502, "server_error", "", "Bedrock returned an error."},
		// Messages.
		{"no message, known name", 429, "ThrottlingException", `{}`, 429, "rate_limit_error", "ThrottlingException", "Bedrock returned ThrottlingException."},
		{"blank message", 500, "InternalServerException", `{"message":"  "}`, 500, "server_error", "InternalServerException", "Bedrock returned InternalServerException."},
		{"message with JSON specials", 400, "ValidationException", `{"message":"bad \"x\"\n<y> & \\z"}`,
			400, "invalid_request_error", "ValidationException", "bad \"x\"\n<y> & \\z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := openai.FromBedrockError(tt.status, tt.errorType, []byte(tt.body))
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d", status, tt.wantStatus)
			}
			e := errtDecode(t, body)
			if e.Error.Type != tt.wantType {
				t.Errorf("type = %q, want %q", e.Error.Type, tt.wantType)
			}
			if e.Error.Param != nil {
				t.Errorf("param = %q, want null", *e.Error.Param)
			}
			switch {
			case tt.wantCode == "" && e.Error.Code != nil:
				t.Errorf("code = %q, want null", *e.Error.Code)
			case tt.wantCode != "" && (e.Error.Code == nil || *e.Error.Code != tt.wantCode):
				t.Errorf("code = %v, want %q", e.Error.Code, tt.wantCode)
			}
			if e.Error.Message != tt.wantMsg {
				t.Errorf("message = %q, want %q", e.Error.Message, tt.wantMsg)
			}
		})
	}
}

// A long message is cut to a bounded length at a character boundary.
func TestFromBedrockErrorTruncates(t *testing.T) {
	for _, unit := range []string{"a", "é", "日本", "🙂"} {
		long := strings.Repeat(unit, 5000)
		_, body := openai.FromBedrockError(400, "ValidationException", []byte(`{"message":"`+long+`"}`))
		e := errtDecode(t, body)
		msg := e.Error.Message
		if !utf8.ValidString(msg) {
			t.Errorf("%q: truncated message is not valid UTF-8", unit)
		}
		if len(msg) > 1024+len("…") || len(msg) < 1000 {
			t.Errorf("%q: message length %d", unit, len(msg))
		}
		if !strings.HasSuffix(msg, "…") || !strings.HasPrefix(long, strings.TrimSuffix(msg, "…")) {
			t.Errorf("%q: message is not a marked prefix: %q...", unit, msg[:20])
		}
	}
	// Exactly at the limit: kept whole.
	exact := strings.Repeat("b", 1024)
	_, body := openai.FromBedrockError(400, "ValidationException", []byte(`{"message":"`+exact+`"}`))
	if e := errtDecode(t, body); e.Error.Message != exact {
		t.Errorf("a 1024-byte message was changed (len %d)", len(e.Error.Message))
	}
}

// A stream exception gets the type and code FromBedrockError gives the
// same error answered over HTTP.
func TestExceptionMatchesFromBedrockError(t *testing.T) {
	for _, ex := range []string{"internalServerException", "modelStreamErrorException", "validationException",
		"throttlingException", "serviceUnavailableException", "modelTimeoutException", "somethingNewException"} {
		name := strings.ToUpper(ex[:1]) + ex[1:]
		_, httpBody := openai.FromBedrockError(500, name, []byte(`{"message":"m"}`))
		tr := openai.NewStreamTranslator("m", "id", 1, false)
		data := strmData(t, tr.Exception(nil, ex, []byte(`{"message":"m"}`)))
		if len(data) != 1 {
			t.Fatalf("%s: %d events", ex, len(data))
		}
		if d := respJSONDiff(t, []byte(data[0]), string(httpBody)); d != "" {
			t.Errorf("%s: stream error differs from the HTTP one (-http +stream):\n%s", ex, d)
		}
	}
}
