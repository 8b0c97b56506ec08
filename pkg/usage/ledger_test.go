package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/configtest"
)

var t0 = time.Date(2025, 11, 25, 19, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

// sample is a fully populated record; the ledger must write every JSON
// field of it.
func sample(id string) Record {
	return Record{
		Time:              t0.Add(-time.Second),
		RequestID:         id,
		UpstreamRequestID: "up-" + id,
		User:              "alice@acme.org",
		Team:              "ml",
		Tenant:            "acme",
		CostCenter:        "cc-42",
		AuthMethod:        "api-key",
		SessionName:       "alice@acme.org",
		RoleARN:           "arn:aws:iam::111122223333:role/gateway-user",
		Operation:         "Converse",
		Model:             "anthropic.claude-3-haiku-20240307-v1:0",
		Status:            200,
		Tokens:            Tokens{Input: 12, Output: 34, CacheRead: 5, CacheWrite: 6},
		Latency:           1234567891 * time.Nanosecond,
		TimeToFirstByte:   250 * time.Millisecond,
	}
}

// readLines returns the lines of path, failing the test if the file does
// not end in a newline (a line split across files) or a line is not a JSON
// Record.
func readLines(t *testing.T, path string) []Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseLines(t, path, b)
}

func parseLines(t *testing.T, name string, b []byte) []Record {
	t.Helper()
	recs, err := ReadLedger(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return recs
}

func newTestLedger(t *testing.T, cfg LedgerConfig) *Ledger {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	l, err := NewLedger(cfg)
	if err != nil {
		t.Fatalf("NewLedger(%+v) = %v", cfg, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLedgerWritesOneLinePerRecord(t *testing.T) {
	local := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		in   Record
		want Record // as read back
		line string // substring the raw line must hold
	}{
		{
			name: "full record",
			in:   sample("r1"),
			want: func() Record {
				r := sample("r1")
				r.Latency, r.TimeToFirstByte = 0, 0 // not serialized
				r.LatencyMS, r.TTFBMS = 1234.568, 250
				return r
			}(),
			line: `"input_tokens":12,"output_tokens":34,"cache_read_input_tokens":5,"cache_write_input_tokens":6,`,
		},
		{
			name: "zero time stamped with Now, local time in UTC",
			in:   Record{RequestID: "r2", Operation: "InvokeModel", Status: 403},
			want: Record{Time: t0, RequestID: "r2", Operation: "InvokeModel", Status: 403},
			line: `"time":"2025-11-25T19:00:00Z"`,
		},
		{
			name: "local time written as UTC",
			in:   Record{Time: t0.In(local), RequestID: "r3", Status: 200},
			want: Record{Time: t0, RequestID: "r3", Status: 200},
			line: `"time":"2025-11-25T19:00:00Z"`,
		},
		{
			name: "no first byte: ttfb omitted, caller's LatencyMS kept",
			in:   Record{Time: t0, RequestID: "r4", Status: 499, ClientGone: true, LatencyMS: 7.5},
			want: Record{Time: t0, RequestID: "r4", Status: 499, ClientGone: true, LatencyMS: 7.5},
			line: `"latency_ms":7.5,"client_gone":true}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := newTestLedger(t, LedgerConfig{Path: "-", Stdout: &buf})
			l.Record(tt.in)
			raw := buf.String()
			if strings.Count(raw, "\n") != 1 || !strings.HasSuffix(raw, "\n") {
				t.Fatalf("Record wrote %q, want exactly one line", raw)
			}
			if !strings.Contains(raw, tt.line) {
				t.Errorf("Record wrote %q, want it to contain %q", raw, tt.line)
			}
			if got, want := strings.Contains(raw, `"ttfb_ms"`), tt.want.TTFBMS != 0; got != want {
				t.Errorf("Record wrote %q; ttfb_ms present = %v, want %v", raw, got, want)
			}
			got := parseLines(t, "stdout", buf.Bytes())
			if diff := cmp.Diff([]Record{tt.want}, got); diff != "" {
				t.Errorf("ledger line mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLedgerFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	l := newTestLedger(t, LedgerConfig{Path: path})
	for i := range 3 {
		l.Record(sample(strconv.Itoa(i)))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("ledger file mode = %v, want %v", got, os.FileMode(0o600))
	}
	// Write-through: the lines are in the file before Close.
	if got := len(readLines(t, path)); got != 3 {
		t.Errorf("lines before Close = %d, want 3", got)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	// A second ledger appends rather than truncates.
	l2 := newTestLedger(t, LedgerConfig{Path: path})
	l2.Record(sample("3"))
	if err := l2.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	var ids []string
	for _, r := range readLines(t, path) {
		ids = append(ids, r.RequestID)
	}
	if diff := cmp.Diff([]string{"0", "1", "2", "3"}, ids); diff != "" {
		t.Errorf("request IDs in file (-want +got):\n%s", diff)
	}
}

func TestLedgerClose(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "usage.jsonl")
		l := newTestLedger(t, LedgerConfig{Path: path})
		for i := range 100 {
			l.Record(sample(strconv.Itoa(i)))
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		if got := len(readLines(t, path)); got != 100 {
			t.Errorf("lines after Close = %d, want 100", got)
		}
		l.Record(sample("late"))
		l.Record(sample("later"))
		if got := l.Dropped(); got != 2 {
			t.Errorf("Dropped() after two records past Close = %d, want 2", got)
		}
		if got := len(readLines(t, path)); got != 100 {
			t.Errorf("lines after Record past Close = %d, want 100", got)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close() = %v, want nil", err)
		}
		if err := l.Reopen(); err != nil {
			t.Errorf("Reopen() after Close = %v, want nil", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("file after Reopen past Close: %v", err)
		}
		if got := l.WriteErrors(); got != 0 {
			t.Errorf("WriteErrors() = %d, want 0", got)
		}
	})
	t.Run("stdout", func(t *testing.T) {
		var buf bytes.Buffer
		l := newTestLedger(t, LedgerConfig{Path: "-", Stdout: &buf})
		l.Record(sample("a"))
		if err := l.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		l.Record(sample("b"))
		if got := len(parseLines(t, "stdout", buf.Bytes())); got != 1 {
			t.Errorf("lines on stdout = %d, want 1", got)
		}
		if got := l.Dropped(); got != 1 {
			t.Errorf("Dropped() = %d, want 1", got)
		}
	})
	t.Run("no ledger", func(t *testing.T) {
		l := newTestLedger(t, LedgerConfig{Path: ""})
		l.Record(sample("a"))
		if err := l.Reopen(); err != nil {
			t.Errorf("Reopen() = %v, want nil", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close() = %v, want nil", err)
		}
		if got, got2 := l.WriteErrors(), l.Dropped(); got != 0 || got2 != 0 {
			t.Errorf("WriteErrors(), Dropped() = %d, %d, want 0, 0", got, got2)
		}
	})
}

func TestLedgerStdoutDefault(t *testing.T) {
	l, err := NewLedger(LedgerConfig{Path: "-"})
	if err != nil {
		t.Fatalf("NewLedger(-) = %v", err)
	}
	if l.w != os.Stdout {
		t.Errorf("NewLedger(-) writes to %v, want os.Stdout", l.w)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if _, err := os.Stdout.Stat(); err != nil {
		t.Errorf("os.Stdout after Close: %v (closed?)", err)
	}
}

func TestNewLedgerErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
	}{
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "usage.jsonl")},
		{"path is a directory", dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewLedger(LedgerConfig{Path: tt.path})
			if err == nil {
				l.Close()
				t.Fatalf("NewLedger(%q) = nil error, want one", tt.path)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "no")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NewLedger created directories: Stat = %v, want not exist", err)
	}
}

// ledgerFiles returns the records of path.N ... path.1, path, oldest first,
// checking every line and that no backup beyond maxBackups exists.
func ledgerFiles(t *testing.T, path string, maxBackups, maxBytes int) (recs []Record, files int) {
	t.Helper()
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, maxBackups+1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backup %d exists (Stat = %v), want at most %d backups", maxBackups+1, err, maxBackups)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > maxBackups+1 {
		t.Errorf("directory holds %d files, want at most %d", len(entries), maxBackups+1)
	}
	for i := maxBackups; i >= 0; i-- {
		p := path
		if i > 0 {
			p = fmt.Sprintf("%s.%d", path, i)
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		files++
		lines := parseLines(t, p, b)
		if maxBytes > 0 && len(b) > maxBytes && len(lines) > 1 {
			t.Errorf("%s holds %d bytes in %d lines, want at most %d bytes", p, len(b), len(lines), maxBytes)
		}
		recs = append(recs, lines...)
	}
	return recs, files
}

func TestLedgerRotation(t *testing.T) {
	lineLen := func() int { // every line is as long: the IDs are two digits
		var buf bytes.Buffer
		l := newTestLedger(t, LedgerConfig{Path: "-", Stdout: &buf})
		l.Record(sample("00"))
		return buf.Len()
	}()
	tests := []struct {
		name       string
		maxBytes   int64
		maxBackups int
		records    int
		wantFiles  int
		wantKept   int // newest records that survive
	}{
		{"three lines a file, three backups", int64(3*lineLen + lineLen/2), 3, 40, 4, 10},
		{"exact fit", int64(2 * lineLen), 2, 10, 3, 6},
		{"record larger than MaxBytes sits alone", 10, 3, 10, 4, 4},
		{"one backup", int64(3 * lineLen), 1, 10, 2, 4},
		{"default backups", int64(2 * lineLen), 0, 20, DefaultMaxBackups + 1, 2 * (DefaultMaxBackups + 1)},
		{"all kept", int64(4 * lineLen), 100, 40, 10, 40},
	}
	// Buffered (an interval that never comes: the buffer is written only
	// at rotation and Close) and written through, the files must be the
	// same.
	for _, interval := range []time.Duration{0, time.Hour} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/flush %s", tt.name, interval), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "usage.jsonl")
				l := newTestLedger(t, LedgerConfig{Path: path, MaxBytes: tt.maxBytes, MaxBackups: tt.maxBackups, FlushInterval: interval})
				for i := range tt.records {
					l.Record(sample(fmt.Sprintf("%02d", i)))
				}
				if err := l.Close(); err != nil {
					t.Fatalf("Close() = %v", err)
				}
				backups := tt.maxBackups
				if backups == 0 {
					backups = DefaultMaxBackups
				}
				recs, files := ledgerFiles(t, path, backups, int(tt.maxBytes))
				if files != tt.wantFiles {
					t.Errorf("files = %d, want %d", files, tt.wantFiles)
				}
				var got, want []string
				for _, r := range recs {
					got = append(got, r.RequestID)
				}
				for i := tt.records - tt.wantKept; i < tt.records; i++ {
					want = append(want, fmt.Sprintf("%02d", i))
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("records kept, oldest first (-want +got):\n%s", diff)
				}
				if got := l.WriteErrors(); got != 0 {
					t.Errorf("WriteErrors() = %d, want 0", got)
				}
			})
		}
	}
}

func TestLedgerRotatesExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	old := strings.Repeat(`{"request_id":"old"}`+"\n", 10)
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	l := newTestLedger(t, LedgerConfig{Path: path, MaxBytes: int64(len(old)) + 10})
	l.Record(sample("new"))
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if b, err := os.ReadFile(path + ".1"); err != nil || string(b) != old {
		t.Errorf("%s.1 = %q, %v, want the old content", path, b, err)
	}
	if recs := readLines(t, path); len(recs) != 1 || recs[0].RequestID != "new" {
		t.Errorf("%s = %+v, want only record new", path, recs)
	}
}

// TestLedgerConcurrent writes 10,000 records from 50 goroutines while the
// file rotates every few dozen lines; every record must come out whole,
// once.
func TestLedgerConcurrent(t *testing.T) {
	for _, interval := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprintf("flush %s", interval), func(t *testing.T) { testConcurrent(t, interval) })
	}
}

func testConcurrent(t *testing.T, interval time.Duration) {
	const goroutines, perG = 50, 200
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	l := newTestLedger(t, LedgerConfig{Path: path, MaxBytes: 64 << 10, MaxBackups: 1000, FlushInterval: interval})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				l.Record(sample(fmt.Sprintf("%d-%d", g, i)))
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	recs, files := ledgerFiles(t, path, 1000, 64<<10)
	if files < 2 {
		t.Errorf("files = %d, want rotation to have happened", files)
	}
	seen := make(map[string]int, goroutines*perG)
	for _, r := range recs {
		seen[r.RequestID]++
	}
	if len(recs) != goroutines*perG || len(seen) != goroutines*perG {
		t.Errorf("lines = %d with %d distinct IDs, want %d of each", len(recs), len(seen), goroutines*perG)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("record %s written %d times, want 1", id, n)
		}
	}
	if got := l.WriteErrors() + l.Dropped(); got != 0 {
		t.Errorf("WriteErrors()+Dropped() = %d, want 0", got)
	}
}

func TestLedgerReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "usage.jsonl")
	l := newTestLedger(t, LedgerConfig{Path: path})
	l.Record(sample("before-1"))
	l.Record(sample("before-2"))
	// logrotate: rename, then signal.
	if err := os.Rename(path, path+".rotated"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen() = %v", err)
	}
	l.Record(sample("after"))
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	ids := func(p string) (s []string) {
		for _, r := range readLines(t, p) {
			s = append(s, r.RequestID)
		}
		return s
	}
	if diff := cmp.Diff([]string{"before-1", "before-2"}, ids(path+".rotated")); diff != "" {
		t.Errorf("rotated file (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"after"}, ids(path)); diff != "" {
		t.Errorf("new file (-want +got):\n%s", diff)
	}
}

// TestLedgerRecovers checks that a ledger whose file cannot be reopened
// counts the lost records, keeps going, and writes again once the file can
// be opened.
func TestLedgerRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "usage.jsonl")
	l := newTestLedger(t, LedgerConfig{Path: path})
	l.Record(sample("kept"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Fatalf("Reopen() with the directory gone = nil, want an error")
	}
	l.Record(sample("lost-1"))
	l.Record(sample("lost-2"))
	if got := l.WriteErrors(); got != 2 {
		t.Errorf("WriteErrors() = %d, want 2", got)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l.Record(sample("back"))
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if recs := readLines(t, path); len(recs) != 1 || recs[0].RequestID != "back" {
		t.Errorf("%s = %+v, want only record back", path, recs)
	}
	if got := l.WriteErrors(); got != 2 {
		t.Errorf("WriteErrors() = %d, want 2", got)
	}
}

// flakyWriter fails its first write after writing half of it.
type flakyWriter struct {
	bytes.Buffer
	failed bool
}

var errDiskFull = errors.New("disk full")

func (w *flakyWriter) Write(p []byte) (int, error) {
	if !w.failed {
		w.failed = true
		n, _ := w.Buffer.Write(p[:len(p)/2])
		return n, errDiskFull
	}
	return w.Buffer.Write(p)
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errDiskFull }

func TestLedgerWriteErrors(t *testing.T) {
	t.Run("failing writer", func(t *testing.T) {
		l := newTestLedger(t, LedgerConfig{Path: "-", Stdout: failWriter{}})
		for i := range 5 {
			l.Record(sample(strconv.Itoa(i)))
		}
		if got := l.WriteErrors(); got != 5 {
			t.Errorf("WriteErrors() = %d, want 5", got)
		}
	})
	t.Run("partial write ends its line", func(t *testing.T) {
		w := &flakyWriter{}
		l := newTestLedger(t, LedgerConfig{Path: "-", Stdout: w})
		l.Record(sample("torn"))
		l.Record(sample("whole"))
		lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("output = %q, want 2 lines", w.String())
		}
		if json.Valid([]byte(lines[0])) {
			t.Errorf("torn line %q is valid JSON, want the fragment", lines[0])
		}
		var r Record
		if err := json.Unmarshal([]byte(lines[1]), &r); err != nil || r.RequestID != "whole" {
			t.Errorf("line after a torn write = %q (%v), want record whole", lines[1], err)
		}
		if got := l.WriteErrors(); got != 1 {
			t.Errorf("WriteErrors() = %d, want 1", got)
		}
	})
	t.Run("unencodable time", func(t *testing.T) {
		var buf bytes.Buffer
		l := newTestLedger(t, LedgerConfig{Path: "-", Stdout: &buf})
		l.Record(Record{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
		if got := l.WriteErrors(); got != 1 || buf.Len() != 0 {
			t.Errorf("WriteErrors() = %d with output %q, want 1 and nothing", got, buf.String())
		}
	})
}

// countingWriter counts the writes that reach it.
type countingWriter struct {
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func (c *countingWriter) state() (writes int, lines int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, bytes.Count(c.buf.Bytes(), []byte{'\n'})
}

// TestLedgerBuffered: a buffered ledger writes the records of one
// interval with one write, whole lines, on time; Close writes the rest,
// and what arrives after Close is counted as dropped.
func TestLedgerBuffered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &countingWriter{}
		l, err := NewLedger(LedgerConfig{Path: "-", Stdout: out, FlushInterval: 100 * time.Millisecond, Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 500 {
			l.Record(sample(strconv.Itoa(i)))
		}
		if w, n := out.state(); w != 0 || n != 0 {
			t.Fatalf("before the interval: %d writes, %d lines; want nothing yet", w, n)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if w, n := out.state(); w != 1 || n != 500 {
			t.Fatalf("after one interval: %d writes, %d lines; want 1 write of 500 lines", w, n)
		}
		l.Record(sample("last"))
		l.Flush()
		if w, n := out.state(); w != 2 || n != 501 {
			t.Fatalf("after Flush: %d writes, %d lines; want 2 writes, 501 lines", w, n)
		}
		l.Record(sample("at close"))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l.Record(sample("too late"))
		_, n := out.state()
		recs := parseLines(t, "stdout", out.buf.Bytes())
		if n != 502 || recs[500].RequestID != "last" || recs[501].RequestID != "at close" {
			t.Errorf("after Close: %d lines ending %v; want 502 ending last, at close", n, recs[len(recs)-2:])
		}
		if l.Dropped() != 1 || l.WriteErrors() != 0 {
			t.Errorf("Dropped() = %d, WriteErrors() = %d; want 1, 0", l.Dropped(), l.WriteErrors())
		}
	})
}

// TestLedgerBufferedBounded: a buffered ledger never holds more than
// flushBytes, whatever the interval.
func TestLedgerBufferedBounded(t *testing.T) {
	out := &countingWriter{}
	l := newTestLedger(t, LedgerConfig{Path: "-", Stdout: out, FlushInterval: time.Hour})
	var line bytes.Buffer
	lw := newTestLedger(t, LedgerConfig{Path: "-", Stdout: &line})
	lw.Record(sample("0000"))
	perWrite := (flushBytes + line.Len() - 1) / line.Len() // a write once the buffer reaches flushBytes
	records := 3 * perWrite
	for i := range records {
		l.Record(sample(fmt.Sprintf("%04d", i)))
		if held := (i+1)*line.Len() - out.buf.Len(); held >= flushBytes {
			t.Fatalf("after %d records the ledger holds %d bytes, want at most %d", i+1, held, flushBytes)
		}
	}
	if w, _ := out.state(); w != 3 {
		t.Errorf("%d records written in %d writes, want 3", records, w)
	}
}

// TestLedgerBufferedWriteError: when a buffered write fails part way,
// the records whose lines did not reach the writer whole are counted,
// and the fragment is ended so the next write starts a line.
func TestLedgerBufferedWriteError(t *testing.T) {
	w := &flakyWriter{}
	l := newTestLedger(t, LedgerConfig{Path: "-", Stdout: w, FlushInterval: time.Hour})
	for i := range 4 {
		l.Record(sample(strconv.Itoa(i)))
	}
	l.Flush() // writes half: records 0 and 1 whole, 2 and 3 lost
	l.Record(sample("after"))
	l.Flush()
	if got := l.WriteErrors(); got != 2 {
		t.Errorf("WriteErrors() = %d, want 2", got)
	}
	lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
	var ids []string
	for _, line := range lines {
		var r Record
		if json.Unmarshal([]byte(line), &r) == nil {
			ids = append(ids, r.RequestID)
		}
	}
	if diff := cmp.Diff([]string{"0", "1", "after"}, ids); diff != "" {
		t.Errorf("whole records written (-want +got):\n%s", diff)
	}
}

type recordCollector struct{ got []Record }

func (c *recordCollector) Record(r Record) { c.got = append(c.got, r) }

func TestSinks(t *testing.T) {
	a, b := &recordCollector{}, &recordCollector{}
	s := Sinks{a, b}
	s.Record(sample("x"))
	s.Record(sample("y"))
	want := []Record{sample("x"), sample("y")}
	for i, c := range []*recordCollector{a, b} {
		if diff := cmp.Diff(want, c.got); diff != "" {
			t.Errorf("sink %d got (-want +got):\n%s", i, diff)
		}
	}
}

func TestLedgerConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  LedgerConfig
		want []string // message prefixes, one per problem; nil means valid
	}{
		{"zero values take defaults", LedgerConfig{}, nil},
		{"set", LedgerConfig{Path: "-", MaxBytes: 1, MaxBackups: 1}, nil},
		{"negative max bytes", LedgerConfig{MaxBytes: -1}, []string{"ledger_max_bytes: "}},
		{"negative max backups", LedgerConfig{MaxBackups: -1}, []string{"ledger_max_backups: "}},
		{"both", LedgerConfig{MaxBytes: -1, MaxBackups: -1}, []string{"ledger_max_bytes: ", "ledger_max_backups: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			configtest.Problems(t, err, tt.want)
			// NewLedger applies the same rule: it refuses what Validate
			// refuses, before touching any file.
			path := filepath.Join(t.TempDir(), "usage.jsonl")
			cfg := tt.cfg
			cfg.Path = path
			l, nerr := NewLedger(cfg)
			if (nerr != nil) != (err != nil) {
				t.Errorf("NewLedger() error = %v, Validate() = %v: want both nil or both errors", nerr, err)
			}
			if l != nil {
				l.Close()
			}
			if _, serr := os.Stat(path); nerr != nil && !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("refused NewLedger() created %s (Stat = %v)", path, serr)
			}
		})
	}
}

// TestReadLedger: the reader takes back exactly what the ledger wrote and
// refuses anything else, naming the line.
func TestReadLedger(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLedger(LedgerConfig{Path: "-", Stdout: &buf})
	if err != nil {
		t.Fatal(err)
	}
	in := []Record{
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), RequestID: "r1", User: "alice", Operation: "Converse", Status: 200,
			Tokens: Tokens{Input: 10, Output: 5, CacheRead: 2, CacheWrite: 1}},
		{Time: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC), RequestID: "r2", User: "bob", Operation: "ConverseStream", Status: 429, ErrorType: "ThrottlingException"},
	}
	for _, r := range in {
		l.Record(r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := ReadLedger(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("read %d records, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i].RequestID != in[i].RequestID || out[i].Tokens != in[i].Tokens || out[i].Status != in[i].Status ||
			!out[i].Time.Equal(in[i].Time) || out[i].ErrorType != in[i].ErrorType {
			t.Errorf("record %d = %+v, want %+v", i, out[i], in[i])
		}
	}
	good := buf.String()
	for _, tc := range []struct {
		name, text, want string
		partial          bool
		n                int
	}{
		{"torn last record", good + `{"request_id":"r3"`, "line 3", true, 2},
		{"unknown field", good + `{"request_id":"r3","surprise":1}` + "\n", "line 3", false, 2},
		{"not JSON", "nonsense\n" + good, "line 1", false, 0},
		{"two records on a line", `{"request_id":"a"} {"request_id":"b"}` + "\n", "line 1", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := ReadLedger(strings.NewReader(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrPartialRecord) != tc.partial {
				t.Errorf("ReadLedger = %v, want an error naming %s (partial: %v)", err, tc.want, tc.partial)
			}
			if len(recs) != tc.n {
				t.Errorf("ReadLedger returned %d records before the problem, want %d", len(recs), tc.n)
			}
		})
	}
}

// TestLedgerAfterCrash: a ledger reopened over a file whose last record
// was cut short by a crash ends that fragment first, so the records after
// it are whole lines and only the fragment is unreadable.
func TestLedgerAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	rec, err := appendRecord(nil, &Record{RequestID: "0", Operation: "Converse"})
	if err != nil {
		t.Fatal(err)
	}
	fragment := `{"time":"2026-11-30T04:00:00Z","request_id":"cut`
	if err := os.WriteFile(path, append(append(rec, '\n'), fragment...), 0o600); err != nil {
		t.Fatal(err)
	}
	l := newTestLedger(t, LedgerConfig{Path: path})
	l.Record(sample("1"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[1] != fragment {
		t.Fatalf("ledger lines = %q, want the record, the fragment alone, the new record", lines)
	}
	var r Record
	if err := json.Unmarshal([]byte(lines[2]), &r); err != nil || r.RequestID != "1" {
		t.Errorf("line after the fragment = %q (%v), want record 1", lines[2], err)
	}
}
