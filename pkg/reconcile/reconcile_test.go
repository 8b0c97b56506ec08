package reconcile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/cur"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// TestRunBadInput: every problem with the flags is reported at once,
// and a file that cannot be read is named; both exit 2.
func TestRunBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bill.csv")
	if err := os.WriteFile(bad, []byte("not,a,cur\n1,2,3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ledger := filepath.Join(dir, "usage.jsonl")
	if err := os.WriteFile(ledger, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{nil, []string{"--cur: at least one", "--ledger: at least one"}},
		{[]string{"--cur", bad, "--ledger", ledger, "--format", "xml", "--cost-tolerance", "1e-3", "--token-tolerance", "-1"},
			[]string{"--format", "--cost-tolerance", "token tolerance"}},
		{[]string{"--cur", bad, "--ledger", ledger}, []string{"bill.csv", "line_item_iam_principal"}},
		{[]string{"--cur", bad, "--ledger", filepath.Join(dir, "missing.jsonl")}, []string{"bill.csv"}},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if code := Run(tt.args, &out, &errb); code != cur.ExitBadInput {
			t.Errorf("Run(%q) = %d, want %d; stderr %s", tt.args, code, cur.ExitBadInput, errb.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("Run(%q) stderr %q lacks %q", tt.args, errb.String(), w)
			}
		}
	}
}

// TestExpectation: ledger records become what the bill should say: per
// session principal, usage type and UTC day, with the session tags as
// the bill keys them; CountTokens, records without tokens, without a
// region or without a session are not billed usage.
func TestExpectation(t *testing.T) {
	e := newExpectation(pricing.Default(), tenancy.DefaultTagKeys())
	day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	rec := func(op, model string, at time.Duration, in, out int64) *usage.Record {
		return &usage.Record{Time: day.Add(at), Operation: op, Model: model, Region: "us-east-1", Team: "ds", CostCenter: "42",
			RoleARN: "arn:aws:iam::123456789012:role/path/BedrockRole", SessionName: "alice", Tokens: usage.Tokens{Input: in, Output: out}}
	}
	const sonnet = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
	e.add(rec("Converse", sonnet, time.Hour, 100, 10))
	e.add(rec("ConverseStream", sonnet, 2*time.Hour, 50, 0))
	e.add(rec("Converse", sonnet, 25*time.Hour, 1, 1)) // the next day
	e.add(rec("CountTokens", sonnet, time.Hour, 500, 0))
	e.add(rec("Converse", sonnet, time.Hour, 0, 0))
	noRegion := rec("Converse", sonnet, time.Hour, 5, 5)
	noRegion.Region = ""
	e.add(noRegion)
	noSession := rec("Converse", sonnet, time.Hour, 5, 5)
	noSession.SessionName = ""
	e.add(noSession)

	g := e.groups()
	if len(g) != 4 {
		t.Fatalf("%d groups, want 4: %+v", len(g), g)
	}
	first := g[0]
	wantTags := map[string]string{"iamPrincipal/team": "ds", "iamPrincipal/cost-center": "42"}
	if first.Principal != "arn:aws:sts::123456789012:assumed-role/BedrockRole/alice" ||
		first.UsageType != "USE1-Claude4.5Sonnet-input-tokens-cross-region-global" || !first.Day.Equal(day) ||
		first.Amount != 150 || !first.CostKnown || first.Cost != 150*3_000_000 || !first.LastSeen.Equal(day.Add(2*time.Hour)) ||
		len(first.Tags) != 2 || first.Tags["iamPrincipal/team"] != wantTags["iamPrincipal/team"] || first.Tags["iamPrincipal/cost-center"] != "42" {
		t.Errorf("first group = %+v", first)
	}
	if w := e.warnings(); len(w) != 2 {
		t.Errorf("warnings = %q, want one for the record without a region and one without a session", w)
	}
}
