package proxy

import (
	"encoding/json"
	"errors"
)

// topLevelMember finds the member name of a JSON object body and returns
// the byte span of its value, or found=false. It walks the top level and
// skips nested values without decoding them: stamping request metadata
// into a multi-megabyte Converse body must not cost a full decode and
// re-encode. Member names are compared after unescaping, as a JSON parser
// would ("request\u004detadata" is requestMetadata), and a name that
// appears twice is an error: parsers differ on which one wins.
//
// The body is not otherwise validated; Bedrock does that.
func topLevelMember(body []byte, name string) (start, end int, found bool, err error) {
	_, start, end, found, err = memberSpan(body, name)
	return start, end, found, err
}

// memberSpan is topLevelMember that also returns where the member's name
// starts, for removeMember.
func memberSpan(body []byte, name string) (keyStart, start, end int, found bool, err error) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return 0, 0, 0, false, errors.New("request body is not a JSON object")
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return 0, 0, 0, false, nil
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return 0, 0, 0, false, errBadJSON
		}
		keyEnd, escaped, err := skipString(body, i)
		if err != nil {
			return 0, 0, 0, false, err
		}
		key := string(body[i+1 : keyEnd-1])
		if escaped {
			if err := json.Unmarshal(body[i:keyEnd], &key); err != nil {
				return 0, 0, 0, false, errBadJSON
			}
		}
		nameStart := i
		i = skipSpace(body, keyEnd)
		if i >= len(body) || body[i] != ':' {
			return 0, 0, 0, false, errBadJSON
		}
		i = skipSpace(body, i+1)
		valEnd, err := skipValue(body, i, 0)
		if err != nil {
			return 0, 0, 0, false, err
		}
		if key == name {
			if found {
				return 0, 0, 0, false, errors.New("request body has " + name + " twice")
			}
			keyStart, start, end, found = nameStart, i, valEnd, true
		}
		i = skipSpace(body, valEnd)
		if i >= len(body) {
			return 0, 0, 0, false, errBadJSON
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			if j := skipSpace(body, i+1); j != len(body) {
				return 0, 0, 0, false, errBadJSON
			}
			return keyStart, start, end, found, nil
		default:
			return 0, 0, 0, false, errBadJSON
		}
	}
}

// removeMember returns a copy of body without the top-level member whose
// name starts at keyStart and whose value ends at end (as memberSpan found
// them), together with the comma that joined it to a neighbour.
func removeMember(body []byte, keyStart, end int) []byte {
	from, to := keyStart, end
	if j := skipSpace(body, end); j < len(body) && body[j] == ',' {
		to = skipSpace(body, j+1)
	} else if k := skipSpaceBack(body, keyStart); k > 0 && body[k-1] == ',' {
		from = skipSpaceBack(body, k-1)
	}
	out := make([]byte, 0, len(body)-(to-from))
	out = append(out, body[:from]...)
	return append(out, body[to:]...)
}

var errBadJSON = errors.New("request body is not valid JSON")

// maxJSONDepth bounds nesting, as encoding/json does (10000).
const maxJSONDepth = 10000

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipSpaceBack returns the start of the run of JSON whitespace that ends
// at b[i].
func skipSpaceBack(b []byte, i int) int {
	for i > 0 && (b[i-1] == ' ' || b[i-1] == '\t' || b[i-1] == '\n' || b[i-1] == '\r') {
		i--
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) (end int, escaped bool, err error) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			return j + 1, escaped, nil
		case c < 0x20:
			return 0, false, errBadJSON
		}
	}
	return 0, false, errBadJSON
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i, depth int) (int, error) {
	if depth > maxJSONDepth {
		return 0, errBadJSON
	}
	if i >= len(b) {
		return 0, errBadJSON
	}
	switch b[i] {
	case '"':
		end, _, err := skipString(b, i)
		return end, err
	case '{', '[':
		closer := byte('}')
		if b[i] == '[' {
			closer = ']'
		}
		j := skipSpace(b, i+1)
		if j < len(b) && b[j] == closer {
			return j + 1, nil
		}
		for {
			if closer == '}' {
				if j >= len(b) || b[j] != '"' {
					return 0, errBadJSON
				}
				k, _, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = skipSpace(b, k)
				if j >= len(b) || b[j] != ':' {
					return 0, errBadJSON
				}
				j = skipSpace(b, j+1)
			}
			k, err := skipValue(b, j, depth+1)
			if err != nil {
				return 0, err
			}
			j = skipSpace(b, k)
			if j >= len(b) {
				return 0, errBadJSON
			}
			if b[j] == closer {
				return j + 1, nil
			}
			if b[j] != ',' {
				return 0, errBadJSON
			}
			j = skipSpace(b, j+1)
		}
	default:
		// number, true, false, null: up to the next delimiter.
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				goto done
			}
			j++
		}
	done:
		if j == i {
			return 0, errBadJSON
		}
		return j, nil
	}
}
