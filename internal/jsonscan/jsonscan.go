// Package jsonscan finds a top-level member of a JSON object without
// decoding the object: the gateway stamps request metadata into Converse
// bodies and reads usage out of Converse answers that can be megabytes of
// model output, and a full decode (and re-encode) of those would cost more
// than everything else it does to a request.
package jsonscan

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// ErrBadJSON is returned for a body that is not valid JSON where the scan
// went.
var ErrBadJSON = errors.New("body is not valid JSON")

// ErrNotObject is returned for a body that is not a JSON object.
var ErrNotObject = errors.New("body is not a JSON object")

// Member finds the member name of a JSON object body and returns where
// its name starts (for RemoveMember) and the byte span of its value, or
// found=false. It walks the top level and skips nested values without
// decoding them. Member names are compared after unescaping, as a JSON
// parser would ("request\u004detadata" is requestMetadata), and a name
// that appears twice is an error (a *DuplicateError): parsers differ on
// which one wins.
//
// The body is checked only as far as finding the members needs: strings,
// nesting and delimiters, not numbers or literals.
func Member(body []byte, name string) (keyStart, start, end int, found bool, err error) {
	var badName bool
	var dup error
	err = Members(body, func(m Span) bool {
		// A name with escapes, or with bytes that are not UTF-8 (which
		// a parser reads as U+FFFD), is compared as a parser reads it.
		plain := !m.Escaped && utf8.Valid(m.Name)
		match := plain && string(m.Name) == name
		if !plain {
			var key string
			if json.Unmarshal(quotedName(body, m), &key) != nil {
				badName = true
				return false
			}
			match = key == name
		}
		if match {
			if found {
				dup = &DuplicateError{Name: name}
				return false
			}
			keyStart, start, end, found = m.KeyStart, m.Start, m.End, true
		}
		return true
	})
	switch {
	case badName:
		return 0, 0, 0, false, ErrBadJSON
	case dup != nil:
		return 0, 0, 0, false, dup
	case err != nil:
		return 0, 0, 0, false, err
	}
	return keyStart, start, end, found, nil
}

// quotedName is a member's name with its quotes, as it stands in body.
func quotedName(body []byte, m Span) []byte { return body[m.KeyStart : m.KeyStart+len(m.Name)+2] }

// Span is one member of an object, as Members finds it.
type Span struct {
	Name       []byte // raw, as between its quotes
	Escaped    bool   // whether Name holds escapes
	KeyStart   int    // where the quoted name starts in the body
	Start, End int    // the value's span in the body
}

// Members calls fn with each member of the JSON object body, in order,
// until fn returns false. It checks only the structure it walks.
func Members(body []byte, fn func(Span) bool) error {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return ErrNotObject
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		if skipSpace(body, i+1) != len(body) {
			return ErrBadJSON
		}
		return nil
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return ErrBadJSON
		}
		keyEnd, escaped, err := skipString(body, i)
		if err != nil {
			return err
		}
		m := Span{Name: body[i+1 : keyEnd-1], Escaped: escaped, KeyStart: i}
		i = skipSpace(body, keyEnd)
		if i >= len(body) || body[i] != ':' {
			return ErrBadJSON
		}
		i = skipSpace(body, i+1)
		valEnd, err := skipValue(body, i, 0)
		if err != nil {
			return err
		}
		m.Start, m.End = i, valEnd
		if !fn(m) {
			return nil
		}
		i = skipSpace(body, valEnd)
		if i >= len(body) {
			return ErrBadJSON
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			if skipSpace(body, i+1) != len(body) {
				return ErrBadJSON
			}
			return nil
		default:
			return ErrBadJSON
		}
	}
}

// DuplicateError is Member's error for a member that appears twice.
type DuplicateError struct{ Name string }

func (e *DuplicateError) Error() string { return "body has " + e.Name + " twice" }

// RemoveMember returns a copy of body without the top-level member whose
// name starts at keyStart and whose value ends at end (as Member found
// them), together with the comma that joined it to a neighbour.
func RemoveMember(body []byte, keyStart, end int) []byte {
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
// Strings are most of a Converse body (the prompt, the model's answer),
// so it skips eight plain bytes at a time: none a quote, a backslash or
// a control character (which JSON does not allow raw in a string).
func skipString(b []byte, i int) (end int, escaped bool, err error) {
	j := i + 1
	for {
		for j+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[j:])) {
			j += 8
		}
		if j >= len(b) {
			return 0, false, ErrBadJSON
		}
		switch c := b[j]; {
		case c == '\\':
			escaped = true
			j += 2
		case c == '"':
			return j + 1, escaped, nil
		case c < 0x20:
			return 0, false, ErrBadJSON
		default:
			j++
		}
	}
}

// plain8 reports whether none of the eight bytes in x is '"', '\\' or
// below 0x20 (the bit tricks of "Bit Twiddling Hacks": haszero, hasless).
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	control := (x - ones*0x20) & ^x & highs
	return control|hasZero(x^(ones*'"'))|hasZero(x^(ones*'\\')) == 0
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i, depth int) (int, error) {
	if depth > maxJSONDepth {
		return 0, ErrBadJSON
	}
	if i >= len(b) {
		return 0, ErrBadJSON
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
					return 0, ErrBadJSON
				}
				k, _, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = skipSpace(b, k)
				if j >= len(b) || b[j] != ':' {
					return 0, ErrBadJSON
				}
				j = skipSpace(b, j+1)
			}
			k, err := skipValue(b, j, depth+1)
			if err != nil {
				return 0, err
			}
			j = skipSpace(b, k)
			if j >= len(b) {
				return 0, ErrBadJSON
			}
			if b[j] == closer {
				return j + 1, nil
			}
			if b[j] != ',' {
				return 0, ErrBadJSON
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
			return 0, ErrBadJSON
		}
		return j, nil
	}
}
