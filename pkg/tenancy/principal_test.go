package tenancy

import "testing"

func TestPrincipalARN(t *testing.T) {
	tests := []struct {
		role, session, want string
	}{
		{"arn:aws:iam::123456789012:role/BedrockRole", "alice@acme.org", "arn:aws:sts::123456789012:assumed-role/BedrockRole/alice@acme.org"},
		{"arn:aws:iam::123456789012:role/team/a/BedrockRole", "s", "arn:aws:sts::123456789012:assumed-role/BedrockRole/s"},
		{"arn:aws-cn:iam::123456789012:role/R", "s", "arn:aws-cn:sts::123456789012:assumed-role/R/s"},
		{"arn:aws:iam::123456789012:role/R", "", ""},
		{"arn:aws:iam::123456789012:user/R", "s", ""},
		{"arn:aws:sts::123456789012:assumed-role/R/s", "s", ""},
		{"arn:aws:iam:::role/R", "s", ""},
		{"arn:aws:iam::123456789012:role/", "s", ""},
		{"not an arn", "s", ""},
	}
	for _, tt := range tests {
		got, ok := PrincipalARN(tt.role, tt.session)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("PrincipalARN(%q, %q) = %q, %v; want %q", tt.role, tt.session, got, ok, tt.want)
		}
	}
}
