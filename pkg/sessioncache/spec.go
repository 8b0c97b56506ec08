package sessioncache

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// Limits from the STS AssumeRole API reference.
const (
	// DurationSeconds: 900..43200, default 3600; role chaining (the gateway
	// runs on a role) fails above 3600.
	defaultDuration = time.Hour
	minDuration     = minSessionDuration
	maxDuration     = time.Hour
	// Tags: at most 50; Key 1-128 characters, Value 0-256 characters.
	maxTags        = 50
	maxTagKeyLen   = 128
	maxTagValueLen = 256
	// RoleArn: 20-2048 characters.
	minRoleARNLen = 20
	maxRoleARNLen = 2048
	// RoleSessionName and SourceIdentity: 2-64 characters of [\w+=,.@-].
	minNameLen = 2
	maxNameLen = 64
)

// specKey encodes every field of spec that reaches STS into a string such
// that two specs share a key only if they are equal up to tag order (which
// STS ignores). Each string is written as its byte length, ':', then its bytes, so no
// content can be mistaken for a field boundary; tags are encoded in the
// order sortedTags gives, which is also the order they are sent in.
// It deliberately keeps whole values (no hashing or truncation): the key is
// what keeps one caller's credentials from reaching another.
func specKey(spec tenancy.SessionSpec) string {
	tags := sortedTags(spec.Tags)
	n := len(spec.RoleARN) + len(spec.SessionName) + len(spec.SourceIdentity) + 64
	for _, t := range tags {
		n += len(t.Key) + len(t.Value) + 8
	}
	var b strings.Builder
	b.Grow(n)
	writeField(&b, spec.RoleARN)
	writeField(&b, spec.SessionName)
	writeField(&b, spec.SourceIdentity)
	writeInt(&b, int64(spec.Duration))
	writeInt(&b, int64(len(tags)))
	for _, t := range tags {
		writeField(&b, t.Key)
		writeField(&b, t.Value)
	}
	return b.String()
}

// writeField writes s as "<byte length>:<bytes>".
func writeField(b *strings.Builder, s string) {
	var num [20]byte
	b.Write(strconv.AppendInt(num[:0], int64(len(s)), 10))
	b.WriteByte(':')
	b.WriteString(s)
}

// writeInt writes n as "<decimal>;".
func writeInt(b *strings.Builder, n int64) {
	var num [20]byte
	b.Write(strconv.AppendInt(num[:0], n, 10))
	b.WriteByte(';')
}

// sortedTags returns tags ordered by key, then value. Tag order carries no
// meaning to STS, so specs that differ only in order are one session. The
// input is returned as is when already sorted (tenancy sorts by key), so the
// cache-hit path does not copy.
func sortedTags(tags []tenancy.Tag) []tenancy.Tag {
	if slices.IsSortedFunc(tags, compareTags) {
		return tags
	}
	tags = slices.Clone(tags)
	slices.SortFunc(tags, compareTags)
	return tags
}

func compareTags(a, b tenancy.Tag) int {
	if c := cmp.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return cmp.Compare(a.Value, b.Value)
}

// sessionDuration returns spec's DurationSeconds value, applying the STS
// default for zero.
func sessionDuration(spec tenancy.SessionSpec) time.Duration {
	if spec.Duration == 0 {
		return defaultDuration
	}
	return spec.Duration
}

// checkSpec rejects, before any STS call, specs STS would refuse for reasons
// visible locally. It is a backstop: pkg/tenancy owns full validation.
func checkSpec(spec tenancy.SessionSpec) error {
	var errs []error
	if n := utf8.RuneCountInString(spec.RoleARN); n < minRoleARNLen || n > maxRoleARNLen {
		errs = append(errs, fmt.Errorf("role ARN: must be %d-%d characters, got %d", minRoleARNLen, maxRoleARNLen, n))
	}
	if !validName(spec.SessionName) {
		errs = append(errs, fmt.Errorf("session name: must be %d-%d characters of [\\w+=,.@-]", minNameLen, maxNameLen))
	}
	if spec.SourceIdentity != "" && !validName(spec.SourceIdentity) {
		errs = append(errs, fmt.Errorf("source identity: must be %d-%d characters of [\\w+=,.@-]", minNameLen, maxNameLen))
	}
	if d := sessionDuration(spec); d < minDuration || d > maxDuration || d%time.Second != 0 {
		errs = append(errs, fmt.Errorf("duration: must be whole seconds in %v..%v, got %v", minDuration, maxDuration, d))
	}
	if len(spec.Tags) > maxTags {
		errs = append(errs, fmt.Errorf("tags: at most %d, got %d", maxTags, len(spec.Tags)))
	}
	for i, t := range spec.Tags {
		if n := utf8.RuneCountInString(t.Key); n < 1 || n > maxTagKeyLen {
			errs = append(errs, fmt.Errorf("tags[%d].key: must be 1-%d characters, got %d", i, maxTagKeyLen, n))
		}
		if n := utf8.RuneCountInString(t.Value); n > maxTagValueLen {
			errs = append(errs, fmt.Errorf("tags[%d].value: must be at most %d characters, got %d", i, maxTagValueLen, n))
		}
	}
	return errors.Join(errs...)
}

// validName reports whether s is 2-64 characters of [\w+=,.@-], the
// RoleSessionName and SourceIdentity syntax (STS API reference).
func validName(s string) bool {
	if len(s) < minNameLen || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("_+=,.@-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// assumeRoleInput is the request for spec; specKey covers every field set
// here. spec must have passed checkSpec.
func assumeRoleInput(spec tenancy.SessionSpec) *sts.AssumeRoleInput {
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(spec.RoleARN),
		RoleSessionName: aws.String(spec.SessionName),
		DurationSeconds: aws.Int32(int32(sessionDuration(spec) / time.Second)),
	}
	if tags := sortedTags(spec.Tags); len(tags) > 0 {
		in.Tags = make([]types.Tag, len(tags))
		for i, t := range tags {
			in.Tags[i] = types.Tag{Key: aws.String(t.Key), Value: aws.String(t.Value)}
		}
	}
	if spec.SourceIdentity != "" {
		in.SourceIdentity = aws.String(spec.SourceIdentity)
	}
	return in
}
