package tenancy

import (
	"cmp"
	"errors"
	"fmt"
	"strings"

	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// DefaultSessionNameTemplate is the session name template used when
// Config.SessionNameTemplate is empty: the identity's label (its readable
// name, or its user when it has none).
const DefaultSessionNameTemplate = "{label}"

// maxTemplateLen bounds a session name template. Its output is cut to fit
// 64 characters anyway; the bound only keeps config sane.
const maxTemplateLen = 256

// nameField is what one part of a session name template renders.
type nameField int

const (
	fieldLiteral nameField = iota
	fieldUser              // Identity.User
	fieldLabel             // Identity.Label, or User if empty
	fieldTenant            // Identity.Tenant
	fieldTeam              // Identity.Team
)

var placeholders = map[string]nameField{
	"{user}":   fieldUser,
	"{label}":  fieldLabel,
	"{tenant}": fieldTenant,
	"{team}":   fieldTeam,
}

type namePart struct {
	field   nameField
	literal string // for fieldLiteral
}

// nameTemplate is a parsed session name template.
type nameTemplate []namePart

// parseNameTemplate parses s: literal text of [\w+,.@-] ('=' is reserved,
// as in a prefix) and the placeholders {user}, {label}, {tenant} and
// {team}, at least one of them. Any other '{' or '}' is an error.
func parseNameTemplate(s string) (nameTemplate, error) {
	if len(s) > maxTemplateLen {
		return nil, fmt.Errorf("must be at most %d characters, got %d", maxTemplateLen, len(s))
	}
	var t nameTemplate
	var lit strings.Builder
	hasField := false
	for rest := s; rest != ""; {
		if rest[0] == '{' {
			end := strings.IndexByte(rest, '}')
			f, ok := placeholders[rest[:end+1]]
			if end < 0 || !ok {
				return nil, fmt.Errorf("%.80q: unknown placeholder at %.20q (want {user}, {label}, {tenant} or {team})", s, rest)
			}
			if lit.Len() > 0 {
				t = append(t, namePart{literal: lit.String()})
				lit.Reset()
			}
			t = append(t, namePart{field: f})
			hasField = true
			rest = rest[end+1:]
			continue
		}
		c := rest[0]
		if c == '=' || c >= 0x80 || !isSessionNameChar(rune(c)) {
			return nil, fmt.Errorf("%.80q: literal text may contain only letters, digits and _+,.@- (no '='), got %q", s, c)
		}
		lit.WriteByte(c)
		rest = rest[1:]
	}
	if !hasField {
		return nil, errors.New("must contain at least one of {user}, {label}, {tenant}, {team}")
	}
	if lit.Len() > 0 {
		t = append(t, namePart{literal: lit.String()})
	}
	return t, nil
}

// render substitutes id into t. The result may contain any character;
// name makes it a session name.
func (t nameTemplate) render(id auth.Identity) string {
	var b strings.Builder
	for _, p := range t {
		switch p.field {
		case fieldLiteral:
			b.WriteString(p.literal)
		case fieldUser:
			b.WriteString(id.User)
		case fieldLabel:
			b.WriteString(cmp.Or(id.Label, id.User))
		case fieldTenant:
			b.WriteString(id.Tenant)
		case fieldTeam:
			b.WriteString(id.Team)
		}
	}
	return b.String()
}

// name returns the session name for id under t: SessionName(prefix,
// id.User) when t renders exactly id.User (so the default template keeps
// plain user names readable and unchanged), and otherwise always the
// hashed form prefix + rendered + "=" + hash(id.User).
//
// Why this stays injective over User although the rendered text is not:
// a name is either SessionName's (verbatim without '=', or hashed with
// exactly one '=' followed by hash(User)) or hashed with hash(User), so
// two names are equal only if both are verbatim and the users equal, or
// both are hashed and the 80-bit user hashes collide. A label, tenant or
// team is therefore never trusted to tell callers apart: two callers with
// the same email label still get different names.
func (t nameTemplate) name(prefix string, id auth.Identity) (string, error) {
	if id.User == "" {
		return "", fmt.Errorf("session name: empty user: %w", ErrInexpressible)
	}
	rendered := t.render(id)
	if rendered == id.User {
		return SessionName(prefix, id.User)
	}
	if err := validatePrefix(prefix); err != nil {
		return "", fmt.Errorf("session name prefix %w", err)
	}
	return hashedName(prefix, rendered, id.User), nil
}
