package fakeaws

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func guardrailText(texts ...string) []types.GuardrailContentBlock {
	var out []types.GuardrailContentBlock
	for _, s := range texts {
		out = append(out, &types.GuardrailContentBlockMemberText{Value: types.GuardrailTextBlock{Text: aws.String(s)}})
	}
	return out
}

func TestApplyGuardrail(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice@acme.org", map[string]string{"team": "ml"})
	client := e.bedrockClient(t, creds)
	ctx := context.Background()
	const guardrailARN = "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123"
	long := strings.Repeat("a", 2500) // 3 text units

	tests := []struct {
		name        string
		id, version string
		scope       types.GuardrailOutputScope
		content     []types.GuardrailContentBlock
		wantAction  types.GuardrailAction
		wantOutputs []string
		wantUnits   int32
		wantChars   int32
		wantWords   []types.GuardrailCustomWord // nil: no word policy assessment
	}{
		{
			name: "pass", id: "abc123", version: "1", content: guardrailText("hello there"),
			wantAction: types.GuardrailActionNone, wantUnits: 1, wantChars: 11,
		},
		{
			name: "pass, full scope", id: "abc123", version: "DRAFT", scope: types.GuardrailOutputScopeFull, content: guardrailText("hello"),
			wantAction: types.GuardrailActionNone, wantUnits: 1, wantChars: 5,
			wantWords: []types.GuardrailCustomWord{{Match: aws.String("forbidden"), Action: types.GuardrailWordPolicyActionNone, Detected: aws.Bool(false)}},
		},
		{
			name: "blocked word, any case, second block", id: guardrailARN, version: "12345678", content: guardrailText(long, "This is FORBIDDEN!"),
			wantAction: types.GuardrailActionGuardrailIntervened, wantOutputs: []string{GuardrailBlockedMessage}, wantUnits: 4, wantChars: 2518,
			wantWords: []types.GuardrailCustomWord{{Match: aws.String("forbidden"), Action: types.GuardrailWordPolicyActionBlocked, Detected: aws.Bool(true)}},
		},
		{
			name: "word inside another word passes", id: "abc123", version: "1", content: guardrailText("unforbiddenly"),
			wantAction: types.GuardrailActionNone, wantUnits: 1, wantChars: 13,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := client.ApplyGuardrail(ctx, &bedrockruntime.ApplyGuardrailInput{
				GuardrailIdentifier: aws.String(tt.id),
				GuardrailVersion:    aws.String(tt.version),
				Source:              types.GuardrailContentSourceInput,
				Content:             tt.content,
				OutputScope:         tt.scope,
			})
			if err != nil {
				t.Fatalf("ApplyGuardrail error = %v", err)
			}
			if out.Action != tt.wantAction {
				t.Errorf("ApplyGuardrail action = %q, want %q", out.Action, tt.wantAction)
			}
			var outputs []string
			for _, o := range out.Outputs {
				outputs = append(outputs, aws.ToString(o.Text))
			}
			if diff := cmp.Diff(tt.wantOutputs, outputs); diff != "" {
				t.Errorf("ApplyGuardrail outputs mismatch (-want +got):\n%s", diff)
			}
			wantUsage := &types.GuardrailUsage{
				ContentPolicyUnits: aws.Int32(tt.wantUnits), WordPolicyUnits: aws.Int32(tt.wantUnits),
				TopicPolicyUnits: aws.Int32(0), SensitiveInformationPolicyUnits: aws.Int32(0),
				SensitiveInformationPolicyFreeUnits: aws.Int32(0), ContextualGroundingPolicyUnits: aws.Int32(0),
				ContentPolicyImageUnits: aws.Int32(0), AutomatedReasoningPolicyUnits: aws.Int32(0), AutomatedReasoningPolicies: aws.Int32(0),
			}
			if diff := cmp.Diff(wantUsage, out.Usage, cmpopts.IgnoreUnexported(types.GuardrailUsage{})); diff != "" {
				t.Errorf("ApplyGuardrail usage mismatch (-want +got):\n%s", diff)
			}
			if got := aws.ToInt32(out.GuardrailCoverage.TextCharacters.Guarded); got != tt.wantChars {
				t.Errorf("ApplyGuardrail guarded characters = %d, want %d", got, tt.wantChars)
			}
			if len(out.Assessments) != 1 {
				t.Fatalf("ApplyGuardrail returned %d assessments, want 1", len(out.Assessments))
			}
			a := out.Assessments[0]
			var words []types.GuardrailCustomWord
			if a.WordPolicy != nil {
				words = a.WordPolicy.CustomWords
			}
			if diff := cmp.Diff(tt.wantWords, words, cmpopts.IgnoreUnexported(types.GuardrailCustomWord{})); diff != "" {
				t.Errorf("ApplyGuardrail custom words mismatch (-want +got):\n%s", diff)
			}
			if d := a.AppliedGuardrailDetails; d == nil || aws.ToString(d.GuardrailId) != "abc123" || aws.ToString(d.GuardrailArn) != guardrailARN || aws.ToString(d.GuardrailVersion) != tt.version {
				t.Errorf("ApplyGuardrail appliedGuardrailDetails = %+v, want abc123 / %s / %s", d, guardrailARN, tt.version)
			}
		})
	}

	invs := e.fake.Invocations()
	if len(invs) != len(tests) {
		t.Fatalf("Invocations() has %d entries, want %d", len(invs), len(tests))
	}
	for i, inv := range invs {
		want := tests[i].id + ":" + tests[i].version
		if inv.Operation != "ApplyGuardrail" || inv.Guardrail != want || inv.ModelID != "" || inv.Status != 200 ||
			inv.SessionName != "alice@acme.org" || inv.GuardrailTextUnits != int64(tests[i].wantUnits) {
			t.Errorf("Invocations()[%d] = {%s %q %q %d %q units %d}, want {ApplyGuardrail %q \"\" 200 alice@acme.org units %d}",
				i, inv.Operation, inv.Guardrail, inv.ModelID, inv.Status, inv.SessionName, inv.GuardrailTextUnits, want, tests[i].wantUnits)
		}
	}
	wantRows := []BillingRow{{
		IAMPrincipal: "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice@acme.org",
		UsageType:    "USE1-guardrail-text-units",
		UsageAmount:  1 + 1 + 4 + 1,
		Tags:         map[string]string{"iamPrincipal/team": "ml"},
	}}
	if diff := cmp.Diff(wantRows, e.fake.BillingRows()); diff != "" {
		t.Errorf("BillingRows() mismatch (-want +got):\n%s", diff)
	}
}

