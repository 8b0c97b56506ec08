package tenancy

import "strings"

// PrincipalARN is the ARN AWS records as the caller for a session of
// roleARN named session, which is what CUR 2.0 shows in
// line_item_iam_principal: arn:PARTITION:iam::ACCOUNT:role/[path/]NAME
// becomes arn:PARTITION:sts::ACCOUNT:assumed-role/NAME/SESSION (the path
// is dropped). ok is false when roleARN is not a role ARN or session is
// empty.
func PrincipalARN(roleARN, session string) (arn string, ok bool) {
	parts := strings.SplitN(roleARN, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iam" || parts[4] == "" || session == "" {
		return "", false
	}
	resource, ok := strings.CutPrefix(parts[5], "role/")
	if !ok {
		return "", false
	}
	name := resource[strings.LastIndexByte(resource, '/')+1:]
	if name == "" {
		return "", false
	}
	return "arn:" + parts[1] + ":sts::" + parts[4] + ":assumed-role/" + name + "/" + session, true
}
