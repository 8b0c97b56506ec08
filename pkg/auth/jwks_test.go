package auth

import "testing"

func TestCheckFetchURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://idp.example.com/keys", true},
		{"https://idp.example.com/keys?client_id=gw", true}, // a query is allowed here
		{"http://localhost:8080/keys", true},
		{"http://127.0.0.1/keys", true},
		{"http://127.0.0.2:9000/keys", true}, // all of 127.0.0.0/8, as endpoint.IsLoopback
		{"http://[::1]:8080/keys", true},
		{"http://idp.example.com/keys", false},
		{"http://localhost.example.com/keys", false},
		{"http://127.0.0.1.example.com/keys", false},
		{"http://10.0.0.1/keys", false},
		{"ftp://idp.example.com/keys", false},
		{"https:///keys", false},
		{"/keys", false},
		{"https://user:pw@idp.example.com/keys", false},
		{"https://idp.example.com/keys#frag", false},
		{"https://idp.example.com/%zz", false},
	} {
		err := checkFetchURL(tc.url)
		if got := err == nil; got != tc.ok {
			t.Errorf("checkFetchURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}