func TestApplyGuardrailErrors(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "alice", nil))
	ctx := context.Background()
	tests := []struct {
		name, id, version string
		wantCode          string
		wantStatus        int
	}{
		{"missing guardrail", GuardrailMissing, "1", "ResourceNotFoundException", 404},
		{"fault ID", ModelThrottle, "1", "ThrottlingException", 429},
		{"version 0", "abc123", "0", "ValidationException", 400},
		{"version too long", "abc123", "123456789", "ValidationException", 400},
		{"lower-case draft", "abc123", "draft", "ValidationException", 400},
		{"upper-case ID", "ABC123", "1", "ValidationException", 400},
		{"ID with space", "abc 123", "1", "ValidationException", 400},
		{"ARN of another service", "arn:aws:iam::123456789012:guardrail/abc", "1", "ValidationException", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.ApplyGuardrail(ctx, &bedrockruntime.ApplyGuardrailInput{
				GuardrailIdentifier: aws.String(tt.id), GuardrailVersion: aws.String(tt.version),
				Source: types.GuardrailContentSourceOutput, Content: guardrailText("hi"),
			})
			if err == nil {
				t.Fatalf("ApplyGuardrail(%q, %q) succeeded, want %s", tt.id, tt.version, tt.wantCode)
			}
			if code, status := apiError(t, err); code != tt.wantCode || status != tt.wantStatus {
				t.Errorf("ApplyGuardrail(%q, %q) error = %s (HTTP %d), want %s (HTTP %d)", tt.id, tt.version, code, status, tt.wantCode, tt.wantStatus)
			}
		})
	}
	t.Run("missing guardrail is a typed SDK error", func(t *testing.T) {
		_, err := client.ApplyGuardrail(ctx, &bedrockruntime.ApplyGuardrailInput{
			GuardrailIdentifier: aws.String(GuardrailMissing), GuardrailVersion: aws.String("DRAFT"),
			Source: types.GuardrailContentSourceInput, Content: guardrailText("hi"),
		})
		var rnf *types.ResourceNotFoundException
		if !errors.As(err, &rnf) {
			t.Errorf("ApplyGuardrail error = %v (%T), want *types.ResourceNotFoundException", err, err)
		}
	})

	// Bodies the SDK would not send.
	creds := e.session(t, "bob", nil)
	for _, tt := range []struct{ name, body string }{
		{"no source", `{"content":[{"text":{"text":"hi"}}]}`},
		{"bad source", `{"source":"BOTH","content":[{"text":{"text":"hi"}}]}`},
		{"no content", `{"source":"INPUT"}`},
		{"empty block", `{"source":"INPUT","content":[{}]}`},
		{"text and image", `{"source":"INPUT","content":[{"text":{"text":"hi"},"image":{"format":"png","source":{"bytes":"AA=="}}}]}`},
		{"text without text", `{"source":"INPUT","content":[{"text":{}}]}`},
		{"bad qualifier", `{"source":"INPUT","content":[{"text":{"text":"hi","qualifiers":["prompt"]}}]}`},
		{"bad image format", `{"source":"INPUT","content":[{"image":{"format":"gif","source":{"bytes":"AA=="}}}]}`},
		{"bad output scope", `{"source":"INPUT","content":[],"outputScope":"ALL"}`},
		{"not JSON", `{"source":`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, signedRequest(t, "POST", e.br.URL+"/guardrail/abc123/version/1/apply", []byte(tt.body), creds, "bedrock", "us-east-1", time.Now()))
			if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("X-Amzn-Errortype"), "ValidationException:") {
				t.Errorf("ApplyGuardrail(%s) = %d %q %s, want 400 ValidationException", tt.body, resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), body)
			}
		})
	}

	t.Run("image counts image units", func(t *testing.T) {
		resp, body := do(t, signedRequest(t, "POST", e.br.URL+"/guardrail/abc123/version/1/apply",
			[]byte(`{"source":"INPUT","content":[{"image":{"format":"png","source":{"bytes":"iVBORw=="}}}]}`), creds, "bedrock", "us-east-1", time.Now()))
		var got struct {
			Usage struct {
				ContentPolicyImageUnits int `json:"contentPolicyImageUnits"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 || got.Usage.ContentPolicyImageUnits != 1 {
			t.Errorf("ApplyGuardrail(image) = %d %s, want 200 with contentPolicyImageUnits 1", resp.StatusCode, body)
		}
	})

	for _, inv := range e.fake.Invocations() {
		if inv.Status == 200 {
			continue
		}
		if inv.Operation != "ApplyGuardrail" || inv.Guardrail == "" {
			t.Errorf("failed call recorded as %q guardrail %q, want ApplyGuardrail with its guardrail", inv.Operation, inv.Guardrail)
		}
	}
	if rows := e.fake.BillingRows(); len(rows) != 0 {
		t.Errorf("BillingRows() = %v, want none: failed calls and image-only checks bill no text units", rows)
	}
}
