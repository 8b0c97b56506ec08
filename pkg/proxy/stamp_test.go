package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var stampSeeds = []string{
	`{}`,
	` { } `,
	`{"messages":[]}`,
	`{"messages":[{"role":"user","content":[{"text":"hi \"there\" {not a brace}"}]}],"inferenceConfig":{"maxTokens":5}}`,
	`{"requestMetadata":{"project":"x"},"messages":[]}`,
	`{"messages":[],"requestMetadata":null}`,
	`{"request\u004detadata":{"gateway:user":"mallory"}}`,
	`{"requestMetadata":{"a":"1"},"requestMetadata":{"b":"2"}}`,
	`{"requestMetadata":{"a":1}}`,
	`{"a":[1,2,{"b":[true,false,null]}],"c":-1.5e3}`,
	`[]`,
	`"x"`,
	`{"a":}`,
	`{"a":1,}`,
	`{"a":1}x`,
	``,
}

func TestStampConverse(t *testing.T) {
	md := map[string]string{MetadataUser: "alice@acme.org"}
	tests := []struct {
		in      string
		want    map[string]string // requestMetadata after stamping; nil = error
		members []string          // other top-level members that must survive
	}{
		{`{}`, map[string]string{MetadataUser: "alice@acme.org"}, nil},
		{`{"messages":[{"role":"user"}]}`, map[string]string{MetadataUser: "alice@acme.org"}, []string{"messages"}},
		{`{"requestMetadata":{"project":"x","gateway:user":"mallory"},"system":[]}`, map[string]string{MetadataUser: "alice@acme.org", "project": "x"}, []string{"system"}},
		{`{"request\u004detadata":{"gateway:user":"mallory"}}`, map[string]string{MetadataUser: "alice@acme.org"}, nil},
		{`{"requestMetadata":null}`, map[string]string{MetadataUser: "alice@acme.org"}, nil},
		{`{"requestMetadata":{"a":"1"},"requestMetadata":{"b":"2"}}`, nil, nil},
		{`{"requestMetadata":{"a":1}}`, nil, nil},
		{`[]`, nil, nil},
		{`{"a":1}x`, nil, nil},
	}
	for _, tt := range tests {
		out, err := stampConverse([]byte(tt.in), md)
		if tt.want == nil {
			if err == nil {
				t.Errorf("stampConverse(%s) = %s, want an error", tt.in, out)
			}
			continue
		}
		if err != nil {
			t.Errorf("stampConverse(%s) error %v", tt.in, err)
			continue
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("stampConverse(%s) = %s: not JSON: %v", tt.in, out, err)
		}
		var got map[string]string
		json.Unmarshal(doc["requestMetadata"], &got)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("stampConverse(%s) requestMetadata (-want +got):\n%s", tt.in, diff)
		}
		for _, m := range tt.members {
			if _, ok := doc[m]; !ok {
				t.Errorf("stampConverse(%s) lost member %q: %s", tt.in, m, out)
			}
		}
	}
}

func TestStampInvoke(t *testing.T) {
	h := http.Header{}
	h.Set(requestMetadataHeader, `{"ticket":"42","gateway:team":"forged"}`)
	if err := stampInvoke(h, map[string]string{MetadataTeam: "ds"}); err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	json.Unmarshal([]byte(h.Get(requestMetadataHeader)), &got)
	if diff := cmp.Diff(map[string]string{"ticket": "42", MetadataTeam: "ds"}, got); diff != "" {
		t.Errorf("header metadata (-want +got):\n%s", diff)
	}
	long := http.Header{}
	long.Set(requestMetadataHeader, `{"a":"`+strings.Repeat("x", 8600)+`"}`)
	if err := stampInvoke(long, map[string]string{MetadataTeam: "ds"}); err == nil {
		t.Error("an over-long header was accepted")
	}
}

// FuzzStampConverse: for any valid JSON object without a duplicate
// requestMetadata, stamping succeeds, keeps every other member byte for
// byte, and the gateway's keys win; whatever the input, it never panics
// and never produces invalid JSON from valid JSON.
func FuzzStampConverse(f *testing.F) {
	for _, s := range stampSeeds {
		f.Add([]byte(s))
	}
	md := map[string]string{MetadataUser: "alice@acme.org", MetadataSession: "alice@acme.org"}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := stampConverse(body, md)
		var in map[string]json.RawMessage
		if !json.Valid(body) || json.Unmarshal(body, &in) != nil || in == nil {
			return // invalid input: an error or a pass-through for Bedrock to refuse
		}
		if err != nil {
			if strings.Contains(err.Error(), "twice") || strings.Contains(err.Error(), "requestMetadata") || strings.Contains(err.Error(), "entries") {
				return
			}
			t.Fatalf("stampConverse(%q) error %v on a valid object", body, err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("stampConverse(%q) = %q: invalid JSON", body, out)
		}
		for k, v := range in {
			if k == "requestMetadata" {
				continue
			}
			if !bytes.Equal(got[k], v) {
				t.Fatalf("member %q changed: %q -> %q", k, v, got[k])
			}
		}
		var meta map[string]string
		if err := json.Unmarshal(got["requestMetadata"], &meta); err != nil || meta[MetadataUser] != "alice@acme.org" {
			t.Fatalf("requestMetadata = %s", got["requestMetadata"])
		}
	})
}
