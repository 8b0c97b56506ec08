package report

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-11-01T09:30:00Z", time.Date(2026, 11, 1, 9, 30, 0, 0, time.UTC)},
		{"2026-11-01T09:30:00+01:00", time.Date(2026, 11, 1, 8, 30, 0, 0, time.UTC)},
		{"2026-11-01T09:30:00.5Z", time.Date(2026, 11, 1, 9, 30, 0, 5e8, time.UTC)},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "2026-11", "2026-13-01", "11/01/2026", "2026-11-01 09:30", "yesterday"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) succeeded, want an error", bad)
		}
	}
}

// cliLedger writes the writer fixture as a ledger rotated into two files,
// the newest ending in a partial record.
func cliLedger(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	recs := writerFixture()
	var old, live strings.Builder
	for i, r := range recs {
		if i < 3 {
			old.WriteString(line(t, r))
		} else {
			live.WriteString(line(t, r))
		}
	}
	writeFile(t, path+".1", old.String())
	writeFile(t, path, live.String()+`{"time":"2026-11-03T1`)
	return path
}

func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRun(t *testing.T) {
	path := cliLedger(t)
	code, out, errs := run("--ledger", path, "--group-by", "team", "--format", "csv")
	if code != 0 {
		t.Fatalf("Run = %d, stderr %q", code, errs)
	}
	got, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"team", "requests", "errors", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd", "unpriced_requests"},
		{"ml", "2", "0", "3000", "300", "0", "0", "0.0135", "0"},
		{"web", "2", "0", "150", "15", "0", "0", "0.00045", "1"},
		{"", "1", "1", "0", "0", "0", "0", "0", "0"},
		{"lab", "1", "0", "70", "7", "0", "0", "", "1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("csv mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(errs, path+": line 4 is a partial record") {
		t.Errorf("stderr = %q, want a warning naming %s line 4", errs, path)
	}
}

func TestRunFormatsAndWindow(t *testing.T) {
	path := cliLedger(t)
	tests := []struct {
		args []string
		want []string // substrings of stdout
	}{
		{[]string{"--ledger", path}, []string{"USER ", "alice", "TOTAL", "0.01395+?"}},
		{[]string{"-ledger", path, "-group-by", "", "-format", "json"}, []string{`"group_by": []`, `"cost_usd": 0.01395`, `"partial_records": 1`}},
		{[]string{"--ledger", path, "--since", "2026-11-04", "--format", "json"}, []string{`"since": "2026-11-04T00:00:00Z"`, `"requests": 0`}},
		{[]string{"--ledger", path, "--until", "2026-11-03T10:00:00Z", "--format", "json"}, []string{`"until": "2026-11-03T10:00:00Z"`, `"requests": 0`}},
		{[]string{"--ledger", path, "--since", "2026-11-03", "--until", "2026-11-04", "--group-by", "day"}, []string{"2026-11-03", "TOTAL"}},
	}
	for _, tt := range tests {
		code, out, errs := run(tt.args...)
		if code != 0 {
			t.Errorf("Run(%q) = %d, stderr %q", tt.args, code, errs)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("Run(%q) stdout =\n%s\nwant it to contain %q", tt.args, out, w)
			}
		}
	}
}

func TestRunDoesNotCountAFileTwice(t *testing.T) {
	path := cliLedger(t)
	code, out, errs := run("--ledger", path, "--ledger", path+".1", "--ledger", path, "--group-by", "", "--format", "csv")
	if code != 0 {
		t.Fatalf("Run = %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "\n6,1,") {
		t.Errorf("stdout = %q, want 6 requests", out)
	}
}

func TestRunErrors(t *testing.T) {
	path := cliLedger(t)
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.jsonl")
	writeFile(t, corrupt, "{\"time\":nope}\n")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  []string
	}{
		{"no ledger", nil, 2, []string{"pass --ledger PATH"}},
		{"bad group-by", []string{"--ledger", path, "--group-by", "team,region"}, 2, []string{`unknown dimension "region"`}},
		{"bad since", []string{"--ledger", path, "--since", "Nov 1"}, 2, []string{"--since:", `"Nov 1"`}},
		{"bad until", []string{"--ledger", path, "--until", "2026-11-31"}, 2, []string{"--until:"}},
		{"since after until", []string{"--ledger", path, "--since", "2026-12-01", "--until", "2026-11-01"}, 2, []string{"not before --until"}},
		{"bad format", []string{"--ledger", path, "--format", "xml"}, 2, []string{`"xml" is not table, csv or json`}},
		{"stray argument", []string{"--ledger", path, "extra"}, 2, []string{`unexpected argument "extra"`}},
		{"unknown flag", []string{"--ledger", path, "--bogus"}, 2, []string{"bogus"}},
		{"every problem at once", []string{"--format", "xml", "--since", "x"}, 2, []string{"--ledger", "--since", "--format"}},
		{"missing ledger", []string{"--ledger", filepath.Join(dir, "none.jsonl")}, 1, []string{"none.jsonl", "does not exist"}},
		{"corrupt ledger", []string{"--ledger", corrupt}, 1, []string{corrupt + ": line 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := run(tt.args...)
			if code != tt.wantCode {
				t.Errorf("Run(%q) = %d, want %d; stderr %q", tt.args, code, tt.wantCode, errs)
			}
			if out != "" {
				t.Errorf("Run(%q) wrote %q to stdout, want nothing", tt.args, out)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errs, w) {
					t.Errorf("Run(%q) stderr = %q, want it to contain %q", tt.args, errs, w)
				}
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	code, _, errs := run("-h")
	if code != 0 || !strings.Contains(errs, "usage: gateway report") || !strings.Contains(errs, "-group-by") {
		t.Errorf("Run(-h) = %d, stderr %q; want 0 and the usage", code, errs)
	}
}

func TestRunUnreadableLedger(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	writeFile(t, path, "")
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run("--ledger", path); code != 1 || !strings.Contains(errs, path) {
		t.Errorf("Run = %d, stderr %q; want 1 naming the file", code, errs)
	}
}
