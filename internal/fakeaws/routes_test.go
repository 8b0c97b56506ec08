package fakeaws

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRouteBedrock(t *testing.T) {
	const arn = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/abcdefghijkl"
	escapedARN := "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aasync-invoke%2Fabcdefghijkl"
	tests := []struct {
		method, path string
		want         route
		ok           bool
	}{
		{"POST", "/model/m/converse", route{op: opConverse, modelID: "m"}, true},
		{"GET", "/model/m/converse", route{op: opConverse, modelID: "m"}, false},
		{"POST", "/model/m/invoke-with-bidirectional-stream", route{}, false},
		{"POST", "/guardrail/abc123/version/DRAFT/apply", route{op: opApplyGuardrail, guardrailID: "abc123", guardrailVersion: "DRAFT"}, true},
		{"POST", "/guardrail/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aguardrail%2Fabc/version/1/apply",
			route{op: opApplyGuardrail, guardrailID: "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc", guardrailVersion: "1"}, true},
		{"GET", "/guardrail/abc/version/1/apply", route{op: opApplyGuardrail, guardrailID: "abc", guardrailVersion: "1"}, false},
		{"POST", "/guardrail//version/1/apply", route{}, false},
		{"POST", "/guardrail/abc/version//apply", route{}, false},
		{"POST", "/guardrail/abc/version/1/check", route{}, false},
		{"POST", "/guardrail/a/b/version/1/apply", route{}, false},
		{"POST", "/async-invoke", route{op: opStartAsyncInvoke}, true},
		{"GET", "/async-invoke", route{op: opListAsyncInvokes}, true},
		{"PUT", "/async-invoke", route{}, false},
		{"GET", "/async-invoke/" + escapedARN, route{op: opGetAsyncInvoke, invocationARN: arn}, true},
		{"GET", "/async-invoke/arn:aws:bedrock:us-east-1:123456789012:async-invoke%2Fabcdefghijkl", route{op: opGetAsyncInvoke, invocationARN: arn}, true},
		{"GET", "/async-invoke/" + arn, route{}, false}, // a raw '/' splits the label
		{"POST", "/async-invoke/" + escapedARN, route{op: opGetAsyncInvoke, invocationARN: arn}, false},
		{"GET", "/async-invoke/", route{}, false},
		{"GET", "/async-invoke/%zz", route{}, false},
		{"GET", "/", route{}, false},
	}
	for _, tt := range tests {
		got, ok := routeBedrock(tt.method, tt.path)
		if got != tt.want || ok != tt.ok {
			t.Errorf("routeBedrock(%s, %q) = %+v, %v; want %+v, %v", tt.method, tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzRouteBedrock(f *testing.F) {
	f.Add("POST", "/guardrail/abc123/version/1/apply")
	f.Add("GET", "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aasync-invoke%2Fabcdefghijkl")
	f.Add("GET", "/async-invoke")
	f.Add("POST", "/model/m/converse")
	f.Add("GET", "/async-invoke/%")
	f.Fuzz(func(t *testing.T, method, p string) {
		r, ok := routeBedrock(method, p)
		if !ok {
			return
		}
		// A bound route survives re-escaping its labels as the SDKs do.
		var again string
		switch r.op {
		case opApplyGuardrail:
			again = "/guardrail/" + uriEncode(r.guardrailID, true) + "/version/" + uriEncode(r.guardrailVersion, true) + "/apply"
		case opGetAsyncInvoke:
			again = "/async-invoke/" + uriEncode(r.invocationARN, true)
		case opStartAsyncInvoke, opListAsyncInvokes:
			again = "/async-invoke"
		default:
			again = "/model/" + uriEncode(r.modelID, true) + p[strings.LastIndex(p, "/"):]
		}
		if r2, ok2 := routeBedrock(method, again); !ok2 || r2 != r {
			t.Fatalf("routeBedrock(%s, %q) = %+v but re-escaped %q gives %+v, %v", method, p, r, again, r2, ok2)
		}
	})
}

func FuzzParseListQuery(f *testing.F) {
	f.Add("maxResults=2&sortOrder=Ascending&statusEquals=InProgress")
	f.Add("submitTimeAfter=2000-01-01T00%3A00%3A00Z&submitTimeBefore=2030-01-01T00%3A00%3A00.5Z")
	f.Add("nextToken=MTIzLjQuYWJj&maxResults=1001")
	f.Add("maxResults=0&maxResults=5")
	f.Add("sortBy=SubmissionTime;x")
	f.Fuzz(func(t *testing.T, raw string) {
		q, e := parseListQuery(raw, testAccount)
		if e != nil {
			if e.status != 400 || e.typ != "ValidationException" {
				t.Fatalf("parseListQuery(%q) error = %v, want a ValidationException", raw, e)
			}
			return
		}
		if q.maxResults < 1 || q.maxResults > maxListResults {
			t.Fatalf("parseListQuery(%q) maxResults = %d", raw, q.maxResults)
		}
		// A token issued for this query is accepted by it, and only by it.
		k := listKey{12345, 6}
		if got, ok := q.parsePageToken(q.pageToken(testAccount, k), testAccount); !ok || got != k {
			t.Fatalf("page token round trip = %v, %v; want %v", got, ok, k)
		}
		if _, ok := q.parsePageToken(q.pageToken("210987654321", k), testAccount); ok {
			t.Fatalf("a token of another account was accepted")
		}
	})
}

// TestBedrockRoutesWire checks routing and query signing on the wire.
func TestBedrockRoutesWire(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice", nil)
	sign := func(method, path string, body []byte) *http.Request {
		return signedRequest(t, method, e.br.URL+path, body, creds, "bedrock", "us-east-1", time.Now())
	}
	tests := []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantType   string
		recorded   bool
	}{
		{"bidirectional stream is unknown", sign("POST", "/model/amazon.nova-sonic-v1:0/invoke-with-bidirectional-stream", []byte(`{}`)), 404, "UnknownOperationException", true},
		{"GET converse", sign("GET", "/model/m/converse", nil), 404, "UnknownOperationException", true},
		{"PUT async-invoke", sign("PUT", "/async-invoke", []byte(`{}`)), 404, "UnknownOperationException", true},
		{"POST to a job", sign("POST", "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aasync-invoke%2Fabcdefghijkl", []byte(`{}`)), 404, "UnknownOperationException", true},
		{"ARN with a raw slash", sign("GET", "/async-invoke/arn:aws:bedrock:us-east-1:123456789012:async-invoke/abcdefghijkl", nil), 404, "UnknownOperationException", true},
		{"GET guardrail", sign("GET", "/guardrail/abc/version/1/apply", nil), 404, "UnknownOperationException", true},
		{"repeated and unsorted query parameters", sign("GET", "/async-invoke?statusEquals=InProgress&maxResults=2&maxResults=1&sortBy=SubmissionTime", nil), 200, "", true},
		{"encoded query values", sign("GET", "/async-invoke?submitTimeAfter=2000-01-01T00%3A00%3A00Z&x=a%20b%2Bc", nil), 200, "", true},
		{"query changed after signing", func() *http.Request {
			r := sign("GET", "/async-invoke?maxResults=2", nil)
			r.URL.RawQuery = "maxResults=3"
			return r
		}(), 403, "InvalidSignatureException", false},
		{"query parameter added after signing", func() *http.Request {
			r := sign("GET", "/async-invoke?maxResults=2", nil)
			r.URL.RawQuery += "&statusEquals=Failed"
			return r
		}(), 403, "InvalidSignatureException", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.fake.Invocations())
			resp, body := do(t, tt.req)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("%s %s = %d, want %d (body %s)", tt.req.Method, tt.req.URL.RequestURI(), resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantType != "" {
				if got := resp.Header.Get("X-Amzn-ErrorType"); !strings.HasPrefix(got, tt.wantType+":") {
					t.Errorf("x-amzn-ErrorType = %q, want %s", got, tt.wantType)
				}
				var msg map[string]string
				if err := json.Unmarshal(body, &msg); err != nil || msg["message"] == "" {
					t.Errorf("error body = %s, want {\"message\":...}", body)
				}
			}
			invs := e.fake.Invocations()
			if n := len(invs) - before; (n == 1) != tt.recorded {
				t.Fatalf("recorded %d invocations, want recorded = %v", n, tt.recorded)
			}
			if tt.recorded {
				inv := invs[len(invs)-1]
				if inv.RequestURI != tt.req.URL.RequestURI() {
					t.Errorf("recorded RequestURI = %q, want %q", inv.RequestURI, tt.req.URL.RequestURI())
				}
				if tt.wantStatus == 404 && inv.Operation != "" {
					t.Errorf("unknown operation recorded as %q, want \"\"", inv.Operation)
				}
			}
		})
	}
	// A repeated parameter counts once, by its first value. (The SDK
	// signer sorts the query it signs, so values arrive sorted.)
	resp, body := do(t, sign("GET", "/async-invoke?maxResults=5&maxResults=0", nil))
	if resp.StatusCode != 400 {
		t.Errorf("ListAsyncInvokes(maxResults=0&maxResults=5) = %d %s, want 400", resp.StatusCode, body)
	}
}

func TestRedactRequestURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/model/m/converse", "/model/m/converse"},
		{"/async-invoke?maxResults=2&nextToken=abc", "/async-invoke?maxResults=2&nextToken=abc"},
		{"/async-invoke?X-Amz-Signature=deadbeef&maxResults=2", "/async-invoke?X-Amz-Signature=REDACTED&maxResults=2"},
		{"/x?x-amz-security-token=tok%2Fen&X-Amz-Credential=AKID%2F20250101", "/x?x-amz-security-token=REDACTED&X-Amz-Credential=AKID%2F20250101"},
		{"/x?X%2DAmz%2DSignature=s", "/x?X%2DAmz%2DSignature=REDACTED"},
	}
	for _, tt := range tests {
		if got := redactRequestURI(tt.in); got != tt.want {
			t.Errorf("redactRequestURI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
