package fakeaws

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// TestBillLines: the emulated bill names a catalogued model as the bill
// does and prices it at the catalogue's on-demand price, on the call's UTC day; an
// unknown model keeps the fake's name, unpriced.
func TestBillLines(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice@acme.org", map[string]string{"team": "ds"})
	client := e.bedrockClient(t, creds)
	const sonnet = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
	for _, m := range []string{sonnet, sonnet, "m"} {
		if _, err := client.Converse(context.Background(), &bedrockruntime.ConverseInput{ModelId: aws.String(m), Messages: userText("hi")}); err != nil {
			t.Fatalf("Converse %s: %v", m, err)
		}
	}
	// The SDK signs with the real clock, which the fake checks, so the
	// calls are made now: the lines are all on today's UTC date.
	invs := e.fake.Invocations()
	day := invs[0].Time.UTC().Truncate(24 * time.Hour)
	if !invs[len(invs)-1].Time.UTC().Truncate(24 * time.Hour).Equal(day) {
		t.Skip("the calls straddled UTC midnight")
	}
	const principal = "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice@acme.org"
	tags := map[string]string{"iamPrincipal/team": "ds"}
	// "hi" bills 1 input token and the fake answers 4 output tokens.
	// Sonnet 4.5 through a global profile: $3 and $15 per million
	// tokens, so 3 picodollars ×1e6 per input token, 15e6 per output.
	line := func(day time.Time, usage string, d pricing.Direction, n int64, cost pricing.Money, priced bool) BillLine {
		return BillLine{Day: day, Account: "123456789012", IAMPrincipal: principal, UsageType: usage, Operation: "Converse",
			Direction: d, UsageAmount: n, Cost: cost, Priced: priced, Tags: tags}
	}
	want := []BillLine{
		line(day, "USE1-Claude4.5Sonnet-input-tokens-cross-region-global", pricing.Input, 2, 2*3_000_000, true),
		line(day, "USE1-Claude4.5Sonnet-output-tokens-cross-region-global", pricing.Output, 8, 8*15_000_000, true),
		line(day, "USE1-m-input-tokens", pricing.Input, 1, 0, false),
		line(day, "USE1-m-output-tokens", pricing.Output, 4, 0, false),
	}
	if diff := cmp.Diff(want, e.fake.BillLines()); diff != "" {
		t.Errorf("BillLines() mismatch (-want +got):\n%s", diff)
	}
}
