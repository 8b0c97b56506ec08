package cur

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// ErrFormat is wrapped by errors about a file that is not a CUR 2.0
// export this package can read: not Parquet, gzip or CSV, or missing a
// required column.
var ErrFormat = errors.New("not a readable CUR 2.0 file")

// MissingColumnsError is the error for a file that lacks required
// columns. It names all of them, so that one fix of the export's query
// covers every one.
type MissingColumnsError struct {
	Path    string
	Columns []string
}

func (e *MissingColumnsError) Error() string {
	return fmt.Sprintf("%s: missing required column(s) %s", e.Path, strings.Join(e.Columns, ", "))
}

func (e *MissingColumnsError) Unwrap() error { return ErrFormat }

// RowError is a problem with one value of one row. Row counts data rows
// from 1, as Line.Row does.
type RowError struct {
	Path   string
	Row    int
	Column string // empty when the problem is the row as a whole
	Err    error
}

func (e *RowError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("%s: row %d: %v", e.Path, e.Row, e.Err)
	}
	return fmt.Sprintf("%s: row %d: %s: %v", e.Path, e.Row, e.Column, e.Err)
}

func (e *RowError) Unwrap() error { return e.Err }

// maxRowErrors bounds how many row errors one read reports: enough to
// show whether a problem is systematic, few enough to read.
const maxRowErrors = 20

// rowErrors collects the row errors of one file.
type rowErrors struct {
	path  string
	errs  []error
	extra int
	// stoppedAt is the last row read when reading stopped early.
	stoppedAt int
}

func (r *rowErrors) add(row int, column string, err error) {
	if len(r.errs) >= maxRowErrors {
		r.extra++
		return
	}
	r.errs = append(r.errs, &RowError{Path: r.path, Row: row, Column: column, Err: err})
}

func (r *rowErrors) full() bool { return len(r.errs) >= maxRowErrors }

func (r *rowErrors) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	errs := r.errs
	if r.extra > 0 {
		errs = append(slices.Clip(errs), fmt.Errorf("%s: %d more row error(s) not shown", r.path, r.extra))
	}
	if r.stoppedAt > 0 {
		errs = append(slices.Clip(errs), fmt.Errorf("%s: stopped reading after row %d", r.path, r.stoppedAt))
	}
	return errors.Join(errs...)
}

// ReadFile reads the CUR 2.0 file at path, whatever its format: Parquet
// (read in place, not loaded whole), gzip-compressed CSV (what Data
// Exports writes when the format is text/csv) or plain CSV. Lines name
// path as their Path.
func ReadFile(path string) ([]Line, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 4 && string(magic[:]) == parquetMagic {
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return readParquet(path, f, st.Size())
	}
	return Read(path, f)
}

const parquetMagic = "PAR1"

// Read reads a CUR 2.0 file from r, telling its format by its first
// bytes: "PAR1" is Parquet, 1f 8b is gzip (holding CSV), anything else is
// read as CSV. name is used in errors and as Line.Path. A Parquet file
// is read into memory first, because Parquet is read from its end;
// ReadFile avoids that for files on disk.
//
// On any error Read returns no lines: a bill read in part would reconcile
// as if the rest had never been billed. The error names the file and,
// for problems with values, every bad row and column (up to 20).
func Read(name string, r io.Reader) ([]Line, error) {
	return read(name, r, true)
}

func read(name string, r io.Reader, gzipAllowed bool) ([]Line, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	switch {
	case bytes.HasPrefix(head, []byte(parquetMagic)):
		data, err := io.ReadAll(br)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return readParquet(name, bytes.NewReader(data), int64(len(data)))
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		if !gzipAllowed {
			return nil, fmt.Errorf("%s: gzip inside gzip: %w", name, ErrFormat)
		}
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
		defer zr.Close()
		return read(name, zr, false)
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		// Legacy CUR can be zipped; CUR 2.0 exports are Parquet or gzip.
		return nil, fmt.Errorf("%s: zip archive (unpack it first): %w", name, ErrFormat)
	}
	return readCSV(name, br)
}

// readCSV reads CSV as Data Exports writes it: a header row of column
// names, then one line item per row; map columns hold a JSON object.
func readCSV(name string, r io.Reader) ([]Line, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file, no header row: %w", name, ErrFormat)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", name, csvErr(err))
	}
	header = slices.Clone(header)
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	index := make(map[string]int, len(header))
	var dup []string
	for i, h := range header {
		h = strings.TrimSpace(h)
		if _, ok := index[h]; ok {
			dup = append(dup, h)
			continue
		}
		index[h] = i
	}
	if len(dup) > 0 {
		return nil, fmt.Errorf("%s: header repeats column(s) %s: %w", name, strings.Join(dup, ", "), ErrFormat)
	}
	if err := checkColumns(name, func(c string) bool { _, ok := index[c]; return ok }); err != nil {
		return nil, err
	}
	type field struct {
		name string
		i    int
		kind colKind
	}
	var fields []field
	for c, k := range readColumns {
		if i, ok := index[c]; ok {
			fields = append(fields, field{c, i, k})
		}
	}
	slices.SortFunc(fields, func(a, b field) int { return a.i - b.i })

	errs := rowErrors{path: name}
	var lines []Line
	for row := 1; ; row++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
				errs.add(row, "", fmt.Errorf("has %d fields, the header has %d", len(rec), len(header)))
				continue
			}
			// Any other CSV syntax error leaves the reader out of step
			// with the rows, so nothing after it can be trusted.
			errs.add(row, "", csvErr(err))
			break
		}
		l := Line{Path: name, Row: row}
		for _, f := range fields {
			if err := setText(&l, f.name, f.kind, rec[f.i]); err != nil {
				errs.add(row, f.name, err)
			}
		}
		if err := l.finish(); err != nil {
			errs.add(row, "", err)
		}
		// Once a row has failed, the lines are not returned; reading on
		// only counts the remaining errors.
		if len(errs.errs) == 0 {
			lines = append(lines, l)
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return lines, nil
}

