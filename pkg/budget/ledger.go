package budget

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"slices"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// Rebuild counts recs, usage ledger records, as spend already made, so
// that a restarted gateway goes on where it stopped: call it once at
// start, before serving, with everything the ledger holds (records of
// ended periods are skipped). A record counts at its end (Time plus its
// latency), when the proxy called Spend for it. Thresholds it takes spend
// past are marked crossed without being reported again.
//
// In one replica the ledger is the source of truth and Rebuild adds to
// the counts. In fleet mode Redis is, and already holds these records:
// Rebuild only raises this replica's view to at least its own ledger's
// spend, which matters while Redis is unavailable (and if Redis lost its
// data).
func (t *Tracker) Rebuild(recs iter.Seq[usage.Record]) {
	if t == nil {
		return
	}
	rs := t.rules.Load()
	if len(rs.all) == 0 {
		return
	}
	now := t.now()
	current := make([]time.Time, len(rs.all))
	for i, r := range rs.all {
		current[i], _ = r.Period.bounds(now)
	}
	sums := map[entryKey]pricing.Money{}
	for rec := range recs {
		if rec.Cost == nil || *rec.Cost <= 0 || rec.Time.IsZero() {
			continue
		}
		at := spentAt(rec)
		id := auth.Identity{User: rec.User, Team: rec.Team, Tenant: rec.Tenant, CostCenter: rec.CostCenter}
		for i, r := range rs.all {
			subject, ok := r.subject(id)
			if !ok {
				continue
			}
			if start, _ := r.Period.bounds(at); start.Equal(current[i]) {
				k := keyOf(r, subject, start)
				sums[k] = add(sums[k], *rec.Cost)
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
	for k, v := range sums {
		r := rs.byID[k.id]
		_, end := r.Period.bounds(now)
		e := t.entryLocked(k, end)
		if t.fleet != nil {
			e.spent = max(e.spent, v)
		} else {
			e.spent = add(e.spent, v)
		}
		e.alerted = max(e.alerted, r.crossed(e.view()))
		e.raisePeak()
	}
}

// spentAt is when the proxy called Spend for rec: when its answer ended.
func spentAt(rec usage.Record) time.Time {
	d := rec.Latency
	if d == 0 { // read from a ledger: only latency_ms is written
		d = time.Duration(rec.LatencyMS * float64(time.Millisecond))
	}
	return rec.Time.Add(max(d, 0))
}

// RebuildFromLedger is Rebuild with the records of the ledger at path
// (usage.LedgerConfig.Path) and its rotated files (usage.LedgerFiles:
// path.1 the newest, path.2, ...). It reads them newest first,
// one line at a time, and stops at the first file whose records all ended
// before the current periods began, since older files cannot hold any
// either. A line that is not a record (a write cut short by a crash) is
// skipped and counted in a log line; errors reading a file are returned,
// after everything else that could be read was counted. "" and "-" (no
// ledger, or stdout) read nothing.
func (t *Tracker) RebuildFromLedger(path string) error {
	if t == nil || path == "" || path == "-" {
		return nil
	}
	if len(t.rules.Load().all) == 0 {
		return nil
	}
	files, err := usage.LedgerFiles(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no ledger yet
	}
	if err != nil {
		return fmt.Errorf("rebuild budgets: %w", err)
	}
	return t.rebuildFromFiles(files)
}

// rebuildFromFiles is RebuildFromLedger's reading of files, the ledger's
// files oldest first.
func (t *Tracker) rebuildFromFiles(files []string) error {
	now := t.now()
	earliest := now
	for _, r := range t.rules.Load().all {
		start, _ := r.Period.bounds(now)
		if start.Before(earliest) {
			earliest = start
		}
	}
	var errs []error
	t.Rebuild(func(yield func(usage.Record) bool) {
		for _, name := range slices.Backward(files) {
			f, err := os.Open(name)
			if err != nil {
				errs = append(errs, fmt.Errorf("rebuild budgets: %w", err))
				return
			}
			s, err := scanLedger(f, yield)
			f.Close()
			if s.bad > 0 {
				t.log.Warn("budgets: skipped ledger lines that are not usage records", "file", name, "lines", s.bad)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("rebuild budgets: read %s: %w", name, err))
				return
			}
			if s.stopped || s.good > 0 && s.latest.Before(earliest) {
				return
			}
		}
	})
	return errors.Join(errs...)
}

// scanned is what scanLedger saw in one file.
type scanned struct {
	good, bad int
	latest    time.Time // the latest end of a record
	stopped   bool      // yield asked to stop
}

// scanLedger yields each record of one ledger file. Unlike
// usage.ReadLedger it holds one line at a time, ignores fields it does not
// know and skips broken lines: a rebuild must count what it can.
func scanLedger(r io.Reader, yield func(usage.Record) bool) (scanned, error) {
	var s scanned
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Longer than any record the gateway writes: skip to its end.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			s.bad++
			switch {
			case err == nil:
				continue
			case err == io.EOF:
				return s, nil
			}
			return s, err
		}
		if err == io.EOF {
			if len(line) > 0 {
				s.bad++ // a last line cut short
			}
			return s, nil
		}
		if err != nil {
			return s, err
		}
		var rec usage.Record
		if json.Unmarshal(line, &rec) != nil {
			s.bad++
			continue
		}
		s.good++
		if at := spentAt(rec); at.After(s.latest) {
			s.latest = at
		}
		if !yield(rec) {
			s.stopped = true
			return s, nil
		}
	}
}
