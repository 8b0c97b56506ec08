package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/pkg/usage"
)

func build(t *testing.T, o Options, recs ...usage.Record) *Report {
	t.Helper()
	r, err := Build(seq(recs...), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// writerFixture has a priced team, a team with an unpriced model besides a
// priced one, a team with nothing priced, and a request with no team.
func writerFixture() []usage.Record {
	return []usage.Record{
		rec("alice", "ml", "sonnet", t0, 200, 1000, 100, money("0.0045")),
		rec("bob", "ml", "sonnet", t0, 200, 2000, 200, money("0.009")),
		rec("carol", "web", "sonnet", t0, 200, 100, 10, money("0.00045")),
		rec("carol", "web", "new-model", t0, 200, 50, 5, nil),
		rec("dave", "lab", "new-model", t0, 200, 70, 7, nil),
		rec("", "", "", t0, 401, 0, 0, money("0")),
	}
}

func TestWriteTable(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		recs []usage.Record
		want string
	}{
		{
			name: "grouped, with unpriced rows",
			o:    Options{GroupBy: []string{Team, Model}},
			recs: writerFixture(),
			want: `
TEAM    MODEL      REQUESTS  ERRORS  INPUT  OUTPUT  CACHE_READ  CACHE_WRITE   COST_USD  UNPRICED
ml      sonnet            2       0   3000     300           0            0     0.0135         0
web     sonnet            1       0    100      10           0            0    0.00045         0
(none)  (none)            1       1      0       0           0            0          0         0
lab     new-model         1       0     70       7           0            0          ?         1
web     new-model         1       0     50       5           0            0          ?         1
TOTAL                     6       1   3220     322           0            0  0.01395+?         2

? 2 requests used a model with no price in the catalogue; COST_USD leaves them out.
`,
		},
		{
			name: "no grouping",
			o:    Options{},
			recs: writerFixture()[:2],
			want: `
       REQUESTS  ERRORS  INPUT  OUTPUT  CACHE_READ  CACHE_WRITE  COST_USD  UNPRICED
TOTAL         2       0   3000     300           0            0    0.0135         0
`,
		},
		{
			name: "empty ledger",
			o:    Options{GroupBy: []string{User}},
			want: `
USER   REQUESTS  ERRORS  INPUT  OUTPUT  CACHE_READ  CACHE_WRITE  COST_USD  UNPRICED
TOTAL         0       0      0       0           0            0         0         0
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := build(t, tt.o, tt.recs...).WriteTable(&buf); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(strings.TrimPrefix(tt.want, "\n"), buf.String()); diff != "" {
				t.Errorf("WriteTable mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteCSV(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		recs []usage.Record
		want [][]string
	}{
		{
			name: "grouped",
			o:    Options{GroupBy: []string{Team, Model}},
			recs: writerFixture(),
			want: [][]string{
				{"team", "model", "requests", "errors", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd", "unpriced_requests"},
				{"ml", "sonnet", "2", "0", "3000", "300", "0", "0", "0.0135", "0"},
				{"web", "sonnet", "1", "0", "100", "10", "0", "0", "0.00045", "0"},
				{"", "", "1", "1", "0", "0", "0", "0", "0", "0"},
				{"lab", "new-model", "1", "0", "70", "7", "0", "0", "", "1"}, // unknown, not $0
				{"web", "new-model", "1", "0", "50", "5", "0", "0", "", "1"},
			},
		},
		{
			name: "no grouping: the total is the row",
			o:    Options{},
			recs: writerFixture(),
			want: [][]string{
				{"requests", "errors", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd", "unpriced_requests"},
				{"6", "1", "3220", "322", "0", "0", "0.01395", "2"},
			},
		},
		{
			name: "keys that need quoting",
			o:    Options{GroupBy: []string{User}},
			recs: []usage.Record{rec(`o"neil, jr`, "t", "m", t0, 200, 1, 2, money("1"))},
			want: [][]string{
				{"user", "requests", "errors", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd", "unpriced_requests"},
				{`o"neil, jr`, "1", "0", "1", "2", "0", "0", "1", "0"},
			},
		},
		{
			name: "keys a spreadsheet would run as formulas",
			o:    Options{GroupBy: []string{User}},
			recs: []usage.Record{
				rec(`=HYPERLINK("http://x","y")`, "t", "m", t0, 200, 1, 1, money("3")),
				rec("@SUM(A1)", "t", "m", t0, 200, 1, 1, money("2")),
				rec("-bob", "t", "m", t0, 200, 1, 1, money("1")),
			},
			want: [][]string{
				{"user", "requests", "errors", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd", "unpriced_requests"},
				{`'=HYPERLINK("http://x","y")`, "1", "0", "1", "1", "0", "0", "3", "0"},
				{"'@SUM(A1)", "1", "0", "1", "1", "0", "0", "2", "0"},
				{"'-bob", "1", "0", "1", "1", "0", "0", "1", "0"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := build(t, tt.o, tt.recs...).WriteCSV(&buf); err != nil {
				t.Fatal(err)
			}
			got, err := csv.NewReader(&buf).ReadAll()
			if err != nil {
				t.Fatalf("WriteCSV wrote invalid CSV: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("WriteCSV mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	o := Options{GroupBy: []string{Team, Model}, Since: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	r := build(t, o, writerFixture()...)
	r.Partial = []PartialRecord{{File: "usage.jsonl", Line: 7}}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	// Compare as a generic value with numbers kept as written, so that a
	// cost rounded through a float would show.
	var got any
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("WriteJSON wrote invalid JSON: %v", err)
	}
	row := func(team, model string, req, errs, in, out int, cost any, unpriced int) map[string]any {
		m := map[string]any{
			"requests": json.Number(itoa(req)), "errors": json.Number(itoa(errs)),
			"input_tokens": json.Number(itoa(in)), "output_tokens": json.Number(itoa(out)),
			"cache_read_input_tokens": json.Number("0"), "cache_write_input_tokens": json.Number("0"),
			"cost_usd": cost, "unpriced_requests": json.Number(itoa(unpriced)),
		}
		if team != "-" {
			m["group"] = map[string]any{"team": team, "model": model}
		}
		return m
	}
	want := map[string]any{
		"group_by": []any{"team", "model"},
		"since":    "2026-11-01T00:00:00Z",
		"until":    nil,
		"rows": []any{
			row("ml", "sonnet", 2, 0, 3000, 300, json.Number("0.0135"), 0),
			row("web", "sonnet", 1, 0, 100, 10, json.Number("0.00045"), 0),
			row("", "", 1, 1, 0, 0, json.Number("0"), 0),
			row("lab", "new-model", 1, 0, 70, 7, nil, 1), // null, not 0
			row("web", "new-model", 1, 0, 50, 5, nil, 1),
		},
		"total":           row("-", "", 6, 1, 3220, 322, json.Number("0.01395"), 2),
		"partial_records": json.Number("1"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WriteJSON mismatch (-want +got):\n%s", diff)
	}
}

func TestWriteJSONEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := build(t, Options{}).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"group_by": []`, `"rows": []`, `"cost_usd": 0`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("WriteJSON of an empty report = %s, want it to contain %s", buf.String(), want)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
