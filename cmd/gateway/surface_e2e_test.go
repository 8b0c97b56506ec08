package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	brtypes "github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// TestEndToEndEveryRouteAndLedger drives every forwarded operation with the
// real SDK, for two users, then checks the usage ledger against the fake's
// bill: token totals per session must match exactly.
func TestEndToEndEveryRouteAndLedger(t *testing.T) {
	e := startEnv(t, alice, bob)
	ctx := context.Background()
	msgs := func(text string) []brtypes.Message {
		return []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{&brtypes.ContentBlockMemberText{Value: text}}}}
	}
	const claude = "anthropic.claude-3-5-haiku-20241022-v1:0"
	anthropic := func(text string) []byte {
		return []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"` + text + `"}]}`)
	}

	for n, u := range []devUser{alice, bob} {
		c := e.sdk(t, u.user)
		words := strings.Repeat("word ", 3+n*5)
		if _, err := c.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("amazon.nova-lite-v1:0"), Messages: msgs(words),
			RequestMetadata: map[string]string{"gateway:user": "mallory", "app": "e2e"}}); err != nil {
			t.Fatalf("Converse: %v", err)
		}
		// A prompt with a cache point, twice: a cache write, then a read.
		for range 2 {
			cached := []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{
				&brtypes.ContentBlockMemberText{Value: "a long shared context " + u.user},
				&brtypes.ContentBlockMemberCachePoint{Value: brtypes.CachePointBlock{Type: brtypes.CachePointTypeDefault}},
				&brtypes.ContentBlockMemberText{Value: "question"},
			}}}
			if _, err := c.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String(claude), Messages: cached}); err != nil {
				t.Fatalf("Converse with a cache point: %v", err)
			}
		}
		cs, err := c.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(claude), Messages: msgs(words + "stream")})
		if err != nil {
			t.Fatalf("ConverseStream: %v", err)
		}
		for range cs.GetStream().Events() {
		}
		cs.GetStream().Close()
		if _, err := c.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(claude), Body: anthropic(words)}); err != nil {
			t.Fatalf("InvokeModel: %v", err)
		}
		is, err := c.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{ModelId: aws.String(claude), Body: anthropic(words + "more")})
		if err != nil {
			t.Fatalf("InvokeModelWithResponseStream: %v", err)
		}
		for range is.GetStream().Events() {
		}
		is.GetStream().Close()
		if _, err := c.CountTokens(ctx, &bedrockruntime.CountTokensInput{ModelId: aws.String(claude),
			Input: &brtypes.CountTokensInputMemberConverse{Value: brtypes.ConverseTokensRequest{Messages: msgs(words)}}}); err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
		g, err := c.ApplyGuardrail(ctx, &bedrockruntime.ApplyGuardrailInput{
			GuardrailIdentifier: aws.String("gr0abc123"), GuardrailVersion: aws.String("DRAFT"), Source: brtypes.GuardrailContentSourceInput,
			Content: []brtypes.GuardrailContentBlock{&brtypes.GuardrailContentBlockMemberText{Value: brtypes.GuardrailTextBlock{Text: aws.String("this is forbidden")}}},
		})
		if err != nil {
			t.Fatalf("ApplyGuardrail: %v", err)
		}
		if g.Action != brtypes.GuardrailActionGuardrailIntervened {
			t.Errorf("ApplyGuardrail action = %v, want GUARDRAIL_INTERVENED", g.Action)
		}
		start, err := c.StartAsyncInvoke(ctx, &bedrockruntime.StartAsyncInvokeInput{
			ModelId:          aws.String("amazon.nova-reel-v1:0"),
			ModelInput:       document.NewLazyDocument(map[string]any{"taskType": "TEXT_VIDEO", "textToVideoParams": map[string]any{"text": "a cat"}}),
			OutputDataConfig: &brtypes.AsyncInvokeOutputDataConfigMemberS3OutputDataConfig{Value: brtypes.AsyncInvokeS3OutputDataConfig{S3Uri: aws.String("s3://bucket/out/")}},
		})
		if err != nil {
			t.Fatalf("StartAsyncInvoke: %v", err)
		}
		got, err := c.GetAsyncInvoke(ctx, &bedrockruntime.GetAsyncInvokeInput{InvocationArn: start.InvocationArn})
		if err != nil {
			t.Fatalf("GetAsyncInvoke: %v", err)
		}
		if aws.ToString(got.InvocationArn) != aws.ToString(start.InvocationArn) {
			t.Errorf("GetAsyncInvoke ARN = %q, want %q", aws.ToString(got.InvocationArn), aws.ToString(start.InvocationArn))
		}
		list, err := c.ListAsyncInvokes(ctx, &bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(10), SortOrder: brtypes.SortOrderDescending})
		if err != nil {
			t.Fatalf("ListAsyncInvokes: %v", err)
		}
		// Each caller sees its own job only, never the other's.
		if n := len(list.AsyncInvokeSummaries); n != 1 || aws.ToString(list.AsyncInvokeSummaries[0].InvocationArn) != aws.ToString(start.InvocationArn) {
			t.Errorf("ListAsyncInvokes as %s holds %d jobs, want only its own %s", u.user, n, aws.ToString(start.InvocationArn))
		}
	}

	ops := map[string]bool{}
	kept := 0 // Converse calls whose caller metadata survived stamping
	for _, inv := range e.fake.Invocations() {
		ops[inv.Operation] = true
		who := strings.TrimPrefix(inv.PrincipalARN, "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/")
		if who != alice.user && who != bob.user {
			t.Errorf("%s billed to %q", inv.Operation, inv.PrincipalARN)
		}
		if inv.Operation == "Converse" {
			if inv.RequestMetadata["gateway:user"] != who {
				t.Errorf("Converse request metadata = %v, want gateway:user=%s", inv.RequestMetadata, who)
			}
			if inv.RequestMetadata["app"] == "e2e" {
				kept++
			}
		}
		if inv.Operation == "InvokeModel" && inv.RequestMetadata["gateway:session"] != who {
			t.Errorf("InvokeModel request metadata = %v", inv.RequestMetadata)
		}
	}
	if kept != 2 {
		t.Errorf("caller's own request metadata kept on %d Converse calls, want 2", kept)
	}
	for _, op := range []string{"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream", "CountTokens",
		"ApplyGuardrail", "StartAsyncInvoke", "GetAsyncInvoke", "ListAsyncInvokes"} {
		if !ops[op] {
			t.Errorf("no %s reached Bedrock", op)
		}
	}

	// The ledger, read after a clean shutdown, against the bill.
	e.stop()
	ledger := map[string]usage.Tokens{}
	recs := readLedger(t, e.ledger)
	lines := len(recs)
	for _, r := range recs {
		if r.Operation == "CountTokens" { // an estimate, not billed
			continue
		}
		ledger["arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/"+r.SessionName] =
			ledger["arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/"+r.SessionName].Add(r.Tokens)
	}
	if lines != 22 {
		t.Errorf("ledger has %d records for 22 requests", lines)
	}
	bill := billedTokens(e.fake.BillingRows())
	if len(bill) != 2 {
		t.Fatalf("bill has %d principals: %v", len(bill), bill)
	}
	for who, tok := range bill {
		if tok.CacheRead == 0 || tok.CacheWrite == 0 {
			t.Errorf("%s: no cache tokens billed (%+v); the run should cover them", who, tok)
		}
	}
	if diff := cmp.Diff(bill, ledger); diff != "" {
		t.Errorf("ledger token totals per session differ from the bill (-bill +ledger):\n%s", diff)
	}
	assertReconciles(t, e.fake, e.ledger)
}

// billedTokens sums the emulated bill's token rows per principal; other
// usage types (guardrail units) are not tokens.
func billedTokens(rows []fakeaws.BillingRow) map[string]usage.Tokens {
	bill := map[string]usage.Tokens{}
	for _, row := range rows {
		t := bill[row.IAMPrincipal]
		switch {
		case strings.HasSuffix(row.UsageType, "-cache-read-input-tokens"):
			t.CacheRead += row.UsageAmount
		case strings.HasSuffix(row.UsageType, "-cache-write-input-tokens"):
			t.CacheWrite += row.UsageAmount
		case strings.HasSuffix(row.UsageType, "-input-tokens"):
			t.Input += row.UsageAmount
		case strings.HasSuffix(row.UsageType, "-output-tokens"):
			t.Output += row.UsageAmount
		default:
			continue
		}
		bill[row.IAMPrincipal] = t
	}
	return bill
}
