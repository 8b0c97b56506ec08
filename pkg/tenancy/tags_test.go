package tenancy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidateTagValue(t *testing.T) {
	tests := []struct {
		value string
		valid bool
	}{
		{"", true},
		{"ml", true},
		{"data science", true},
		{"a:b/c=d+e-f@g_h.i", true},
		{"Ünïcødé", true},
		{"研究", true},
		{"٣٤", true},       // Arabic-Indic digits are \p{N}
		{"a\u00a0b", true}, // no-break space is \p{Z}
		{strings.Repeat("v", 256), true},
		{strings.Repeat("é", 256), true}, // 256 code points, 512 bytes
		{strings.Repeat("v", 257), false},
		{strings.Repeat("é", 257), false},
		{"ml,ops", false},
		{"a;b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"50%", false},
		{"rock😀", false},
		{"\xff", false},
		{"aws:team", false},
		{"AWS:team", false},
		{"aws", true},
		{"my-aws:team", true},
	}
	for _, tt := range tests {
		err := validateTagValue(tt.value)
		if got := err == nil; got != tt.valid {
			t.Errorf("validateTagValue(%.40q) error = %v, want valid=%v", tt.value, err, tt.valid)
		}
	}
}

func TestValidateTagKey(t *testing.T) {
	tests := []struct {
		key   string
		valid bool
	}{
		{"team", true},
		{"cost-center", true},
		{"acme:cost/center", true},
		{"Team Name", true},
		{strings.Repeat("k", 128), true},
		{strings.Repeat("k", 129), false},
		{"", false},
		{"aws:team", false},
		{"Aws:Team", false},
		{"team,ops", false},
		{"team*", false},
	}
	for _, tt := range tests {
		err := validateTagKey(tt.key)
		if got := err == nil; got != tt.valid {
			t.Errorf("validateTagKey(%.40q) error = %v, want valid=%v", tt.key, err, tt.valid)
		}
	}
}

func TestValidateTags(t *testing.T) {
	many := make([]Tag, 51)
	for i := range many {
		many[i] = Tag{Key: fmt.Sprintf("k%02d", i), Value: "v"}
	}
	tests := []struct {
		name     string
		tags     []Tag
		wantErrs int
	}{
		{"none", nil, 0},
		{"fifty", many[:50], 0},
		{"fifty-one", many, 1},
		{"case-insensitive duplicate", []Tag{{"Team", "a"}, {"team", "b"}}, 1},
		{"bad key and bad value", []Tag{{"aws:x", "v"}, {"team", "a,b"}}, 2},
		{"one tag two problems", []Tag{{"", "a,b"}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateTags(tt.tags)
			if got := countJoined(err); got != tt.wantErrs {
				t.Fatalf("validateTags(%v) = %d problems (%v), want %d", tt.name, got, err, tt.wantErrs)
			}
			if err != nil && !errors.Is(err, ErrInexpressible) {
				t.Errorf("validateTags(%v) error = %v, want wrapping ErrInexpressible", tt.name, err)
			}
		})
	}
}

// countJoined returns how many errors an errors.Join in err holds: 0 for
// nil, 1 for an error without a join.
func countJoined(err error) int {
	if err == nil {
		return 0
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return len(j.Unwrap())
	}
	return 1
}
