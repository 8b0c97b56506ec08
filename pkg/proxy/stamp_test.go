package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

var stampSeeds = []string{
	`{}`,
	` { } `,
	`{"messages":[]}`,
	`{"messages":[{"role":"user","content":[{"text":"hi \"there\" {not a brace}"}]}],"inferenceConfig":{"maxTokens":5}}`,
	`{"requestMetadata":{"project":"x"},"messages":[]}`,
	`{"messages":[],"requestMetadata":null}`,
	`{"request\u004detadata":{"gateway:user":"mallory"}}`,
	`{"requestMetadata":{"Gateway:Tenant":"globex","p":"1"},"messages":[]}`,
	`{"messages":[] , "requestMetadata" : {"\u0067ateway:tenant":"globex"} }`,
	`{"requestMetadata":{},"a":1}`,
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
		if diff := cmp.Diff(md, gatewayKeys(meta)); diff != "" {
			t.Fatalf("stampConverse(%q): gateway keys (-want +got):\n%s", body, diff)
		}

		// Stamping disabled: the caller's gateway keys go, nothing is added.
		out, err = stampConverse(body, nil)
		if err != nil {
			t.Fatalf("stampConverse(%q, nil) error %v after stamping succeeded", body, err)
		}
		got = nil
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("stampConverse(%q, nil) = %q: invalid JSON", body, out)
		}
		for k, v := range in {
			if k == "requestMetadata" {
				continue
			}
			if !bytes.Equal(got[k], v) {
				t.Fatalf("stampConverse(%q, nil): member %q changed: %q -> %q", body, k, v, got[k])
			}
		}
		meta = nil
		if raw, ok := got["requestMetadata"]; ok {
			if err := json.Unmarshal(raw, &meta); err != nil || (meta != nil && len(meta) == 0) {
				t.Fatalf("stampConverse(%q, nil): requestMetadata = %s", body, raw)
			}
		}
		if keys := gatewayKeys(meta); len(keys) != 0 {
			t.Fatalf("stampConverse(%q, nil) kept gateway keys %v", body, keys)
		}
	})
}

// forgedMetadata is what mallory-minded callers send: the gateway's keys in
// any case, with a leading blank, next to a key of their own.
var forgedMetadata = map[string]string{
	"gateway:tenant":      "globex",
	"Gateway:Tenant":      "globex",
	"GATEWAY:cost-center": "99999",
	" gateway:user":       "mallory",
	"gateway:anything":    "x",
	"project":             "x",
}

// gatewayKeys returns the keys of md in the gateway's namespace.
func gatewayKeys(md map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range md {
		if isGatewayKey(k) {
			out[k] = v
		}
	}
	return out
}

