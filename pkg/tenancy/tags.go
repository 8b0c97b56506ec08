package tenancy

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Session tag limits (STS API reference, AssumeRole Tags; IAM User Guide
// id_session-tags and id_tags): at most 50 tags; keys 1-128 characters and
// values 0-256 characters of letters, numbers, spaces and _.:/=+-@; keys
// are case-insensitive, so two keys differing only in case collide; the
// aws: prefix is reserved. Lengths are counted in Unicode code points, as
// the Smithy @length trait specifies for strings.
const (
	maxSessionTags = 50
	maxTagKeyLen   = 128
	maxTagValueLen = 256
)

// validTagChars reports whether s holds only the characters STS allows
// in tag keys and values, [\p{L}\p{Z}\p{N}_.:/=+\-@]*: a loop, not the
// regexp, because every request's tags are checked (TestTagCharsMatchRegexp
// and FuzzTagChars hold it to the regexp).
func validTagChars(s string) bool {
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == ' ' || strings.ContainsRune("_.:/=+-@", r)) {
				return false
			}
		case unicode.IsLetter(r), unicode.Is(unicode.Z, r), unicode.IsNumber(r):
		default:
			return false
		}
	}
	return true
}

// validateTagKey checks k against the STS rules for a session tag key.
func validateTagKey(k string) error {
	return validateTagText(k, 1, maxTagKeyLen)
}

// validateTagValue checks v against the STS rules for a session tag value.
// The reserved aws: prefix is refused for values too, as the IAM User
// Guide's tag rules state it for keys and values alike.
func validateTagValue(v string) error {
	return validateTagText(v, 0, maxTagValueLen)
}

func validateTagText(s string, minLen, maxLen int) error {
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n < minLen || n > maxLen {
		return fmt.Errorf("must be %d-%d characters, got %d", minLen, maxLen, n)
	}
	if !validTagChars(s) {
		return errors.New("may contain only letters, numbers, spaces and _.:/=+-@")
	}
	if len(s) >= 4 && strings.EqualFold(s[:4], "aws:") {
		return errors.New(`must not begin with the reserved prefix "aws:"`)
	}
	return nil
}

// validateTags checks a complete tag set as STS would, reporting every
// problem. Each problem wraps ErrInexpressible.
func validateTags(tags []Tag) error {
	var errs []error
	if len(tags) > maxSessionTags {
		errs = append(errs, fmt.Errorf("%d session tags, at most %d allowed: %w", len(tags), maxSessionTags, ErrInexpressible))
	}
	for i, t := range tags {
		if err := validateTagKey(t.Key); err != nil {
			errs = append(errs, fmt.Errorf("tag key %.64q: %v: %w", t.Key, err, ErrInexpressible))
		}
		if err := validateTagValue(t.Value); err != nil {
			errs = append(errs, fmt.Errorf("tag %.64q value %.64q: %v: %w", t.Key, t.Value, err, ErrInexpressible))
		}
		// At most 50 tags, usually four: a scan, not a map.
		for _, prev := range tags[:i] {
			if strings.EqualFold(prev.Key, t.Key) {
				errs = append(errs, fmt.Errorf("tag keys %.64q and %.64q collide (tag keys are case-insensitive): %w", prev.Key, t.Key, ErrInexpressible))
				break
			}
		}
	}
	return errors.Join(errs...)
}
