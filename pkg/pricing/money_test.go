package pricing

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
)

func TestParseMoney(t *testing.T) {
	tests := []struct {
		in   string
		want Money
		err  error
	}{
		{"3", 3 * Dollar, nil},
		{"0.0693", 69_300_000_000, nil},
		{"-1.25", -1_250_000_000_000, nil},
		{"0.000000000001", 1, nil},
		{"9223372.036854775807", math.MaxInt64, nil},
		{"9223372.036854775808", 0, errMoneyOverflow},
		{"99999999999999999999", 0, errMoneyOverflow},
		{"0.0000000000001", 0, errMoneyPrecise},
		{"", 0, errMoneySyntax},
		{"-", 0, errMoneySyntax},
		{".", 0, errMoneySyntax},
		{"1.", 0, errMoneySyntax},
		{"1e3", 0, errMoneySyntax},
		{"$3", 0, errMoneySyntax},
		{"1,000", 0, errMoneySyntax},
		{" 3", 0, errMoneySyntax},
		{"+3", 0, errMoneySyntax},
		{"1.2.3", 0, errMoneySyntax},
	}
	for _, tt := range tests {
		got, err := ParseMoney(tt.in)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("ParseMoney(%q) = %v, %v, want %v, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestMoneyString(t *testing.T) {
	tests := []struct {
		m    Money
		want string
	}{
		{0, "0"},
		{3 * Dollar, "3"},
		{69_300_000_000, "0.0693"},
		{-1, "-0.000000000001"},
		{math.MinInt64, "-9223372.036854775808"},
		{math.MaxInt64, "9223372.036854775807"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("Money(%d).String() = %q, want %q", int64(tt.m), got, tt.want)
		}
	}
}

func TestMoneyAddTimes(t *testing.T) {
	if _, ok := Money(math.MaxInt64).Add(1); ok {
		t.Error("MaxInt64+1 fits, want overflow")
	}
	if _, ok := Money(math.MinInt64).Add(-1); ok {
		t.Error("MinInt64-1 fits, want overflow")
	}
	if s, ok := Money(5).Add(-7); !ok || s != -2 {
		t.Errorf("5+-7 = %v, %v, want -2, true", s, ok)
	}
	if _, ok := Money(math.MinInt64).Times(-1); ok {
		t.Error("MinInt64×-1 fits, want overflow")
	}
	if _, ok := Money(-1).Times(math.MinInt64); ok {
		t.Error("-1×MinInt64 fits, want overflow")
	}
	if _, ok := Money(1 << 40).Times(1 << 30); ok {
		t.Error("2^40×2^30 fits, want overflow")
	}
	if p, ok := Money(3_000_000).Times(1234); !ok || p != 3_702_000_000 {
		t.Errorf("3e6×1234 = %v, %v, want 3702000000", p, ok)
	}
}

func TestMoneyJSON(t *testing.T) {
	var v struct{ M Money }
	v.M = 7
	if err := json.Unmarshal([]byte(`{"M":null}`), &v); err != nil || v.M != 7 {
		t.Errorf("Unmarshal(null) = %v, M = %v, want nil and M unchanged", err, v.M)
	}
	if err := json.Unmarshal([]byte(`{"M":0.0693}`), &v); err != nil || v.M != 69_300_000_000 {
		t.Errorf("Unmarshal(0.0693) = %v, M = %v", err, v.M)
	}
	if err := json.Unmarshal([]byte(`{"M":1e3}`), &v); err == nil {
		t.Error("Unmarshal(1e3) = nil, want an error (exponents are refused)")
	}
	b, _ := json.Marshal(struct{ M Money }{Money(1)})
	if string(b) != `{"M":0.000000000001}` {
		t.Errorf("Marshal = %s", b)
	}
}

func TestTotal(t *testing.T) {
	var tot Total
	for range 3 {
		tot.Add(math.MaxInt64)
	}
	if _, ok := tot.Money(); ok {
		t.Error("3×MaxInt64 fits Money, want false")
	}
	if got, want := tot.String(), "27670116.110564327421"; got != want {
		t.Errorf("Total.String() = %q, want %q", got, want)
	}
}

// FuzzParseMoney checks that whatever ParseMoney accepts, String writes
// back in a form ParseMoney reads as the same amount.
func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{"3", "0.0693", "-1.25", "0.000000000001", "9223372.036854775807",
		"-9223372.036854775807", "007", ".5", "-0", "1.", "1e3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMoney(s)
		if err != nil {
			return
		}
		back, err := ParseMoney(m.String())
		if err != nil || back != m {
			t.Fatalf("ParseMoney(%q) = %v; ParseMoney(%q) = %v, %v", s, int64(m), m.String(), int64(back), err)
		}
	})
}
