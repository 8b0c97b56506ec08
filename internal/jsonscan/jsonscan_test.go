package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestMember(t *testing.T) {
	tests := []struct {
		body, name string
		want       string // the value's bytes; "" for not found
		err        error
	}{
		{`{"a":1,"usage":{"inputTokens":3},"b":[1,{"usage":2}]}`, "usage", `{"inputTokens":3}`, nil},
		{` { "b" : "usage" , "usage" : null } `, "usage", `null`, nil},
		{`{"us\u0061ge":[1,2]}`, "usage", `[1,2]`, nil},
		{`{"output":{"usage":1}}`, "usage", "", nil},
		{`{}`, "usage", "", nil},
		{`[]`, "usage", "", ErrNotObject},
		{`{"usage":1,"usage":2}`, "usage", "", &DuplicateError{}},
		{`{"usage":1`, "usage", "", ErrBadJSON},
		{`{"usage":1}x`, "usage", "", ErrBadJSON},
		{`{"usage":"a` + "\x01" + `"}`, "usage", "", ErrBadJSON},
	}
	for _, tt := range tests {
		_, start, end, found, err := Member([]byte(tt.body), tt.name)
		var dup *DuplicateError
		switch {
		case tt.err == nil && err != nil, tt.err != nil && err == nil:
			t.Errorf("Member(%s) error %v, want %v", tt.body, err, tt.err)
		case tt.err != nil && !errors.Is(err, tt.err) && !(errors.As(tt.err, &dup) && errors.As(err, &dup)):
			t.Errorf("Member(%s) error %v, want %v", tt.body, err, tt.err)
		case err == nil && found != (tt.want != ""):
			t.Errorf("Member(%s) found = %v, want %v", tt.body, found, tt.want != "")
		case found && tt.body[start:end] != tt.want:
			t.Errorf("Member(%s) = %s, want %s", tt.body, tt.body[start:end], tt.want)
		}
	}
}

// FuzzMember: for any valid JSON object whose member names are distinct,
// Member finds exactly the value encoding/json sees under that name, and
// RemoveMember leaves a valid object without it.
func FuzzMember(f *testing.F) {
	f.Add([]byte(`{"output":{"message":{"content":[{"text":"hi"}]}},"usage":{"inputTokens":1,"outputTokens":2},"stopReason":"end_turn"}`), "usage")
	f.Add([]byte(`{"requestMetadata":{"k":"v"},"messages":[]}`), "requestMetadata")
	f.Add([]byte(`{"a\u0062":true,"x":-1.5e3}`), "ab")
	f.Add([]byte(` {"n":null} `), "m")
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		keyStart, start, end, found, err := Member(body, name)
		var members map[string]json.RawMessage
		if json.Unmarshal(body, &members) != nil || !distinctNames(body) {
			return // Member's answer on invalid JSON is only "no panic"
		}
		if err != nil {
			t.Fatalf("Member(%q, %q) error %v on a valid object", body, name, err)
		}
		want, ok := members[name]
		if found != ok {
			t.Fatalf("Member(%q, %q) found = %v, want %v", body, name, found, ok)
		}
		if !found {
			return
		}
		if !bytes.Equal(body[start:end], bytes.TrimSpace(want)) {
			t.Fatalf("Member(%q, %q) = %q, want %q", body, name, body[start:end], want)
		}
		var rest map[string]json.RawMessage
		if err := json.Unmarshal(RemoveMember(body, keyStart, end), &rest); err != nil {
			t.Fatalf("RemoveMember(%q) = invalid JSON: %v", body, err)
		}
		if _, still := rest[name]; still || len(rest) != len(members)-1 {
			t.Fatalf("RemoveMember(%q, %q) left %d members (%v)", body, name, len(rest), still)
		}
	})
}

// distinctNames reports whether no member name repeats at the top level.
func distinctNames(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		name := tok.(string)
		if seen[name] {
			return false
		}
		seen[name] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return true
}

// FuzzSkipString: the eight-at-a-time scan ends a string exactly where a
// byte-at-a-time scan does, and refuses the same strings.
func FuzzSkipString(f *testing.F) {
	f.Add([]byte(`"plain text long enough for words"`))
	f.Add([]byte(`"esc\"aped \\ and \u0041 at 8+ bytes ....."`))
	f.Add([]byte("\"control \x01 char in the middle of it\""))
	f.Add([]byte(`"unterminated string that goes on and on`))
	f.Add([]byte("\"\xff\xfe high bytes \x7f del\"tail"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != '"' {
			return
		}
		end, esc, err := skipString(b, 0)
		wantEnd, wantEsc, wantErr := skipStringSlow(b)
		if end != wantEnd || esc != wantEsc || (err == nil) != (wantErr == nil) {
			t.Fatalf("skipString(%q) = %d, %v, %v; byte by byte %d, %v, %v", b, end, esc, err, wantEnd, wantEsc, wantErr)
		}
	})
}

func skipStringSlow(b []byte) (int, bool, error) {
	escaped := false
	for j := 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			return j + 1, escaped, nil
		case c < 0x20:
			return 0, false, ErrBadJSON
		}
	}
	return 0, false, ErrBadJSON
}