// csvErr restates a CSV syntax error with its line and column in the
// file, which differ from the row number when quoted fields span lines.
func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("line %d, column %d: %w", pe.Line, pe.Column, pe.Err)
	}
	return err
}

// checkColumns refuses a file without every required column.
func checkColumns(name string, has func(string) bool) error {
	var missing []string
	for _, c := range requiredColumns {
		if !has(c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return &MissingColumnsError{Path: name, Columns: missing}
	}
	return nil
}

// setText sets column col of l from its CSV text. An empty cell is a
// null: "" for strings, 0 for amounts, the zero time, no map.
func setText(l *Line, col string, kind colKind, s string) error {
	switch kind {
	case kindString:
		setString(l, col, s)
	case kindDouble:
		if s == "" {
			return nil
		}
		q, err := quantityFromText(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		return setQuantity(l, col, q)
	case kindTimestamp:
		if s == "" {
			return nil
		}
		t, err := parseTime(s)
		if err != nil {
			return err
		}
		setTime(l, col, t)
	case kindMap:
		m, err := parseMap(s)
		if err != nil {
			return err
		}
		setMap(l, col, m)
	}
	return nil
}

// timeLayouts are the timestamp spellings accepted in CSV: RFC 3339 as
// Data Exports documents it ("2023-10-01T00:00:00.000Z"), the same
// without a zone, and the space-separated form Athena and Trino print.
// A time without a zone is UTC, which is what CUR times are.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05.999999999 UTC",
	"2006-01-02",
}

func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: not a timestamp (want e.g. 2026-04-01T00:00:00.000Z)", truncate(s))
}

// parseMap reads a map column's CSV cell: a JSON object of strings, the
// way the bill shows {"iamPrincipal/team":"data-science"}. An empty cell,
// "{}" and "null" are no map.
func parseMap(s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "null" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("%q: not a JSON object of strings: %w", truncate(s), err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// truncate shortens s for an error message, so that one bad cell of a
// megabyte does not become a megabyte of log.
func truncate(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func setString(l *Line, col, v string) {
	switch col {
	case colBillingEntity:
		l.BillingEntity = v
	case colUsageAccount:
		l.Account = v
	case colLineItemType:
		l.LineItemType = v
	case colProductCode:
		l.ProductCode = v
	case colUsageType:
		l.UsageType = v
	case colOperation:
		l.Operation = v
	case colPrincipal:
		l.Principal = v
	case colCurrency:
		l.Currency = v
	case colProductName:
		if v != "" {
			l.ProductName = v
		}
	}
}

func setQuantity(l *Line, col string, q Quantity) error {
	switch col {
	case colUsageAmount:
		l.UsageAmount = q
	case colUnblendedCost:
		m, err := q.money()
		if err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		l.UnblendedCost = m
	}
	return nil
}

func setTime(l *Line, col string, t time.Time) {
	switch col {
	case colPeriodStart:
		l.BillingPeriod = t
	case colUsageStart:
		l.UsageStart = t
	case colUsageEnd:
		l.UsageEnd = t
	}
}

func setMap(l *Line, col string, m map[string]string) {
	switch col {
	case colTags:
		l.Tags = m
	case colResourceTags:
		l.ResourceTags = m
	case colProduct:
		if l.ProductName == "" {
			l.ProductName = m[productNameKey]
		}
	}
}

// finish checks what a line needs whatever its format: the times that
// place it in the bill.
func (l *Line) finish() error {
	var missing []string
	if l.BillingPeriod.IsZero() {
		missing = append(missing, colPeriodStart)
	}
	if l.UsageStart.IsZero() {
		missing = append(missing, colUsageStart)
	}
	if len(missing) > 0 {
		return fmt.Errorf("empty %s", strings.Join(missing, ", "))
	}
	if !l.UsageEnd.IsZero() && l.UsageEnd.Before(l.UsageStart) {
		return fmt.Errorf("%s %s is before %s %s", colUsageEnd, l.UsageEnd.Format(time.RFC3339), colUsageStart, l.UsageStart.Format(time.RFC3339))
	}
	return nil
}
