package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// noKey is how the table shows a dimension the ledger has no value for.
const noKey = "(none)"

// costCell is a row's cost as the table shows it: exact dollars; "?"
// appended when unpriced requests make it a lower bound; "?" alone when
// nothing in the row was priced, so that an unknown cost never reads $0.
func costCell(r *Row) string {
	switch {
	case !r.CostKnown():
		return "?"
	case r.Unpriced > 0:
		return r.Cost.String() + "+?"
	}
	return r.Cost.String()
}

var numberHeaders = []string{"REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHE_READ", "CACHE_WRITE", "COST_USD", "UNPRICED"}

// numberCells are a row's counts in numberHeaders' order, its cost as
// cost writes it.
func numberCells(r *Row, cost func(*Row) string) []string {
	return []string{
		strconv.FormatInt(r.Requests, 10),
		strconv.FormatInt(r.Errors, 10),
		strconv.FormatInt(r.Tokens.Input, 10),
		strconv.FormatInt(r.Tokens.Output, 10),
		strconv.FormatInt(r.Tokens.CacheRead, 10),
		strconv.FormatInt(r.Tokens.CacheWrite, 10),
		cost(r),
		strconv.FormatInt(r.Unpriced, 10),
	}
}

// WriteTable writes the report as aligned text for a terminal: key
// columns left-aligned, numbers right-aligned, the rows, then a TOTAL row,
// then a note when some requests had no price.
func (r *Report) WriteTable(w io.Writer) error {
	nkeys := max(len(r.GroupBy), 1) // the TOTAL label needs a column
	header := make([]string, 0, nkeys+len(numberHeaders))
	if len(r.GroupBy) == 0 {
		header = append(header, "")
	}
	for _, d := range r.GroupBy {
		header = append(header, strings.ToUpper(d))
	}
	header = append(header, numberHeaders...)

	lines := [][]string{header}
	for i := range r.Rows {
		row := &r.Rows[i]
		cells := make([]string, 0, len(header))
		for _, k := range row.Keys {
			if k == "" {
				k = noKey
			}
			cells = append(cells, k)
		}
		lines = append(lines, append(cells, numberCells(row, costCell)...))
	}
	total := make([]string, nkeys, len(header))
	total[0] = "TOTAL"
	lines = append(lines, append(total, numberCells(&r.Total, costCell)...))

	width := make([]int, len(header))
	for _, l := range lines {
		for i, c := range l {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	bw := bufio.NewWriter(w)
	for _, l := range lines {
		for i, c := range l {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				bw.WriteString("  ")
			}
			if i < nkeys {
				bw.WriteString(c)
				if i < len(l)-1 {
					bw.WriteString(pad)
				}
			} else {
				bw.WriteString(pad)
				bw.WriteString(c)
			}
		}
		bw.WriteByte('\n')
	}
	if r.Total.Unpriced > 0 {
		fmt.Fprintf(bw, "\n? %d requests used a model with no price in the catalogue; COST_USD leaves them out.\n", r.Total.Unpriced)
	}
	return bw.Flush()
}

// csvHeader names the CSV columns after the ledger's fields.
var csvNumberHeader = []string{"requests", "errors", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd", "unpriced_requests"}

// WriteCSV writes the report as RFC 4180 CSV with a header row: one column
// per dimension, then the counts. There is no total row, so that a
// spreadsheet's SUM over a column is the total; a report with no grouping
// has one row, its total. cost_usd is exact decimal dollars, a lower bound
// when unpriced_requests is not 0, and empty when nothing in the row was
// priced.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	header := append(append([]string{}, r.GroupBy...), csvNumberHeader...)
	if err := cw.Write(header); err != nil {
		return err
	}
	rows := r.Rows
	if len(r.GroupBy) == 0 {
		rows = []Row{r.Total}
	}
	for i := range rows {
		row := &rows[i]
		rec := make([]string, 0, len(row.Keys)+len(csvNumberHeader))
		for _, k := range row.Keys {
			rec = append(rec, csvSafe(k))
		}
		rec = append(rec, numberCells(row, csvCost)...)
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvCost is a row's cost as the CSV writes it: exact dollars, empty when
// nothing in the row was priced.
func csvCost(r *Row) string {
	if !r.CostKnown() {
		return ""
	}
	return r.Cost.String()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula: a key
// (a user name, a team) that begins with =, +, -, @, a tab or a carriage
// return is written after a single quote, as OWASP advises for CSV
// exports. Every other key is written as it is.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

type jsonRow struct {
	Group    map[string]string `json:"group,omitempty"`
	Requests int64             `json:"requests"`
	Errors   int64             `json:"errors"`
	usage.Tokens
	// Cost is an exact JSON number, or null when nothing was priced.
	Cost     json.RawMessage `json:"cost_usd"`
	Unpriced int64           `json:"unpriced_requests"`
}

type jsonReport struct {
	GroupBy        []string  `json:"group_by"`
	Since          *string   `json:"since"`
	Until          *string   `json:"until"`
	Rows           []jsonRow `json:"rows"`
	Total          jsonRow   `json:"total"`
	PartialRecords int       `json:"partial_records"`
}

func toJSONRow(groupBy []string, r *Row) jsonRow {
	j := jsonRow{Requests: r.Requests, Errors: r.Errors, Tokens: r.Tokens, Unpriced: r.Unpriced, Cost: json.RawMessage("null")}
	if len(r.Keys) > 0 {
		j.Group = make(map[string]string, len(r.Keys))
		for i, k := range r.Keys {
			j.Group[groupBy[i]] = k
		}
	}
	if r.CostKnown() {
		j.Cost = json.RawMessage(r.Cost.String())
	}
	return j
}

func timeOrNull(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

// WriteJSON writes the report as one JSON object: group_by, the since and
// until bounds (null when open), rows (each with its keys under "group"),
// total, and partial_records. Token fields are named as in the ledger.
// cost_usd is an exact JSON number of dollars (never a float rounded
// twice), a lower bound when unpriced_requests is not 0, and null when
// nothing in the row was priced.
func (r *Report) WriteJSON(w io.Writer) error {
	out := jsonReport{
		GroupBy:        r.GroupBy,
		Since:          timeOrNull(r.Since),
		Until:          timeOrNull(r.Until),
		Rows:           make([]jsonRow, len(r.Rows)),
		Total:          toJSONRow(nil, &r.Total),
		PartialRecords: len(r.Partial),
	}
	if out.GroupBy == nil {
		out.GroupBy = []string{}
	}
	for i := range r.Rows {
		out.Rows[i] = toJSONRow(r.GroupBy, &r.Rows[i])
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
