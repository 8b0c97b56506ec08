package tenancy

import (
	"regexp"
	"testing"
)

// tagCharsRegexp is the STS tag character class as documented.
var tagCharsRegexp = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

func TestTagCharsMatchRegexp(t *testing.T) {
	for _, s := range []string{"", "data-science", "team a/b=c+d@e.f:g_h", "Ünïcödé 東京 ٣", "\u00a0nbsp\u2028line",
		"tab\there", "new\nline", "semi;colon", "hash#", "quote\"", "\x00", "\xff", "Ⅻ roman", "²", "emoji 🙂"} {
		if got, want := validTagChars(s), tagCharsRegexp.MatchString(s); got != want {
			t.Errorf("validTagChars(%q) = %v, the regexp says %v", s, got, want)
		}
	}
}

func FuzzTagChars(f *testing.F) {
	for _, s := range []string{"data-science", "Ünïcödé 東京", "tab\there", "\xff", "emoji 🙂", "a\u2029b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validTagChars(s), tagCharsRegexp.MatchString(s); got != want {
			t.Fatalf("validTagChars(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
