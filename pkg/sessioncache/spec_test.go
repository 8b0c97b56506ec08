package sessioncache

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

func TestAssumeRoleInput(t *testing.T) {
	const role = "arn:aws:iam::123456789012:role/BedrockUser"
	tests := []struct {
		name string
		spec tenancy.SessionSpec
		want *sts.AssumeRoleInput
	}{
		{
			name: "full, tags sorted",
			spec: tenancy.SessionSpec{
				RoleARN:        role,
				SessionName:    "alice@corp.com",
				Tags:           []tenancy.Tag{{Key: "tenant", Value: "acme"}, {Key: "team", Value: "ml"}},
				SourceIdentity: "alice",
				Duration:       30 * time.Minute,
			},
			want: &sts.AssumeRoleInput{
				RoleArn:         aws.String(role),
				RoleSessionName: aws.String("alice@corp.com"),
				DurationSeconds: aws.Int32(1800),
				Tags: []types.Tag{
					{Key: aws.String("team"), Value: aws.String("ml")},
					{Key: aws.String("tenant"), Value: aws.String("acme")},
				},
				SourceIdentity: aws.String("alice"),
			},
		},
		{
			name: "defaults: 3600 s, no tags, no source identity",
			spec: tenancy.SessionSpec{RoleARN: role, SessionName: "bob"},
			want: &sts.AssumeRoleInput{
				RoleArn:         aws.String(role),
				RoleSessionName: aws.String("bob"),
				DurationSeconds: aws.Int32(3600),
			},
		},
		{
			name: "empty tag value is sent",
			spec: tenancy.SessionSpec{RoleARN: role, SessionName: "bob", Tags: []tenancy.Tag{{Key: "team"}}, Duration: time.Hour},
			want: &sts.AssumeRoleInput{
				RoleArn:         aws.String(role),
				RoleSessionName: aws.String("bob"),
				DurationSeconds: aws.Int32(3600),
				Tags:            []types.Tag{{Key: aws.String("team"), Value: aws.String("")}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSTS{}
			c := mustNew(t, Config{STS: f})
			if _, err := c.Get(t.Context(), tt.spec); err != nil {
				t.Fatalf("Get() error = %v", err)
			}
			got := f.Input(0)
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreUnexported(sts.AssumeRoleInput{}, types.Tag{})); diff != "" {
				t.Errorf("AssumeRole input mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSortedTagsDoesNotMutateInput(t *testing.T) {
	in := []tenancy.Tag{{Key: "b"}, {Key: "a"}}
	got := sortedTags(in)
	if diff := cmp.Diff([]tenancy.Tag{{Key: "a"}, {Key: "b"}}, got); diff != "" {
		t.Errorf("sortedTags() mismatch (-want +got):\n%s", diff)
	}
	if in[0].Key != "b" {
		t.Errorf("sortedTags() reordered its input to %v, want it untouched", in)
	}
}

// specKeyPairs are near-collisions: pairs of specs that a naive encoding
// (joining with a separator, concatenating, hashing a prefix) could confuse.
var specKeyPairs = []struct {
	name string
	a, b tenancy.SessionSpec
	same bool
}{
	{
		name: "comma in tag value vs two tags",
		a:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "a", Value: "b,c"}}},
		b:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "a", Value: "b"}, {Key: "c"}}},
	},
	{
		name: "comma moved between tags, same tag count",
		a:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "a", Value: "b,c"}, {Key: "d"}}},
		b:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "a", Value: "b"}, {Key: "c,d"}}},
	},
	{
		name: "separator-like byte moved between role and session name",
		a:    tenancy.SessionSpec{RoleARN: "a,b", SessionName: "c"},
		b:    tenancy.SessionSpec{RoleARN: "a", SessionName: "b,c"},
	},
	{
		name: "equals sign moved between key and value",
		a:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "a=b", Value: "c"}}},
		b:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "a", Value: "b=c"}}},
	},
	{
		name: "boundary between role and session name",
		a:    tenancy.SessionSpec{RoleARN: "arn:role/ab", SessionName: "c"},
		b:    tenancy.SessionSpec{RoleARN: "arn:role/a", SessionName: "bc"},
	},
	{
		name: "boundary between session name and source identity",
		a:    tenancy.SessionSpec{SessionName: "alice", SourceIdentity: "x"},
		b:    tenancy.SessionSpec{SessionName: "alicex"},
	},
	{
		name: "encoded length digits inside a value",
		a:    tenancy.SessionSpec{SessionName: "1:a", SourceIdentity: ""},
		b:    tenancy.SessionSpec{SessionName: "", SourceIdentity: "a"},
	},
	{
		name: "field that looks like a whole encoded tag",
		a:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "k", Value: "1:x1:y"}}},
		b:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "k", Value: ""}, {Key: "x", Value: "y"}}},
	},
	{
		name: "empty tag vs no tag",
		a:    tenancy.SessionSpec{Tags: []tenancy.Tag{{}}},
		b:    tenancy.SessionSpec{},
	},
	{
		name: "duplicate tag vs single",
		a:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "a", Value: "b"}, {Key: "a", Value: "b"}}},
		b:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "a", Value: "b"}}},
	},
	{
		name: "duration differs by a nanosecond",
		a:    tenancy.SessionSpec{Duration: time.Hour},
		b:    tenancy.SessionSpec{Duration: time.Hour + 1},
	},
	{
		name: "zero duration vs explicit default (different specs)",
		a:    tenancy.SessionSpec{},
		b:    tenancy.SessionSpec{Duration: time.Hour},
	},
	{
		name: "tag value vs source identity",
		a:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "s", Value: "alice"}}},
		b:    tenancy.SessionSpec{SourceIdentity: "alice", Tags: []tenancy.Tag{{Key: "s"}}},
	},
	{
		name: "shared long prefix, last byte differs",
		a:    tenancy.SessionSpec{RoleARN: strings.Repeat("r", 2000), SessionName: "alice", Tags: []tenancy.Tag{{Key: "team", Value: "ml"}}},
		b:    tenancy.SessionSpec{RoleARN: strings.Repeat("r", 2000), SessionName: "alice", Tags: []tenancy.Tag{{Key: "team", Value: "mm"}}},
	},
	{
		name: "NUL bytes",
		a:    tenancy.SessionSpec{SessionName: "a\x00", SourceIdentity: "b"},
		b:    tenancy.SessionSpec{SessionName: "a", SourceIdentity: "\x00b"},
	},
	{
		name: "same tags, other order",
		a:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}}},
		b:    tenancy.SessionSpec{Tags: []tenancy.Tag{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}}},
		same: true,
	},
	{
		name: "nil vs empty tag slice",
		a:    tenancy.SessionSpec{Tags: nil},
		b:    tenancy.SessionSpec{Tags: []tenancy.Tag{}},
		same: true,
	},
}

