package usage

import (
	"github.com/bedrock-gateway/gateway/pkg/pricing"

	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// FuzzAppendRecord: appendRecord writes what json.Marshal writes, for any
// record, and fails where it fails.
func FuzzAppendRecord(f *testing.F) {
	f.Add(int64(1764097200), int64(123456789), "r1", "up-1", "alice@acme.org", "data-science", "<t&x>", "", "api-key", "alice", "arn:aws:iam::1:role/R",
		"Converse", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", 200, "", int64(12), int64(34), int64(5), int64(6), 1234.568, 250.0, false, "us-east-1", true, int64(123456789012))
	f.Add(int64(0), int64(0), "", "", "ünïcödé \u2028", "\x00\x1f\"\\", "\xff", "cc", "", "", "", "", "", 499, "UpstreamStreamCut", int64(-1), int64(0), int64(0), int64(0), 1e-7, 0.0, true, "", false, int64(0))
	f.Add(int64(-62135596800), int64(1), "x", "", "", "", "", "", "", "", "", "op", "", 0, "", int64(math.MaxInt64), int64(math.MinInt64), int64(0), int64(0), 1e21, 5e-324, false, "eu-west-1", true, int64(math.MinInt64))
	f.Add(int64(253402300800), int64(0), "x", "", "", "", "", "", "", "", "", "op", "", 0, "", int64(0), int64(0), int64(0), int64(0), math.NaN(), 0.0, false, "", true, int64(1))
	f.Fuzz(func(t *testing.T, sec, nsec int64, requestID, upstreamID, user, team, tenant, costCenter, authMethod, session, role,
		op, model string, status int, errType string, in, out, cacheRead, cacheWrite int64, latency, ttfb float64, gone bool, region string, priced bool, cost int64) {
		r := Record{
			Time: time.Unix(sec, nsec%1e9).UTC(), RequestID: requestID, UpstreamRequestID: upstreamID, User: user, Team: team,
			Tenant: tenant, CostCenter: costCenter, AuthMethod: authMethod, SessionName: session, RoleARN: role,
			Operation: op, Model: model, Status: status, ErrorType: errType,
			Tokens:    Tokens{Input: in, Output: out, CacheRead: cacheRead, CacheWrite: cacheWrite},
			LatencyMS: latency, TTFBMS: ttfb, ClientGone: gone, Region: region,
		}
		if priced {
			c := pricing.Money(cost)
			r.Cost = &c
		}
		want, werr := json.Marshal(r)
		got, gerr := appendRecord(nil, &r)
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("json.Marshal error %v, appendRecord error %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("appendRecord = %s\njson.Marshal = %s", got, want)
		}
	})
}

// BenchmarkEncodeRecord compares appendRecord with json.Marshal on a
// typical record, side by side.
func BenchmarkEncodeRecord(b *testing.B) {
	r := sample("0123456789abcdef0123456789abcdef")
	r.LatencyMS, r.TTFBMS = 1234.568, 250
	b.Run("appendRecord", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf, _ = appendRecord(buf[:0], &r)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(r)
		}
	})
}
