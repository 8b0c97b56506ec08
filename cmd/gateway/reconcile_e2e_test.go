package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/cur"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// assertReconciles writes the fake's bill as a CUR 2.0 export (Parquet,
// as AWS writes Data Exports) and runs `gateway reconcile` on it and the
// ledger: the two must agree (exit 0). Then it checks that reconcile
// notices what it is for: a line billed to a principal outside the
// gateway (exit 1, naming it), and the bill without the session tags, as
// before the cost allocation tags are activated (exit 1, the missing tags
// reported).
func assertReconciles(t *testing.T, fake *fakeaws.Server, ledger string) {
	t.Helper()
	lines := fake.CURLines()
	if len(lines) == 0 {
		t.Fatal("the emulated bill is empty")
	}
	dir := t.TempDir()
	write := func(name string, lines []cur.Line) string {
		var b bytes.Buffer
		if err := cur.WriteParquet(&b, lines); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// The parts of the JSON report the checks read.
	type report struct {
		Summary struct {
			BedrockLines int `json:"bedrock_lines"`
		} `json:"summary"`
		Bypasses []struct {
			Principal string `json:"principal"`
		} `json:"bypasses"`
		MissingTags []json.RawMessage `json:"missing_tags"`
		Mismatches  []json.RawMessage `json:"mismatches"`
	}
	reconcile := func(bill string) (int, report, string) {
		t.Helper()
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{"reconcile", "--cur", bill, "--ledger", ledger, "--bill-lag", "0", "--format", "json"},
			testProcess(&out, &errb))
		code := 0
		var ec exitCode
		if errors.As(err, &ec) {
			code = int(ec)
		} else if err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		var r report
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("reconcile printed %q (stderr %q): %v", out.String(), errb.String(), err)
		}
		return code, r, out.String()
	}

	code, r, out := reconcile(write("bill.parquet", lines))
	if code != 0 || len(r.Bypasses)+len(r.MissingTags)+len(r.Mismatches) > 0 {
		t.Fatalf("reconcile of the fake's bill against the ledger: exit %d, want 0:\n%s", code, out)
	}
	if r.Summary.BedrockLines != len(lines) {
		t.Fatalf("reconcile compared nothing:\n%s", out)
	}

	const outsider = "arn:aws:iam::123456789012:user/mallory"
	bypass := append([]cur.Line(nil), lines...)
	extra := lines[0]
	extra.Principal, extra.Tags = outsider, nil
	extra.UsageAmount, extra.UnblendedCost = cur.QuantityOf(1000), 3*pricing.Dollar/1000
	bypass = append(bypass, extra)
	code, r, out = reconcile(write("bypass.parquet", bypass))
	if code != 1 || len(r.Bypasses) != 1 || r.Bypasses[0].Principal != outsider || !strings.Contains(out, outsider) {
		t.Errorf("reconcile with a line billed to %s: exit %d, bypasses %v; want exit 1 naming it:\n%s", outsider, code, r.Bypasses, out)
	}

	untagged := append([]cur.Line(nil), lines...)
	for i := range untagged {
		untagged[i].Tags = nil
	}
	code, r, out = reconcile(write("untagged.parquet", untagged))
	if code != 1 || len(r.MissingTags) == 0 || !strings.Contains(out, "iamPrincipal/team") {
		t.Errorf("reconcile of a bill without tags: exit %d, missing tags %s; want exit 1 reporting iamPrincipal/team:\n%s", code, r.MissingTags, out)
	}
}
