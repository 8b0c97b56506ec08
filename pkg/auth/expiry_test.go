package auth

import (
	"testing"
	"time"
)

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		never   bool
		want    *time.Time
		wantErr bool
	}{
		{"", false, nil, false},
		{"never", true, nil, false},
		{"never", false, nil, true},
		{"90d", false, new(now.Add(90 * 24 * time.Hour)), false},
		{"1h30m", false, new(now.Add(90 * time.Minute)), false},
		{"2026-03-02T00:00:00+01:00", false, new(time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)), false},
		{"0s", false, nil, true},
		{"-1h", false, nil, true},
		{"2026-03-01T00:00:00Z", false, nil, true}, // now is not in the future
		{"1.5d", false, nil, true},
		{"d", false, nil, true},
		{"999999d", false, nil, true},
	}
	for _, tt := range tests {
		got, err := ParseExpiry(tt.in, now, tt.never)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseExpiry(%q) error = %v, want error: %v", tt.in, err, tt.wantErr)
			continue
		}
		if (got == nil) != (tt.want == nil) || (got != nil && !got.Equal(*tt.want)) {
			t.Errorf("ParseExpiry(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
