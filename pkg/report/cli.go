package report

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// Exit codes of Run.
const (
	exitOK       = 0
	exitReadFail = 1 // a ledger could not be read, or holds a corrupt line
	exitUsage    = 2 // bad flags: nothing was read
)

// ParseTime reads a --since or --until bound: a date (2026-11-01, taken as
// midnight UTC, the day boundary the AWS bill uses) or an RFC 3339 time
// (2026-11-01T09:00:00+01:00).
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a date (2026-11-01) nor an RFC 3339 time (2026-11-01T00:00:00Z)", s)
	}
	return t, nil
}

// Run is the "gateway report" command: it reads the usage ledgers named by
// --ledger (each with its rotated files) and writes spend and tokens
// grouped as --group-by says to stdout, in --format. Warnings (a partial
// last record, skipped) go to stderr. It returns the process exit code: 0
// when the report was written, 2 for bad arguments (nothing read), 1 when a
// ledger could not be read or holds a corrupt line.
func Run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ledgers []string
	fs.Func("ledger", "usage ledger `PATH` (its rotated PATH.1 ... PATH.N are read too); repeat for several gateways", func(s string) error {
		if s == "" {
			return errors.New("empty path")
		}
		ledgers = append(ledgers, s)
		return nil
	})
	groupBy := fs.String("group-by", "user", "comma-separated `dimensions` among "+strings.Join(Dimensions, ", ")+"; empty for the total alone")
	since := fs.String("since", "", "count requests at or after `TIME`: a date (UTC midnight) or RFC 3339")
	until := fs.String("until", "", "count requests before `TIME` (exclusive): a date (UTC midnight) or RFC 3339")
	format := fs.String("format", "table", "output `format`: table, csv or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: gateway report --ledger PATH [--ledger PATH]... [--group-by user,team,...] [--since 2026-11-01] [--until 2026-12-01] [--format table|csv|json]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // flag has printed the problem and the usage
	}

	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q (ledgers are given with --ledger)", fs.Arg(0)))
	}
	if len(ledgers) == 0 {
		errs = append(errs, errors.New("no ledger: pass --ledger PATH (the usage ledger file the gateway writes)"))
	}
	var o Options
	var err error
	if o.GroupBy, err = ParseGroupBy(*groupBy); err != nil {
		errs = append(errs, err)
	}
	if *since != "" {
		if o.Since, err = ParseTime(*since); err != nil {
			errs = append(errs, fmt.Errorf("--since: %w", err))
		}
	}
	if *until != "" {
		if o.Until, err = ParseTime(*until); err != nil {
			errs = append(errs, fmt.Errorf("--until: %w", err))
		}
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && !o.Since.Before(o.Until) {
		errs = append(errs, fmt.Errorf("--since %s is not before --until %s", *since, *until))
	}
	var write func(*Report, io.Writer) error
	switch *format {
	case "table":
		write = (*Report).WriteTable
	case "csv":
		write = (*Report).WriteCSV
	case "json":
		write = (*Report).WriteJSON
	default:
		errs = append(errs, fmt.Errorf("--format: %q is not table, csv or json", *format))
	}
	if len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintf(stderr, "gateway report: %v\n", err)
		}
		return exitUsage
	}

	files, err := ledgerFiles(ledgers)
	if err != nil {
		fmt.Fprintf(stderr, "gateway report: %v\n", err)
		return exitReadFail
	}
	r, err := FromFiles(files, o)
	if err != nil {
		fmt.Fprintf(stderr, "gateway report: %v\n", err)
		return exitReadFail
	}
	for _, p := range r.Partial {
		fmt.Fprintf(stderr, "gateway report: warning: %s: line %d is a partial record (a write cut short by a crash); skipped\n", p.File, p.Line)
	}
	if err := write(r, stdout); err != nil {
		fmt.Fprintf(stderr, "gateway report: write: %v\n", err)
		return exitReadFail
	}
	return exitOK
}

// ledgerFiles expands each ledger into its files (Files) and drops files
// already listed (os.SameFile, so links count too), so that naming a
// ledger twice, or a ledger and one of its rotated files, never counts a
// request twice.
func ledgerFiles(ledgers []string) ([]string, error) {
	var files []string
	var seen []os.FileInfo
	for _, l := range ledgers {
		names, err := usage.LedgerFiles(l)
		if err != nil {
			return nil, err
		}
	next:
		for _, name := range names {
			fi, err := os.Stat(name)
			if err != nil {
				return nil, fmt.Errorf("ledger %s: %w", name, err)
			}
			for _, s := range seen {
				if os.SameFile(s, fi) {
					continue next
				}
			}
			seen = append(seen, fi)
			files = append(files, name)
		}
	}
	return files, nil
}
