package proxy

import (
	"net/url"
	"strings"
	"testing"
)

var modelIDCases = []struct {
	escaped string
	want    string // "" means refused
}{
	{"anthropic.claude-3-haiku-20240307-v1%3A0", "anthropic.claude-3-haiku-20240307-v1:0"},
	{"anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"}, // Anthropic SDK: ':' unescaped
	{"us.anthropic.claude-sonnet-4-5-20250929-v1%3A0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
	{"arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123", "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"},
	{"arn:aws:bedrock:us-east-2:1234:inference-profile%2Fus.anthropic.claude-3-7-sonnet-20250219-v1:0", "arn:aws:bedrock:us-east-2:1234:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0"},
	{"amazon.titan-embed-text-v2%3A0", "amazon.titan-embed-text-v2:0"},
	{"", ""},
	{"%2E%2E", ""},
	{"..", ""},
	{".", ""},
	{"a%2F..%2Fb", ""},
	{"a%2F%2Fb", ""},
	{"%2Fa", ""},
	{"a%2F", ""},
	{"a%00b", ""},
	{"a%0Ab", ""},
	{"a%0D%0AHost:%20evil", ""},
	{"a%20b", ""},
	{"a%3Fb", ""},
	{"a%23b", ""},
	{"a%25b", ""},
	{"%zz", ""},
	{"caf%C3%A9", ""},
	{strings.Repeat("m", 2048), strings.Repeat("m", 2048)},
	{strings.Repeat("m", 2049), ""},
	{strings.Repeat("%41", 2049), ""},
}

func TestParseModelID(t *testing.T) {
	for _, tc := range modelIDCases {
		got, err := parseModelID(tc.escaped)
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseModelID(%q) = %q, want an error", tc.escaped, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseModelID(%q) = %q, %v, want %q", tc.escaped, got, err, tc.want)
		}
	}
}

func TestEscapeLabel(t *testing.T) {
	// aws-wire-facts §1.4: what the Go SDK puts on the wire.
	for _, tc := range []struct{ in, want string }{
		{"us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1%3A0"},
		{"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123def456", "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123def456"},
		{"a_b~c", "a_b~c"},
	} {
		if got := escapeLabel(tc.in); got != tc.want {
			t.Errorf("escapeLabel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseModelID: whatever arrives, an accepted ID is made only of the
// allowed characters, has no relative or empty segment, and round-trips
// through the escaping used to build the upstream path.
func FuzzParseModelID(f *testing.F) {
	for _, tc := range modelIDCases {
		f.Add(tc.escaped)
	}
	f.Fuzz(func(t *testing.T, escaped string) {
		id, err := parseModelID(escaped)
		if err != nil {
			return
		}
		if id == "" || len(id) > maxModelIDLen {
			t.Fatalf("accepted %q with length %d", id, len(id))
		}
		for _, seg := range strings.Split(id, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", id, seg)
			}
		}
		if strings.ContainsAny(id, "?#% \r\n\t\x00") {
			t.Fatalf("accepted %q with a special character", id)
		}
		back, err := url.PathUnescape(escapeLabel(id))
		if err != nil || back != id {
			t.Fatalf("escapeLabel(%q) does not round-trip: %q, %v", id, back, err)
		}
		if strings.Contains(escapeLabel(id), "/") {
			t.Fatalf("escapeLabel(%q) leaves a path separator", id)
		}
	})
}
