package budget

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// writeLedger writes recs to path with the gateway's own Ledger.
func writeLedger(t *testing.T, path string, recs ...usage.Record) {
	t.Helper()
	l, err := usage.NewLedger(usage.LedgerConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		l.Record(r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func rec(at time.Time, who string, cost string) usage.Record {
	r := usage.Record{Time: at, RequestID: "r", User: who, Team: "data-science", Operation: "Converse", Status: 200}
	if cost != "" {
		c := usd(cost)
		r.Cost = &c
	}
	return r
}

// TestRebuildFromLedger: a restarted gateway counts what its ledger and
// the rotated files hold for the current periods, at each request's end,
// and skips what is not a record.
func TestRebuildFromLedger(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	today, yesterday, lastMonth := now.Add(-time.Hour), now.Add(-24*time.Hour), now.AddDate(0, -1, 0)
	dir := t.TempDir()
	path := filepath.Join(dir, "usage.jsonl")

	late := rec(time.Date(2026, 11, 29, 23, 59, 59, 900e6, time.UTC), "alice", "0.25")
	late.Latency = 200 * time.Millisecond // ended today
	writeLedger(t, path+".2",
		rec(lastMonth, "alice", "1000"),
		rec(yesterday, "alice", "1"),
	)
	writeLedger(t, path+".1",
		rec(yesterday, "bob", "2"),
		late,
		rec(today, "alice", "4"),
	)
	writeLedger(t, path,
		rec(today, "alice", "8"),
		rec(today, "alice", ""), // a model without a price
		rec(today, "bob", "16"),
	)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("not json\n{\"time\":\"2026-11-30T11:00:00Z\",\"user\":\"alice\",\"cost_usd\":1") // a crash mid-write
	f.Close()
	os.WriteFile(path+".4", []byte("never read: .3 is missing\n"), 0o600)

	cfg := Config{
		good(), // team, monthly
		{Name: "each-user-daily", Scope: ScopeUser, Match: "*", Period: Daily, LimitUSD: "12", Mode: Hard},
	}
	tr := newTracker(t, cfg, Options{Now: fakeclock.At(now).Now})
	if err := tr.RebuildFromLedger(path); err != nil {
		t.Fatal(err)
	}
	spent := func(who string) []string {
		var s []string
		for _, st := range tr.Describe(t.Context(), auth.Identity{User: who, Team: "data-science"}) {
			s = append(s, st.Budget+"="+st.Spent.String())
		}
		return s
	}
	if got, want := spent("alice"), []string{"ds-monthly=31.25", "each-user-daily=12.25"}; !slices.Equal(got, want) {
		t.Errorf("alice: %v, want %v", got, want)
	}
	if got, want := spent("bob"), []string{"ds-monthly=31.25", "each-user-daily=16"}; !slices.Equal(got, want) {
		t.Errorf("bob: %v, want %v", got, want)
	}
	if ee := exceeded(t, tr.Check(t.Context(), alice)); ee.Budget != "each-user-daily" {
		t.Errorf("refused by %q, want each-user-daily", ee.Budget)
	}
	if logs := tr.logs.String(); !strings.Contains(logs, "skipped ledger lines") || !strings.Contains(logs, "lines=2") {
		t.Errorf("logs = %q, want the 2 skipped lines", logs)
	}

	// Thresholds crossed before the restart are not news after it.
	tr.Spend(carol, usd("1"))
	tr.Spend(alice, usd("1"))
	if n := strings.Count(tr.logs.String(), "budget threshold crossed"); n != 0 {
		t.Errorf("%d crossings logged after the rebuild, want 0:\n%s", n, tr.logs)
	}
}

// TestRebuildStopsAtOldFiles: files whose records all ended before the
// current periods began end the reading: older ones cannot matter.
func TestRebuildStopsAtOldFiles(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	path := filepath.Join(dir, "usage.jsonl")
	writeLedger(t, path, rec(now.Add(-time.Hour), "alice", "1"))
	writeLedger(t, path+".1", rec(now.AddDate(0, -1, 0), "alice", "1"))
	if err := os.Mkdir(path+".2", 0o700); err != nil { // unreadable as a file
		t.Fatal(err)
	}
	// usage.LedgerFiles would leave the directory out: the file list is
	// given as it, so that reading past the old file would fail.
	tr := newTracker(t, Config{good()}, Options{Now: fakeclock.At(now).Now})
	if err := tr.rebuildFromFiles([]string{path + ".2", path + ".1", path}); err != nil {
		t.Errorf("RebuildFromLedger = %v, want it to stop before %s.2", err, path)
	}
	if st := tr.Describe(t.Context(), alice); st[0].Spent != usd("1") {
		t.Errorf("spent %v, want 1", st[0].Spent)
	}

	// Without that file, the reading error is reported, after the rest
	// was counted.
	os.Remove(path + ".1")
	os.Rename(path+".2", path+".1")
	tr = newTracker(t, Config{good()}, Options{Now: fakeclock.At(now).Now})
	if err := tr.rebuildFromFiles([]string{path + ".1", path}); err == nil || !strings.Contains(err.Error(), "usage.jsonl.1") {
		t.Errorf("RebuildFromLedger = %v, want an error naming usage.jsonl.1", err)
	}
	if st := tr.Describe(t.Context(), alice); st[0].Spent != usd("1") {
		t.Errorf("spent %v, want 1", st[0].Spent)
	}
}

// TestRebuildAddsInOneReplica: Rebuild adds to what is counted (several
// ledgers can be fed), and skips records without a time or cost.
func TestRebuildAddsInOneReplica(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tr := newTracker(t, Config{good()}, Options{Now: fakeclock.At(now).Now})
	zero, negative := pricing.Money(0), usd("-5")
	recs := []usage.Record{rec(now, "alice", "2"), rec(time.Time{}, "alice", "7"), {Time: now, Team: "data-science", Cost: &zero}, {Time: now, Team: "data-science", Cost: &negative}}
	tr.Rebuild(slices.Values(recs))
	tr.Rebuild(slices.Values(recs))
	if st := tr.Describe(t.Context(), alice); st[0].Spent != usd("4") {
		t.Errorf("spent %v, want 4", st[0].Spent)
	}
}

// TestRebuildAcrossAGap: a rotated file missing from the sequence (a
// failed rename) does not hide the older ones, as usage.LedgerFiles
// lists them.
func TestRebuildAcrossAGap(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	path := filepath.Join(dir, "usage.jsonl")
	writeLedger(t, path, rec(now.Add(-time.Hour), "alice", "1"))
	writeLedger(t, path+".2", rec(now.Add(-2*time.Hour), "alice", "2"))
	tr := newTracker(t, Config{good()}, Options{Now: fakeclock.At(now).Now})
	if err := tr.RebuildFromLedger(path); err != nil {
		t.Fatalf("RebuildFromLedger = %v", err)
	}
	if st := tr.Describe(t.Context(), alice); st[0].Spent != usd("3") {
		t.Errorf("spent %v, want 3 (the live file and %s.2)", st[0].Spent, path)
	}
}
