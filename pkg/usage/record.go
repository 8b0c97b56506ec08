// Package usage meters what each request through the gateway consumed and
// writes it down: one Record per request, to an append-only JSON Lines
// ledger and to Prometheus counters, so operators see spend per user, team
// and tenant now rather than when the CUR arrives a day or two later.
package usage

import (
	"time"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// Tokens are the token counts Bedrock reported for one request.
type Tokens struct {
	Input      int64 `json:"input_tokens"`
	Output     int64 `json:"output_tokens"`
	CacheRead  int64 `json:"cache_read_input_tokens"`
	CacheWrite int64 `json:"cache_write_input_tokens"`
}

// Add returns t plus u.
func (t Tokens) Add(u Tokens) Tokens {
	return Tokens{t.Input + u.Input, t.Output + u.Output, t.CacheRead + u.CacheRead, t.CacheWrite + u.CacheWrite}
}

// ErrorUpstreamStreamCut is the ErrorType of a request whose event stream
// Bedrock ended before finishing it, after HTTP 200: the connection was
// closed or reset, or the body ended inside a frame. Its tokens are those
// metered before the cut; Bedrock bills at least those.
const ErrorUpstreamStreamCut = "UpstreamStreamCut"

// Record is what one request through the gateway consumed. Every request
// that reaches the proxy's routes produces exactly one, refused or not.
type Record struct {
	Time              time.Time `json:"time"` // when the request arrived
	RequestID         string    `json:"request_id"`
	UpstreamRequestID string    `json:"upstream_request_id,omitempty"`

	User       string `json:"user,omitempty"`
	Team       string `json:"team,omitempty"`
	Tenant     string `json:"tenant,omitempty"`
	CostCenter string `json:"cost_center,omitempty"`
	// AuthMethod is how the caller was identified ("api-key", ...).
	AuthMethod  string `json:"auth_method,omitempty"`
	SessionName string `json:"session_name,omitempty"`
	RoleARN     string `json:"role_arn,omitempty"`

	Operation string `json:"operation"`
	Model     string `json:"model,omitempty"`
	// Region is the AWS Region the request was sent to, which with Model
	// decides its price and the usage type the bill names it by.
	Region string `json:"region,omitempty"`
	Status int    `json:"status"`
	// ErrorType is the Bedrock exception name of an error answer, or of an
	// exception frame that ended a stream after HTTP 200.
	ErrorType string `json:"error_type,omitempty"`

	Tokens
	// Cost is what Bedrock charges for Tokens at the catalogue's on-demand
	// price, exactly; nil (null) when the model has no price, so an
	// unknown price is never shown as $0. A request that consumed no
	// tokens costs 0 whatever its model.
	Cost *pricing.Money `json:"cost_usd"`

	Latency         time.Duration `json:"-"`
	TimeToFirstByte time.Duration `json:"-"`
	LatencyMS       float64       `json:"latency_ms"`
	TTFBMS          float64       `json:"ttfb_ms,omitempty"`
	// ClientGone is true when the client went away before the answer was
	// complete.
	ClientGone bool `json:"client_gone,omitempty"`
}

// Billed reports whether Bedrock bills the tokens a record of operation
// carries: every operation but CountTokens, whose tokens are an estimate
// of what a call would use.
func Billed(operation string) bool { return operation != "CountTokens" }
