package endpoint

import "testing"

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://bedrock-runtime.us-east-1.amazonaws.com", true},
		{"https://gw.example.com/prefix", true},
		{"http://127.0.0.1:4566", true},
		{"http://127.9.9.9:4566", true},
		{"http://localhost:4566", true},
		{"http://[::1]:4566", true},
		{"http://bedrock.example.com", false},
		{"http://localhost.example.com", false},
		{"http://10.0.0.1", false},
		{"ftp://x", false},
		{"https://user:pw@host", false},
		{"https://host?x=1", false},
		{"https://host#frag", false},
		{"/relative", false},
		{"", false},
	} {
		if err := Check(tc.url); (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}
