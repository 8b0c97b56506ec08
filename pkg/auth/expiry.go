package auth

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseExpiry reads a key expiry as `gateway keys` takes it: "" (no expiry), a duration from
// now, an RFC 3339 time, or, if allowNever, "never" (no expiry). A time
// not in the future is refused: it would create a dead key by mistake.
func ParseExpiry(s string, now time.Time, allowNever bool) (*time.Time, error) {
	switch {
	case s == "":
		return nil, nil
	case s == "never" && allowNever:
		return nil, nil
	}
	var at time.Time
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		at = t
	} else if d, err := ParseDuration(s); err == nil {
		at = now.Add(d)
	} else {
		return nil, fmt.Errorf("want a duration (720h, 90d) or an RFC 3339 time, got %q", s)
	}
	if !at.After(now) {
		return nil, fmt.Errorf("%s is not in the future", at.UTC().Format(time.RFC3339))
	}
	return &at, nil
}

// ParseDuration is time.ParseDuration plus a whole number of days ("90d").
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("bad number of days %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