func TestSpecKeyNearCollisions(t *testing.T) {
	for _, tt := range specKeyPairs {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := specKey(tt.a), specKey(tt.b)
			if same := ka == kb; same != tt.same {
				t.Errorf("specKey(a) = %q, specKey(b) = %q, equal = %v, want %v", ka, kb, same, tt.same)
			}
		})
	}
}

// canonicalSpec is spec as far as STS can tell: tags in sorted order, and no
// distinction between nil and empty tags.
func canonicalSpec(s tenancy.SessionSpec) tenancy.SessionSpec {
	s.Tags = slices.Clone(s.Tags)
	slices.SortFunc(s.Tags, compareTags)
	if len(s.Tags) == 0 {
		s.Tags = nil
	}
	return s
}

// decodeSpecKey inverts specKey. That an inverse exists proves specKey is
// injective on canonical specs.
func decodeSpecKey(key string) (tenancy.SessionSpec, error) {
	rest := key
	field := func() (string, error) {
		i := strings.IndexByte(rest, ':')
		if i < 0 {
			return "", errors.New("missing ':'")
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 || n > len(rest)-i-1 {
			return "", fmt.Errorf("bad length %q", rest[:i])
		}
		v := rest[i+1 : i+1+n]
		rest = rest[i+1+n:]
		return v, nil
	}
	number := func() (int64, error) {
		i := strings.IndexByte(rest, ';')
		if i < 0 {
			return 0, errors.New("missing ';'")
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		rest = rest[i+1:]
		return n, err
	}
	var s tenancy.SessionSpec
	var err error
	if s.RoleARN, err = field(); err != nil {
		return s, err
	}
	if s.SessionName, err = field(); err != nil {
		return s, err
	}
	if s.SourceIdentity, err = field(); err != nil {
		return s, err
	}
	d, err := number()
	if err != nil {
		return s, err
	}
	s.Duration = time.Duration(d)
	n, err := number()
	if err != nil {
		return s, err
	}
	for range n {
		var t tenancy.Tag
		if t.Key, err = field(); err != nil {
			return s, err
		}
		if t.Value, err = field(); err != nil {
			return s, err
		}
		s.Tags = append(s.Tags, t)
	}
	if rest != "" {
		return s, fmt.Errorf("trailing %q", rest)
	}
	return s, nil
}

// fuzzTags parses tags from a fuzz string whose first byte is the separator
// for the rest, so any byte can appear in a key or value: "|k|v|k2|v2".
func fuzzTags(s string) []tenancy.Tag {
	if s == "" {
		return nil
	}
	parts := strings.Split(s[1:], s[:1])
	var tags []tenancy.Tag
	for i := 0; i < len(parts); i += 2 {
		t := tenancy.Tag{Key: parts[i]}
		if i+1 < len(parts) {
			t.Value = parts[i+1]
		}
		tags = append(tags, t)
	}
	return tags
}

func FuzzSpecKey(f *testing.F) {
	for _, p := range specKeyPairs {
		for _, s := range []tenancy.SessionSpec{p.a, p.b} {
			var tags strings.Builder
			for _, t := range s.Tags {
				tags.WriteString("\x00" + t.Key + "\x00" + t.Value)
			}
			f.Add(s.RoleARN, s.SessionName, s.SourceIdentity, int64(s.Duration), tags.String())
		}
	}
	f.Add("arn:aws:iam::123456789012:role/BedrockUser", "alice@corp.com", "alice", int64(time.Hour), "|team|ml|tenant|acme")
	f.Add("1:a", "2:bb", "", int64(-1), ":1:a:1:b")

	f.Fuzz(func(t *testing.T, role, name, source string, duration int64, tagText string) {
		spec := tenancy.SessionSpec{
			RoleARN:        role,
			SessionName:    name,
			SourceIdentity: source,
			Duration:       time.Duration(duration),
			Tags:           fuzzTags(tagText),
		}
		key := specKey(spec)

		// Independently of the decoder: moving a byte across any boundary
		// between two adjacent fields must change the key.
		for _, other := range boundaryShifts(spec) {
			if cmp.Equal(canonicalSpec(other), canonicalSpec(spec)) {
				continue
			}
			if k := specKey(other); k == key {
				t.Errorf("specKey(%+v) = specKey(%+v) = %q, want different keys", other, spec, k)
			}
		}

		// Reordering tags is the one change that must keep the key.
		reversed := spec
		reversed.Tags = slices.Clone(spec.Tags)
		slices.Reverse(reversed.Tags)
		if k := specKey(reversed); k != key {
			t.Errorf("specKey(tags reversed) = %q, want %q", k, key)
		}

		got, err := decodeSpecKey(key)
		if err != nil {
			t.Fatalf("decodeSpecKey(specKey(%+v) = %q) error = %v", spec, key, err)
		}
		if diff := cmp.Diff(canonicalSpec(spec), got); diff != "" {
			t.Fatalf("decodeSpecKey(specKey(spec)) mismatch (-want +got):\n%s", diff)
		}
	})
}

// boundaryShifts returns copies of s in which the last byte of one string
// field moved to the front of the next (role, session name, source identity,
// then each tag's key and value): the confusions a separator-based encoding
// is prone to.
func boundaryShifts(s tenancy.SessionSpec) []tenancy.SessionSpec {
	flat := []string{s.RoleARN, s.SessionName, s.SourceIdentity}
	for _, t := range s.Tags {
		flat = append(flat, t.Key, t.Value)
	}
	var out []tenancy.SessionSpec
	for i := 0; i+1 < len(flat); i++ {
		if flat[i] == "" {
			continue
		}
		f := slices.Clone(flat)
		last := len(f[i]) - 1
		f[i], f[i+1] = f[i][:last], f[i][last:]+f[i+1]
		o := tenancy.SessionSpec{RoleARN: f[0], SessionName: f[1], SourceIdentity: f[2], Duration: s.Duration}
		for j := 3; j+1 < len(f); j += 2 {
			o.Tags = append(o.Tags, tenancy.Tag{Key: f[j], Value: f[j+1]})
		}
		out = append(out, o)
	}
	return out
}
