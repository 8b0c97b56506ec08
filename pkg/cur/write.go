package cur

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
)

// The writers produce what a CUR 2.0 Data Export with IAM principal data
// looks like, for the gateway's dev mode, which emulates a bill: a
// realistic subset of the CUR 2.0 columns under their AWS names and
// types, including every column the readers require. Columns that
// describe the bill rather than the line (bill type, payer, line item
// ID, time interval, rate) are derived from the line; the readers ignore
// them, so that Read(Write(lines)) == lines.

// writtenColumns are the columns the writers produce, in the order CUR
// 2.0 lists them (alphabetical within each group).
var writtenColumns = []string{
	colBillType,
	colBillingEntity,
	colPeriodEnd,
	colPeriodStart,
	colPayerAccount,
	colLineItemID,
	colTimeInterval,
	colCurrency,
	colPrincipal,
	colLineItemType,
	colOperation,
	colProductCode,
	colUnblendedCost,
	colUnblendedRate,
	colUsageAccount,
	colUsageAmount,
	colUsageEnd,
	colUsageStart,
	colUsageType,
	colProduct,
	colResourceTags,
	colTags,
}

// csvTime is how the CSV writer spells a timestamp: RFC 3339 in UTC with
// milliseconds, as the Data Exports documentation shows them
// ("2023-10-01T00:00:00.000Z").
const csvTime = "2006-01-02T15:04:05.000Z"

// intervalTime is identity_time_interval's spelling of its two ends.
const intervalTime = "2006-01-02T15:04:05Z"

// WriteCSV writes lines as a CUR 2.0 CSV file: a header row, then one
// row per line. Amounts are written as exact decimals, times as
// "2026-04-01T00:00:00.000Z", map columns as JSON objects. Data Exports
// gzips its CSV files; wrap w in a gzip.Writer to do the same.
func WriteCSV(w io.Writer, lines []Line) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(writtenColumns); err != nil {
		return err
	}
	rec := make([]string, len(writtenColumns))
	for i := range lines {
		d := derive(&lines[i], i)
		l := &lines[i]
		for j, col := range writtenColumns {
			var s string
			switch col {
			case colBillType:
				s = d.billType
			case colBillingEntity:
				s = l.BillingEntity
			case colPeriodEnd:
				s = csvTimeString(d.periodEnd)
			case colPeriodStart:
				s = csvTimeString(l.BillingPeriod)
			case colPayerAccount:
				s = d.payer
			case colLineItemID:
				s = d.id
			case colTimeInterval:
				s = d.interval
			case colCurrency:
				s = l.Currency
			case colPrincipal:
				s = l.Principal
			case colLineItemType:
				s = l.LineItemType
			case colOperation:
				s = l.Operation
			case colProductCode:
				s = l.ProductCode
			case colUnblendedCost:
				s = l.UnblendedCost.String()
			case colUnblendedRate:
				s = d.rate
			case colUsageAccount:
				s = l.Account
			case colUsageAmount:
				s = l.UsageAmount.String()
			case colUsageEnd:
				s = csvTimeString(l.UsageEnd)
			case colUsageStart:
				s = csvTimeString(l.UsageStart)
			case colUsageType:
				s = l.UsageType
			case colProduct:
				s = jsonMap(d.product)
			case colResourceTags:
				s = jsonMap(l.ResourceTags)
			case colTags:
				s = jsonMap(l.Tags)
			}
			rec[j] = s
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvTimeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(csvTime)
}

// jsonMap writes m as a JSON object with sorted keys; an empty map is
// "{}".
func jsonMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m) // a map[string]string always marshals
	return string(b)
}

// derived holds the columns the writers make up from a line.
type derived struct {
	billType  string
	periodEnd time.Time
	payer     string
	id        string
	interval  string
	rate      string
	product   map[string]string
}

var lineItemIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func derive(l *Line, i int) derived {
	d := derived{billType: "Anniversary", payer: l.Account}
	if !l.BillingPeriod.IsZero() {
		d.periodEnd = l.BillingPeriod.AddDate(0, 1, 0)
	}
	// identity_line_item_id: AWS's are opaque 52-character base32
	// strings; a hash of the line's position and identity looks the same
	// and is stable across runs.
	h := sha256.Sum256(fmt.Appendf(nil, "%d\x00%s\x00%s\x00%s\x00%s", i, l.Principal, l.UsageType, l.UsageStart, l.Account))
	d.id = strings.ToLower(lineItemIDEncoding.EncodeToString(h[:]))[:52]
	if !l.UsageStart.IsZero() && !l.UsageEnd.IsZero() {
		d.interval = l.UsageStart.UTC().Format(intervalTime) + "/" + l.UsageEnd.UTC().Format(intervalTime)
	}
	if l.UsageAmount.Sign() != 0 {
		r := new(big.Rat).Quo(new(big.Rat).SetFrac(big.NewInt(int64(l.UnblendedCost)), picoPerUnit), l.UsageAmount.Rat())
		d.rate = strings.TrimRight(strings.TrimRight(r.FloatString(12), "0"), ".")
	}
	if l.ProductName != "" {
		d.product = map[string]string{productNameKey: l.ProductName}
	}
	return d
}

