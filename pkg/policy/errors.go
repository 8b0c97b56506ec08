package policy

import (
	"errors"
	"fmt"
	"time"
)

// ErrModelNotAllowed: the caller's team or tenant may not use the model.
var ErrModelNotAllowed = errors.New("model not allowed for this caller")

// ThrottledError: a request or token limit refused the request.
type ThrottledError struct {
	// Scope says which limit: "identity", "tenant" or "identity or tenant".
	Scope string
	// RetryAfter is when the limit would admit the request.
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%s limit reached; retry after %v", e.Scope, e.RetryAfter)
}
