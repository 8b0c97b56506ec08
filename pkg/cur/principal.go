package cur

import (
	"fmt"
	"strings"
)

// arn is the part of an IAM or STS ARN that Reconcile needs:
// arn:PARTITION:SERVICE::ACCOUNT:RESOURCE.
type arn struct {
	service, account, resource string
}

func parseARN(s string) (arn, bool) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" {
		return arn{}, false
	}
	return arn{service: parts[2], account: parts[4], resource: parts[5]}, true
}

// assumedRole splits arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION.
// Neither a role name nor a session name can contain "/" (IAM and STS
// API references), so the split is unambiguous.
func assumedRole(principal string) (account, role, session string, ok bool) {
	a, ok := parseARN(principal)
	if !ok || a.service != "sts" {
		return "", "", "", false
	}
	parts := strings.Split(a.resource, "/")
	if len(parts) != 3 || parts[0] != "assumed-role" || parts[1] == "" {
		return "", "", "", false
	}
	return a.account, parts[1], parts[2], true
}

// principalKind names what kind of principal an ARN is, for Bypass.Kind.
func principalKind(principal string) string {
	a, ok := parseARN(principal)
	if !ok {
		return "other"
	}
	switch {
	case a.service == "sts" && strings.HasPrefix(a.resource, "assumed-role/"):
		return "assumed-role"
	case a.service == "sts" && strings.HasPrefix(a.resource, "federated-user/"):
		return "federated-user"
	case a.service == "iam" && strings.HasPrefix(a.resource, "user/"):
		return "iam-user"
	case a.service == "iam" && a.resource == "root":
		return "root"
	}
	return "other"
}

// role is one entry of Options.GatewayRoles: a name, with the account
// when it was given as an ARN.
type role struct{ account, name string }

func parseRole(s string) (role, error) {
	if !strings.HasPrefix(s, "arn:") {
		if s == "" || strings.ContainsAny(s, ":/") {
			return role{}, fmt.Errorf("%q: want a role name or a role ARN", s)
		}
		return role{name: s}, nil
	}
	a, ok := parseARN(s)
	if !ok || a.account == "" {
		return role{}, fmt.Errorf("%q: not an ARN with an account", s)
	}
	switch {
	case a.service == "iam" && strings.HasPrefix(a.resource, "role/"):
		// role/[path/]NAME: the assumed-role ARN drops the path.
		name := a.resource[strings.LastIndex(a.resource, "/")+1:]
		if name == "" {
			return role{}, fmt.Errorf("%q: no role name", s)
		}
		return role{account: a.account, name: name}, nil
	case a.service == "sts" && strings.HasPrefix(a.resource, "assumed-role/"):
		parts := strings.Split(a.resource, "/")
		if len(parts) < 2 || parts[1] == "" {
			return role{}, fmt.Errorf("%q: no role name", s)
		}
		return role{account: a.account, name: parts[1]}, nil
	}
	return role{}, fmt.Errorf("%q: not an IAM role ARN", s)
}

type roleMatcher struct{ roles map[role]bool }

// newRoleMatcher builds the set of gateway roles from configured names
// and ARNs, or, with none configured, from the roles of the expected
// principals.
func newRoleMatcher(configured []string, expected []Expected) roleMatcher {
	m := roleMatcher{roles: make(map[role]bool)}
	for _, s := range configured {
		if r, err := parseRole(s); err == nil {
			m.roles[r] = true
		}
	}
	if len(configured) > 0 {
		return m
	}
	for _, e := range expected {
		if acct, name, _, ok := assumedRole(e.Principal); ok {
			m.roles[role{account: acct, name: name}] = true
		}
	}
	return m
}

func (m roleMatcher) match(principal string) bool {
	acct, name, _, ok := assumedRole(principal)
	if !ok {
		return false
	}
	return m.roles[role{account: acct, name: name}] || m.roles[role{name: name}]
}
