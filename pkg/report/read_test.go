package report

import (
	"bytes"
	"encoding/json"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// line is one ledger line as the gateway writes it.
func line(t *testing.T, r usage.Record) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func TestRecords(t *testing.T) {
	dir := t.TempDir()
	a := rec("alice", "ml", "m", t0, 200, 1, 1, money("0.1"))
	b := rec("bob", "ml", "m", t0, 200, 1, 1, money("0.2"))
	c := rec("carol", "ml", "m", t0, 200, 1, 1, nil)
	good := line(t, a) + line(t, b)

	tests := []struct {
		name        string
		files       map[string]string
		order       []string
		wantUsers   []string
		wantPartial []PartialRecord
		wantErr     string
	}{
		{
			name:      "files in the order given",
			files:     map[string]string{"l.2": line(t, a), "l.1": line(t, b), "l": line(t, c)},
			order:     []string{"l.2", "l.1", "l"},
			wantUsers: []string{"alice", "bob", "carol"},
		},
		{
			name:      "empty file",
			files:     map[string]string{"l": ""},
			order:     []string{"l"},
			wantUsers: nil,
		},
		{
			name:        "partial last line skipped and reported",
			files:       map[string]string{"l": good + `{"time":"2026-11-03T10:00:00Z","requ`},
			order:       []string{"l"},
			wantUsers:   []string{"alice", "bob"},
			wantPartial: []PartialRecord{{File: "l", Line: 3}},
		},
		{
			name:        "a whole record without its newline is still partial",
			files:       map[string]string{"l.1": good + strings.TrimSuffix(line(t, c), "\n"), "l": line(t, c)},
			order:       []string{"l.1", "l"},
			wantUsers:   []string{"alice", "bob", "carol"},
			wantPartial: []PartialRecord{{File: "l.1", Line: 3}},
		},
		{
			name:        "a crash fragment the ledger ended on reopening is skipped and reported",
			files:       map[string]string{"l": good + `{"time":"2026-11-03T10:00:00Z","requ` + "\n" + line(t, c)},
			order:       []string{"l"},
			wantUsers:   []string{"alice", "bob", "carol"},
			wantPartial: []PartialRecord{{File: "l", Line: 3}},
		},
		{
			name:    "corrupt line names file and line",
			files:   map[string]string{"l.1": good, "l": line(t, a) + "{not json\n" + line(t, b)},
			order:   []string{"l.1", "l"},
			wantErr: "l: line 2: not a usage record",
		},
		{
			name:    "unknown field is corrupt",
			files:   map[string]string{"l": strings.Replace(line(t, a), `{"time"`, `{"surprise":1,"time"`, 1)},
			order:   []string{"l"},
			wantErr: `l: line 1: not a usage record: json: unknown field "surprise"`,
		},
		{
			name:    "two records on one line",
			files:   map[string]string{"l": strings.TrimSuffix(line(t, a), "\n") + line(t, b)},
			order:   []string{"l"},
			wantErr: "l: line 1: more than one record",
		},
		{
			name:    "blank line is corrupt",
			files:   map[string]string{"l": good + "\n" + line(t, c)},
			order:   []string{"l"},
			wantErr: "l: line 3: not a usage record",
		},
		{
			name:    "cost in exponent form refused",
			files:   map[string]string{"l": strings.Replace(line(t, a), `"cost_usd":0.1`, `"cost_usd":1e-1`, 1)},
			order:   []string{"l"},
			wantErr: "l: line 1: not a usage record",
		},
		{
			name:    "missing file",
			files:   map[string]string{},
			order:   []string{"gone"},
			wantErr: "gone: no such file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := t.TempDir()
			for name, content := range tt.files {
				writeFile(t, filepath.Join(sub, name), content)
			}
			var files []string
			for _, f := range tt.order {
				files = append(files, filepath.Join(sub, f))
			}
			var users []string
			var partial []PartialRecord
			var err error
			for r, e := range Records(files, func(p PartialRecord) {
				p.File = filepath.Base(p.File)
				partial = append(partial, p)
			}) {
				if e != nil {
					err = e
					break
				}
				users = append(users, r.User)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Records error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantUsers, users); diff != "" {
				t.Errorf("users mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPartial, partial); diff != "" {
				t.Errorf("partial mismatch (-want +got):\n%s", diff)
			}
		})
	}
	_ = dir
}

func TestRecordsLongLine(t *testing.T) {
	// A record longer than the reader's buffer is read whole.
	r := rec(strings.Repeat("u", 200<<10), "t", "m", t0, 200, 1, 1, money("1"))
	path := filepath.Join(t.TempDir(), "l")
	writeFile(t, path, line(t, r)+line(t, r))
	rep, err := FromFiles([]string{path}, Options{GroupBy: []string{User}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 1 || rep.Rows[0].Requests != 2 || rep.Rows[0].Keys[0] != r.User {
		t.Errorf("got %d rows, want one row with 2 requests of the long user", len(rep.Rows))
	}
}

func TestRecordsStopsWhenAsked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l")
	a := rec("a", "t", "m", t0, 200, 1, 1, money("1"))
	writeFile(t, path, line(t, a)+line(t, a)+"corrupt\n")
	n := 0
	for _, err := range Records([]string{path, path}, nil) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
}

// TestTotalsAreExact writes random records through the gateway's own
// Ledger, rotating into several files, and checks that the report's total,
// the sum of its rows and its JSON total all equal an independent sum of
// what was written, to the picodollar.
func TestTotalsAreExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	l, err := usage.NewLedger(usage.LedgerConfig{Path: path, MaxBytes: 64 << 10, MaxBackups: 1000})
	if err != nil {
		t.Fatal(err)
	}
	teams := []string{"ml", "web", "data", ""}
	models := []string{"anthropic.claude-sonnet", "amazon.nova-lite", "meta.llama", "unpriced.model"}
	var want big.Int // picodollars
	var wantReq, wantUnpriced int64
	var wantTokens usage.Tokens
	const n = 5000
	for i := range n {
		r := rec("user"+string(rune('a'+rng.IntN(20))), teams[rng.IntN(len(teams))], models[rng.IntN(len(models))],
			t0.Add(time.Duration(rng.IntN(30*24*3600))*time.Second), 200, rng.Int64N(200_000), rng.Int64N(8_000), nil)
		r.RequestID = "req-" + string(rune(i))
		if rng.IntN(10) == 0 {
			r.Status = 500 + rng.IntN(4)
		}
		if r.Model != "unpriced.model" {
			// Up to about $9,000 a request, to any picodollar: the sum
			// of 5000 overflows no int64 but does exercise big sums.
			m := pricing.Money(rng.Int64N(9_000 * int64(pricing.Dollar)))
			r.Cost = &m
			want.Add(&want, big.NewInt(int64(m)))
		} else if r.Tokens != (usage.Tokens{}) {
			wantUnpriced++
		}
		wantReq++
		wantTokens = wantTokens.Add(r.Tokens)
		l.Record(r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.WriteErrors() != 0 {
		t.Fatalf("ledger lost %d records", l.WriteErrors())
	}
	files, err := usage.LedgerFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("ledger rotated into %d files, want several", len(files))
	}
	wantCost := new(big.Rat).SetFrac(&want, big.NewInt(int64(pricing.Dollar))).FloatString(12)
	wantCost = strings.TrimRight(strings.TrimRight(wantCost, "0"), ".")

	for _, groupBy := range [][]string{nil, {User}, {Team, Model}, {Day, Operation, Tenant}} {
		r, err := FromFiles(files, Options{GroupBy: groupBy})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Total.Cost.String(); got != wantCost {
			t.Errorf("group by %v: total cost = %s, want %s", groupBy, got, wantCost)
		}
		if r.Total.Requests != wantReq || r.Total.Unpriced != wantUnpriced || r.Total.Tokens != wantTokens {
			t.Errorf("group by %v: total = %d requests, %d unpriced, %+v tokens; want %d, %d, %+v",
				groupBy, r.Total.Requests, r.Total.Unpriced, r.Total.Tokens, wantReq, wantUnpriced, wantTokens)
		}
		if len(groupBy) > 0 {
			var sum pricing.Total
			var req int64
			for i := range r.Rows {
				sum.AddTotal(&r.Rows[i].Cost)
				req += r.Rows[i].Requests
			}
			if sum.String() != wantCost || req != wantReq {
				t.Errorf("group by %v: rows sum to %s over %d requests, want %s over %d", groupBy, sum.String(), req, wantCost, wantReq)
			}
		}
		var buf bytes.Buffer
		if err := r.WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		var out struct {
			Total struct {
				Cost json.Number `json:"cost_usd"`
			} `json:"total"`
		}
		dec := json.NewDecoder(&buf)
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			t.Fatal(err)
		}
		if got := out.Total.Cost.String(); got != wantCost {
			t.Errorf("group by %v: JSON total cost_usd = %s, want %s", groupBy, got, wantCost)
		}
	}
}
