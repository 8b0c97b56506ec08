package cur

import (
	"math"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestQuantityFromFloat(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{27000, "27000"},
		{0.1, "0.1"}, // the decimal AWS meant, not 0.1000000000000000055511151231257827
		{0.0693, "0.0693"},
		{-1.25, "-1.25"},
		{1e-12, "0.000000000001"},
		{1.5e-12, "0.000000000002"},               // half to even: 1.5 → 2
		{2.5e-12, "0.000000000002"},               // half to even: 2.5 → 2
		{1.2345678901234567e-5, "0.000012345679"}, // rounded to 12 places
		{1e-13, "0"},
		{123456789012345, "123456789012345"},
	}
	for _, tt := range tests {
		q, err := quantityFromFloat(tt.in)
		if err != nil {
			t.Errorf("quantityFromFloat(%v) error %v", tt.in, err)
			continue
		}
		if got := q.String(); got != tt.want {
			t.Errorf("quantityFromFloat(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 1e300} {
		if q, err := quantityFromFloat(bad); err == nil {
			t.Errorf("quantityFromFloat(%v) = %s, want an error", bad, q)
		}
	}
}

func TestQuantityFromText(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"27000", "27000"},
		{"0.0693", "0.0693"},
		{"+1", "1"},
		{"-0.5", "-0.5"},
		{".5", "0.5"},
		{"3.075E-1", "0.3075"},
		{"1e3", "1000"},
		{"0.0000000000005", "0"}, // half to even
		{"0.0000000000015", "0.000000000002"},
		{"-0.0000000000015", "-0.000000000002"},
		{"1.00000000000049999", "1"},
	}
	for _, tt := range tests {
		q, err := quantityFromText(tt.in)
		if err != nil {
			t.Errorf("quantityFromText(%q) error %v", tt.in, err)
			continue
		}
		if got := q.String(); got != tt.want {
			t.Errorf("quantityFromText(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "-", ".", "5.", "1,000", "1e", "1e+", "0x10", "NaN", "Inf", " 1", "1/3", "1e401", "1e-999", strings.Repeat("9", 500)} {
		if q, err := quantityFromText(bad); err == nil {
			t.Errorf("quantityFromText(%q) = %s, want an error", bad, q)
		}
	}
}

func TestParseQuantity(t *testing.T) {
	for _, s := range []string{"0", "1200", "0.5", "-3.25", "0.000000000001"} {
		q, err := ParseQuantity(s)
		if err != nil {
			t.Errorf("ParseQuantity(%q) error %v", s, err)
			continue
		}
		if got := q.String(); got != s {
			t.Errorf("ParseQuantity(%q).String() = %s", s, got)
		}
	}
	for _, s := range []string{"1e3", "0.0000000000001", "abc", ""} {
		if q, err := ParseQuantity(s); err == nil {
			t.Errorf("ParseQuantity(%q) = %s, want an error", s, q)
		}
	}
}

func TestQuantityArithmetic(t *testing.T) {
	a, b := mustQuantity(t, "1.5"), QuantityOf(2)
	if got := a.Add(b).String(); got != "3.5" {
		t.Errorf("1.5+2 = %s", got)
	}
	if got := a.Sub(b).String(); got != "-0.5" {
		t.Errorf("1.5-2 = %s", got)
	}
	if got := a.Sub(b).Abs().String(); got != "0.5" {
		t.Errorf("|1.5-2| = %s", got)
	}
	if n, ok := b.Int64(); !ok || n != 2 {
		t.Errorf("Int64(2) = %d, %v", n, ok)
	}
	if _, ok := a.Int64(); ok {
		t.Errorf("Int64(1.5) ok, want false")
	}
	// Add must not change its operands, though big.Int copies share
	// storage.
	sum := a.Add(b)
	_ = sum.Add(QuantityOf(100))
	if a.String() != "1.5" || sum.String() != "3.5" {
		t.Errorf("after adding, a = %s, sum = %s; want 1.5, 3.5", a, sum)
	}
	if b, _ := a.MarshalJSON(); string(b) != "1.5" {
		t.Errorf("MarshalJSON(1.5) = %s", b)
	}
}

func TestIsBedrock(t *testing.T) {
	tests := []struct {
		code, name string
		want       bool
	}{
		{"AmazonBedrock", "", true},
		{"AmazonBedrock", "Amazon Bedrock", true},
		{"AmazonBedrockService", "", true},
		{"c8qmqjw2ttz0qyqdmqy4yl3ss", "Claude Opus 4.6 (Amazon Bedrock Edition)", true},
		{"", "Amazon Bedrock", true},
		{"AmazonS3", "Amazon Simple Storage Service", false},
		{"c8qmqjw2ttz0qyqdmqy4yl3ss", "Some Marketplace SaaS", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := IsBedrock(Line{ProductCode: tt.code, ProductName: tt.name}); got != tt.want {
			t.Errorf("IsBedrock(code %q, name %q) = %v, want %v", tt.code, tt.name, got, tt.want)
		}
	}
}
