package usage

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/bedrock-gateway/gateway/internal/jsonscan"
)

var errUnencodable = errors.New("usage: record cannot be encoded")

// appendRecord appends r as one JSON object, byte for byte what
// json.Marshal(r) writes, without its reflection: the ledger encodes a
// record for every request. FuzzAppendRecord holds it to json.Marshal. It
// fails where json.Marshal does: a Time outside years 0-9999, a NaN or
// infinite LatencyMS or TTFBMS.
func appendRecord(dst []byte, r *Record) ([]byte, error) {
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return dst, errUnencodable
	}
	str := func(key, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		dst = append(dst, ',', '"')
		dst = append(dst, key...)
		dst = append(dst, '"', ':')
		dst = jsonscan.AppendString(dst, v)
	}
	num := func(key string, v int64) {
		dst = append(dst, ',', '"')
		dst = append(dst, key...)
		dst = append(dst, '"', ':')
		dst = strconv.AppendInt(dst, v, 10)
	}
	dst = append(dst, `{"time":"`...)
	dst = r.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	str("request_id", r.RequestID, false)
	str("upstream_request_id", r.UpstreamRequestID, true)
	str("user", r.User, true)
	str("team", r.Team, true)
	str("tenant", r.Tenant, true)
	str("cost_center", r.CostCenter, true)
	str("auth_method", r.AuthMethod, true)
	str("session_name", r.SessionName, true)
	str("role_arn", r.RoleARN, true)
	str("operation", r.Operation, false)
	str("model", r.Model, true)
	str("region", r.Region, true)
	num("status", int64(r.Status))
	str("error_type", r.ErrorType, true)
	num("input_tokens", r.Input)
	num("output_tokens", r.Output)
	num("cache_read_input_tokens", r.CacheRead)
	num("cache_write_input_tokens", r.CacheWrite)
	if r.Cost == nil {
		dst = append(dst, `,"cost_usd":null`...)
	} else {
		dst = append(dst, `,"cost_usd":`...)
		dst = r.Cost.Append(dst)
	}
	var ok bool
	dst = append(dst, `,"latency_ms":`...)
	if dst, ok = appendFloat(dst, r.LatencyMS); !ok {
		return dst, errUnencodable
	}
	if r.TTFBMS != 0 {
		dst = append(dst, `,"ttfb_ms":`...)
		if dst, ok = appendFloat(dst, r.TTFBMS); !ok {
			return dst, errUnencodable
		}
	}
	if r.ClientGone {
		dst = append(dst, `,"client_gone":true`...)
	}
	return append(dst, '}'), nil
}

// appendFloat writes f as encoding/json writes a float64: the shortest
// decimal, in exponent form below 1e-6 and from 1e21, with a one-digit
// negative exponent ("1e-7", not "1e-07").
func appendFloat(dst []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, true
}
