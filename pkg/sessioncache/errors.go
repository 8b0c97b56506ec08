package sessioncache

import (
	"errors"
	"fmt"
	"time"

	"github.com/aws/smithy-go"
)

// Sentinel errors let callers (the proxy) choose an HTTP answer with
// errors.Is instead of matching text. Every error from Get except a
// caller's own context error wraps exactly one of them.
var (
	// ErrAccessDenied: STS refused to let the gateway assume the role for
	// this session (AccessDenied, or RegionDisabledException when STS is not
	// activated in the Region).
	ErrAccessDenied = errors.New("sts denied access")
	// ErrInvalidSession: the session spec is not acceptable, either by a
	// local check or by STS (ValidationError, MalformedPolicyDocument,
	// PackedPolicyTooLarge). Retrying the same spec will not help.
	ErrInvalidSession = errors.New("invalid session")
	// ErrThrottled: STS throttled the call, and the cache's retry, or did
	// so moments ago for this session (the failure back-off). RetryAfter
	// gives the hint.
	ErrThrottled = errors.New("sts throttled")
	// ErrUnavailable: no usable answer from STS (timeout, network error,
	// 5xx, an incomplete response, or any error not classified above),
	// now or moments ago for this session, or STS was not called because
	// it is failing for many sessions (the breaker). RetryAfter gives the
	// hint.
	ErrUnavailable = errors.New("sts unavailable")
)

// RetryAfter returns how long a caller refused with err should wait
// before trying again, if err carries a hint (an *OverloadedError, or an
// ErrThrottled / ErrUnavailable failure remembered for a back-off), and
// false otherwise. The proxy sends it as Retry-After.
func RetryAfter(err error) (time.Duration, bool) {
	var h interface{ RetryAfterHint() time.Duration }
	if errors.As(err, &h) {
		if d := h.RetryAfterHint(); d > 0 {
			return d, true
		}
	}
	return 0, false
}

// retryError is an ErrThrottled or ErrUnavailable failure from Get with a
// hint of when STS may be called again for the session: the rest of its
// failure back-off, or the breaker's next probe. errors.Is still finds the
// sentinel through Unwrap.
type retryError struct {
	err   error
	after time.Duration // whole seconds, at least one
}

// withRetryAfter wraps err with a hint of d, rounded up to whole seconds
// (Retry-After's unit, RFC 9110 section 10.2.3) and at least 1s, so that a
// client that waits the hint never comes back early.
func withRetryAfter(err error, d time.Duration) error {
	return &retryError{err: err, after: max(time.Second, (d + time.Second - 1).Truncate(time.Second))}
}

func (e *retryError) Error() string { return fmt.Sprintf("%v; retry after %v", e.err, e.after) }

func (e *retryError) Unwrap() error { return e.err }

// RetryAfterHint is for RetryAfter.
func (e *retryError) RetryAfterHint() time.Duration { return e.after }

// Bounded values of the outcome label of sts_assume_role_total.
const (
	outcomeSuccess      = "success"
	outcomeAccessDenied = "access_denied"
	outcomeInvalid      = "invalid"
	outcomeThrottled    = "throttled"
	outcomeError        = "error"
)

var outcomes = []string{outcomeSuccess, outcomeAccessDenied, outcomeInvalid, outcomeThrottled, outcomeError}

// classify maps an AssumeRole error to a sentinel and metric outcome using
// the STS error code (STS API reference, "Errors"); anything without a known
// code, including timeouts and transport errors, is ErrUnavailable.
func classify(err error) (sentinel error, outcome string) {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return ErrUnavailable, outcomeError
	}
	switch ae.ErrorCode() {
	case "AccessDenied", "RegionDisabledException":
		return ErrAccessDenied, outcomeAccessDenied
	case "ValidationError", "MalformedPolicyDocument", "PackedPolicyTooLarge":
		return ErrInvalidSession, outcomeInvalid
	case "Throttling", "ThrottlingException": // both in aws-sdk-go-v2's retry.DefaultThrottleErrorCodes
		return ErrThrottled, outcomeThrottled
	default:
		return ErrUnavailable, outcomeError
	}
}