// parquetLine is a row of the Parquet writer. Every column is optional,
// as in the files AWS writes, and nulls read back as the zero value.
// Times are TIMESTAMP(MILLIS, UTC), amounts DOUBLE, maps
// MAP<STRING,STRING>.
type parquetLine struct {
	BillType      string            `parquet:"bill_bill_type,optional"`
	BillingEntity string            `parquet:"bill_billing_entity,optional"`
	PeriodEnd     time.Time         `parquet:"bill_billing_period_end_date,optional,timestamp(millisecond)"`
	PeriodStart   time.Time         `parquet:"bill_billing_period_start_date,optional,timestamp(millisecond)"`
	Payer         string            `parquet:"bill_payer_account_id,optional"`
	LineItemID    string            `parquet:"identity_line_item_id,optional"`
	TimeInterval  string            `parquet:"identity_time_interval,optional"`
	Currency      string            `parquet:"line_item_currency_code,optional"`
	Principal     string            `parquet:"line_item_iam_principal,optional"`
	LineItemType  string            `parquet:"line_item_line_item_type,optional"`
	Operation     string            `parquet:"line_item_operation,optional"`
	ProductCode   string            `parquet:"line_item_product_code,optional"`
	UnblendedCost *float64          `parquet:"line_item_unblended_cost,optional"`
	UnblendedRate string            `parquet:"line_item_unblended_rate,optional"`
	UsageAccount  string            `parquet:"line_item_usage_account_id,optional"`
	UsageAmount   *float64          `parquet:"line_item_usage_amount,optional"`
	UsageEnd      time.Time         `parquet:"line_item_usage_end_date,optional,timestamp(millisecond)"`
	UsageStart    time.Time         `parquet:"line_item_usage_start_date,optional,timestamp(millisecond)"`
	UsageType     string            `parquet:"line_item_usage_type,optional"`
	Product       map[string]string `parquet:"product,optional"`
	ResourceTags  map[string]string `parquet:"resource_tags,optional"`
	Tags          map[string]string `parquet:"tags,optional"`
}

// parquetSchema names the schema as Spark and Glue do rather than after
// the Go type.
var parquetSchema = parquet.NewSchema("spark_schema", parquet.SchemaOf(parquetLine{}))

// WriteParquet writes lines as a CUR 2.0 Parquet file (Snappy
// compressed, as Data Exports writes them). Amounts become doubles, as in
// AWS's files: a decimal with more than 15 significant digits may not
// survive the trip, and times keep whole milliseconds.
func WriteParquet(w io.Writer, lines []Line) error {
	pw := parquet.NewGenericWriter[parquetLine](w, parquetSchema, parquet.Compression(&parquet.Snappy))
	const batch = 1024
	buf := make([]parquetLine, 0, batch)
	for i := range lines {
		l := &lines[i]
		d := derive(l, i)
		cost, _ := big.NewRat(int64(l.UnblendedCost), 1_000_000_000_000).Float64()
		amount, _ := l.UsageAmount.Rat().Float64()
		buf = append(buf, parquetLine{
			BillType:      d.billType,
			BillingEntity: l.BillingEntity,
			PeriodEnd:     d.periodEnd,
			PeriodStart:   l.BillingPeriod,
			Payer:         d.payer,
			LineItemID:    d.id,
			TimeInterval:  d.interval,
			Currency:      l.Currency,
			Principal:     l.Principal,
			LineItemType:  l.LineItemType,
			Operation:     l.Operation,
			ProductCode:   l.ProductCode,
			UnblendedCost: &cost,
			UnblendedRate: d.rate,
			UsageAccount:  l.Account,
			UsageAmount:   &amount,
			UsageEnd:      l.UsageEnd,
			UsageStart:    l.UsageStart,
			UsageType:     l.UsageType,
			Product:       d.product,
			ResourceTags:  l.ResourceTags,
			Tags:          l.Tags,
		})
		if len(buf) == batch {
			if _, err := pw.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if _, err := pw.Write(buf); err != nil {
		return err
	}
	return pw.Close()
}
