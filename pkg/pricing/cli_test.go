package pricing

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	noConfig := func(string) (Config, error) { return Config{}, errors.New("no config here") }
	var out, errb bytes.Buffer
	if code := Run([]string{"--region", "us-east-1", "--model", "anthropic.claude-sonnet-4-5*"}, &out, &errb, noConfig); code != 0 {
		t.Fatalf("Run = %d, stderr %s", code, errb.String())
	}
	// Sonnet 4.5 in us-east-1 through a global profile: $3 in, $15 out.
	if !strings.Contains(out.String(), "anthropic.claude-sonnet-4-5-20250929-v1:0") || !strings.Contains(out.String(), "global") ||
		strings.Contains(out.String(), "amazon.nova") || strings.Contains(out.String(), "eu-west-1") {
		t.Errorf("table:\n%s", out.String())
	}

	out.Reset()
	over := func(string) (Config, error) {
		return Config{Prices: []PriceOverride{{Model: "acme.custom-v1", Input: "1.5", Output: "2", UsageName: "AcmeCustom"}}}, nil
	}
	if code := Run([]string{"--config", "gw.yaml", "--model", "acme.*", "--format", "json"}, &out, &errb, over); code != 0 {
		t.Fatalf("Run --config = %d, stderr %s", code, errb.String())
	}
	var got struct {
		AsOf   string `json:"as_of"`
		Prices []struct {
			Model, Input string
			Source       string
		} `json:"prices"`
	}
	// A model added by its base ID is priced in every scope.
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.AsOf == "" || len(got.Prices) != 3 ||
		got.Prices[0].Model != "acme.custom-v1" || got.Prices[0].Source != ConfigSource {
		t.Errorf("json = %s (%v)", out.String(), err)
	}
	var in struct {
		Prices []struct {
			Input string `json:"input_per_mtok"`
		} `json:"prices"`
	}
	if json.Unmarshal(out.Bytes(), &in); len(in.Prices) != 3 || in.Prices[0].Input != "1.5" {
		t.Errorf("input per million = %+v, want 1.5 in each scope", in.Prices)
	}

	for _, args := range [][]string{{"--format", "xml"}, {"--model", "["}, {"extra"}, {"--config", "gw.yaml"}} {
		errb.Reset()
		if code := Run(args, &out, &errb, noConfig); code != 2 || errb.Len() == 0 {
			t.Errorf("Run(%q) = %d with stderr %q, want 2 and a reason", args, code, errb.String())
		}
	}
}