// TestForgedMetadataNeverReachesBedrock: alice (no tenant) cannot put
// gateway:* keys into Bedrock's request metadata on any operation that
// carries it, whether the gateway stamps its own or not; her other keys
// pass. The metadata header, forwarded on every route, loses its gateway
// keys where it is not stamped too.
func TestForgedMetadataNeverReachesBedrock(t *testing.T) {
	const invokeBody = `{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	forged, _ := json.Marshal(forgedMetadata)
	onlyForged := `{"gateway:tenant":"globex"}`
	converseWith := func(md string) string {
		return `{"messages":[{"role":"user","content":[{"text":"hi"}]}],"requestMetadata":` + md + `}`
	}
	type call struct{ path, body, header string }
	calls := []call{
		{"/model/amazon.nova-lite-v1:0/converse", converseWith(string(forged)), ""},
		{"/model/amazon.nova-lite-v1:0/converse-stream", converseWith(string(forged)), ""},
		{"/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", invokeBody, string(forged)},
		{"/model/anthropic.claude-3-haiku-20240307-v1:0/invoke-with-response-stream", invokeBody, string(forged)},
		{"/model/amazon.nova-lite-v1:0/converse", converseWith(onlyForged), ""},
		{"/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", invokeBody, onlyForged},
	}
	for _, stamped := range []bool{true, false} {
		t.Run(fmt.Sprintf("stamped=%v", stamped), func(t *testing.T) {
			h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.DisableMetadataStamp = !stamped })
			for _, c := range calls {
				header := authed()
				if c.header != "" {
					header.Set(requestMetadataHeader, c.header)
				} else {
					header.Set(requestMetadataHeader, string(forged))
				}
				resp := h.post(t, c.path, c.body, header)
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d %s", c.path, resp.StatusCode, b)
				}
			}
			invs := h.fake.Invocations()
			if len(invs) != len(calls) {
				t.Fatalf("invocations = %d, want %d", len(invs), len(calls))
			}
			want := map[string]string{}
			if stamped {
				want = map[string]string{MetadataUser: "alice@acme.org", MetadataSession: "alice@acme.org", MetadataTeam: "ds"}
			}
			for i, inv := range invs {
				got := inv.RequestMetadata
				if diff := cmp.Diff(want, gatewayKeys(got)); diff != "" {
					t.Errorf("%s (call %d): gateway keys at Bedrock (-want +got):\n%s", inv.Operation, i, diff)
				}
				if wantProject := i < 4; (got["project"] == "x") != wantProject {
					t.Errorf("%s (call %d): caller's own key project = %q, want kept", inv.Operation, i, got["project"])
				}
				if calls[i].header == "" {
					var inHeader map[string]string
					if err := json.Unmarshal([]byte(inv.Headers.Get(requestMetadataHeader)), &inHeader); err != nil {
						t.Fatalf("%s (call %d): forwarded %s = %q: %v", inv.Operation, i, requestMetadataHeader, inv.Headers.Get(requestMetadataHeader), err)
					}
					if keys := gatewayKeys(inHeader); len(keys) != 0 || inHeader["project"] != "x" {
						t.Errorf("%s (call %d): forwarded %s = %v, want the caller's keys without gateway ones", inv.Operation, i, requestMetadataHeader, inHeader)
					}
				}
			}
		})
	}
}

// TestStampRemovesGatewayKeys: with the gateway's metadata or without it
// (stamping disabled), every caller key in the gateway: namespace is
// removed; a requestMetadata left empty is removed, since Bedrock refuses
// an empty one.
func TestStampRemovesGatewayKeys(t *testing.T) {
	md := map[string]string{MetadataUser: "alice@acme.org"}
	tests := []struct {
		in   string
		md   map[string]string
		want string
	}{
		{`{"requestMetadata":{"GATEWAY:Tenant":"globex","gateway:team":"x","p":"1"},"messages":[]}`, md,
			`{"requestMetadata":{"gateway:user":"alice@acme.org","p":"1"},"messages":[]}`},
		{`{"requestMetadata":{"GATEWAY:Tenant":"globex","p":"1"},"messages":[]}`, nil,
			`{"requestMetadata":{"p":"1"},"messages":[]}`},
		{`{"requestMetadata":{"gateway:tenant":"globex"},"messages":[]}`, nil, `{"messages":[]}`},
		{`{"messages":[] , "requestMetadata" : {"gateway:tenant":"globex"} }`, nil, `{"messages":[] }`},
		{`{"a":1,"requestMetadata":{"gateway:tenant":"globex"},"b":2}`, nil, `{"a":1,"b":2}`},
		{` { "requestMetadata":{"\u0067ateway:tenant":"globex"} } `, nil, ` {  } `},
		{`{"requestMetadata":{},"messages":[]}`, nil, `{"messages":[]}`},
		{`{"requestMetadata":null,"messages":[]}`, nil, `{"requestMetadata":null,"messages":[]}`},
		{`{"messages":[]}`, nil, `{"messages":[]}`},
	}
	for _, tt := range tests {
		out, err := stampConverse([]byte(tt.in), tt.md)
		if err != nil {
			t.Errorf("stampConverse(%s, %v) error %v", tt.in, tt.md, err)
			continue
		}
		if string(out) != tt.want {
			t.Errorf("stampConverse(%s, %v) = %s, want %s", tt.in, tt.md, out, tt.want)
		}
	}
	for _, tt := range []struct {
		in   string
		md   map[string]string
		want string // "" = no header
	}{
		{`{"Gateway:Tenant":"globex","ticket":"42"}`, map[string]string{MetadataTeam: "ds"}, `{"gateway:team":"ds","ticket":"42"}`},
		{`{"Gateway:Tenant":"globex","ticket":"42"}`, nil, `{"ticket":"42"}`},
		{`{"gateway:tenant":"globex"}`, nil, ""},
	} {
		h := http.Header{}
		h.Set(requestMetadataHeader, tt.in)
		if err := stampInvoke(h, tt.md); err != nil {
			t.Errorf("stampInvoke(%s, %v) error %v", tt.in, tt.md, err)
			continue
		}
		if got := h.Get(requestMetadataHeader); got != tt.want || (tt.want == "" && len(h.Values(requestMetadataHeader)) != 0) {
			t.Errorf("stampInvoke(%s, %v) header = %q, want %q", tt.in, tt.md, got, tt.want)
		}
	}
}

// FuzzMetadataJSON: appendMetadataJSON writes what json.Marshal writes
// for the same map, byte for byte, for any keys and values.
func FuzzMetadataJSON(f *testing.F) {
	f.Add("gateway:user", "alice@example.com", "trace", "a\tb\nc\"d\\e<f>&\x01\x7f")
	f.Add("gateway:team", "data-science", "k", "\b\f\v\r")
	f.Add("gateway:session", "tenant+alice=x,y", "ключ", "значение\u2028")
	f.Add("", "", "z", "\xff\xfe invalid utf-8")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		md := map[string]string{k1: v1, k2: v2, MetadataSession: "s"}
		want, err := json.Marshal(md)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMetadataJSON(nil, md); !bytes.Equal(got, want) {
			t.Fatalf("appendMetadataJSON(%q) = %s, json.Marshal = %s", md, got, want)
		}
	})
}
