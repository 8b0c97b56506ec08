package cur

import (
	"bytes"
	"compress/gzip"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

const (
	gwPrincipal  = "arn:aws:sts::123456789012:assumed-role/BedrockRole/gw-user-1"
	gwPrincipal2 = "arn:aws:sts::123456789012:assumed-role/BedrockRole/gw-tenant-acme"
	alice        = "arn:aws:iam::123456789012:user/alice"
)

var (
	april = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	day10 = time.Date(2026, 4, 10, 0, 0, 0, 0, time.UTC)
	day11 = time.Date(2026, 4, 11, 0, 0, 0, 0, time.UTC)
	day12 = time.Date(2026, 4, 12, 0, 0, 0, 0, time.UTC)
)

func mustMoney(t testing.TB, s string) pricing.Money {
	t.Helper()
	m, err := pricing.ParseMoney(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustQuantity(t testing.TB, s string) Quantity {
	t.Helper()
	q, err := ParseQuantity(s)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// sampleLines are lines as the article's gateway scenario shows them,
// plus a bypass, a Marketplace model, a tax line and a non-Bedrock line.
func sampleLines(t testing.TB) []Line {
	t.Helper()
	return []Line{
		{
			BillingPeriod: april, UsageStart: day10, UsageEnd: day11,
			Account: "123456789012", ProductCode: "AmazonBedrock", ProductName: "Amazon Bedrock",
			BillingEntity: "AWS", LineItemType: "Usage", Principal: gwPrincipal,
			UsageType: "USE1-Claude4.6Sonnet-input-tokens", Operation: "InvokeModelInference",
			UsageAmount: QuantityOf(27000), UnblendedCost: mustMoney(t, "0.081"), Currency: "USD",
			Tags: map[string]string{"iamPrincipal/team": "data-science"},
		},
		{
			BillingPeriod: april, UsageStart: day10, UsageEnd: day11,
			Account: "123456789012", ProductCode: "AmazonBedrock", ProductName: "Amazon Bedrock",
			BillingEntity: "AWS", LineItemType: "Usage", Principal: gwPrincipal2,
			UsageType: "USE1-Claude4.6Opus-output-tokens", Operation: "InvokeModelInference",
			UsageAmount: QuantityOf(37000), UnblendedCost: mustMoney(t, "0.925"), Currency: "USD",
			Tags:         map[string]string{"iamPrincipal/tenant": "acme-corp", "user:Project": "x, \"quoted\""},
			ResourceTags: map[string]string{"user:Project": "x, \"quoted\""},
		},
		{
			BillingPeriod: april, UsageStart: day10, UsageEnd: day11,
			Account: "123456789012", ProductCode: "c8qmqjw2ttz0qyqdmqy4yl3ss", ProductName: "Claude Opus 4.6 (Amazon Bedrock Edition)",
			BillingEntity: "AWS Marketplace", LineItemType: "Usage", Principal: alice,
			UsageType: "USE1-MP:USE1_OutputTokenCount-Units", Operation: "Usage",
			UsageAmount: mustQuantity(t, "0.0123"), UnblendedCost: mustMoney(t, "0.3075"), Currency: "USD",
		},
		{
			BillingPeriod: april, UsageStart: april, UsageEnd: april.AddDate(0, 1, 0),
			Account: "123456789012", ProductCode: "AmazonBedrock", BillingEntity: "AWS",
			LineItemType: "Tax", UsageType: "", UnblendedCost: mustMoney(t, "0.12"), Currency: "USD",
		},
		{
			BillingPeriod: april, UsageStart: day10, UsageEnd: day10.Add(time.Hour),
			Account: "123456789012", ProductCode: "AmazonS3", ProductName: "Amazon Simple Storage Service",
			BillingEntity: "AWS", LineItemType: "Usage", UsageType: "TimedStorage-ByteHrs",
			Operation: "StandardStorage", UsageAmount: mustQuantity(t, "0.000001234567"),
			UnblendedCost: mustMoney(t, "0.000000000001"), Currency: "USD",
		},
	}
}

// withProvenance returns lines with Path and Row set as a reader sets
// them.
func withProvenance(lines []Line, path string) []Line {
	out := make([]Line, len(lines))
	for i, l := range lines {
		l.Path, l.Row = path, i+1
		out[i] = l
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	lines := sampleLines(t)
	writers := []struct {
		name  string
		write func(*bytes.Buffer) error
	}{
		{"csv", func(b *bytes.Buffer) error { return WriteCSV(b, lines) }},
		{"csv.gz", func(b *bytes.Buffer) error {
			zw := gzip.NewWriter(b)
			if err := WriteCSV(zw, lines); err != nil {
				return err
			}
			return zw.Close()
		}},
		{"parquet", func(b *bytes.Buffer) error { return WriteParquet(b, lines) }},
	}
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := w.write(&buf); err != nil {
				t.Fatalf("write: %v", err)
			}
			name := "bill." + w.name
			got, err := Read(name, bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if diff := cmp.Diff(withProvenance(lines, name), got); diff != "" {
				t.Errorf("Read(Write(lines)) differs (-want +got):\n%s", diff)
			}

			// ReadFile reads Parquet in place rather than through Read.
			path := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err = ReadFile(path)
			if err != nil {
				t.Fatalf("ReadFile: %v", err)
			}
			if diff := cmp.Diff(withProvenance(lines, path), got); diff != "" {
				t.Errorf("ReadFile differs (-want +got):\n%s", diff)
			}
		})
	}
}

// awsCSV is a CSV file shaped as Data Exports writes one: more columns
// than the reader uses, in CUR 2.0's order, with the map columns as
// quoted JSON objects.
const awsCSV = `bill_bill_type,bill_billing_entity,bill_billing_period_end_date,bill_billing_period_start_date,bill_invoice_id,bill_payer_account_id,bill_payer_account_name,cost_category,discount,identity_line_item_id,identity_time_interval,line_item_availability_zone,line_item_blended_cost,line_item_currency_code,line_item_iam_principal,line_item_legal_entity,line_item_line_item_description,line_item_line_item_type,line_item_net_unblended_cost,line_item_operation,line_item_product_code,line_item_resource_id,line_item_unblended_cost,line_item_unblended_rate,line_item_usage_account_id,line_item_usage_account_name,line_item_usage_amount,line_item_usage_end_date,line_item_usage_start_date,line_item_usage_type,product,product_region_code,resource_tags,tags
Anniversary,AWS,2026-05-01T00:00:00.000Z,2026-04-01T00:00:00.000Z,,111111111111,Payer,{},{},abc,2026-04-10T00:00:00Z/2026-04-11T00:00:00Z,,0.081,USD,arn:aws:sts::123456789012:assumed-role/BedrockRole/gw-user-1,"Amazon Web Services, Inc.",$3 per million input tokens,Usage,,InvokeModelInference,AmazonBedrock,,0.081,0.000003,123456789012,dev,27000,2026-04-11T00:00:00.000Z,2026-04-10T00:00:00.000Z,USE1-Claude4.6Sonnet-input-tokens,"{""product_name"":""Amazon Bedrock"",""region"":""us-east-1""}",us-east-1,{},"{""iamPrincipal/team"":""data-science"",""iamPrincipal/cost-center"":""12345""}"
Anniversary,AWS Marketplace,2026-05-01 00:00:00.000,2026-04-01 00:00:00.000,,111111111111,Payer,,,def,,,,USD,arn:aws:iam::123456789012:user/alice,,,Usage,,Usage,c8qmqjw2ttz0qyqdmqy4yl3ss,,3.075E-1,,123456789012,dev,1.23E-2,,2026-04-10T00:00:00Z,USE1-MP:USE1_OutputTokenCount-Units,"{""product_name"":""Claude Opus 4.6 (Amazon Bedrock Edition)""}",,,
`

func TestReadCSV(t *testing.T) {
	want := []Line{
		{
			Path: "bill.csv", Row: 1,
			BillingPeriod: april, UsageStart: day10, UsageEnd: day11,
			Account: "123456789012", ProductCode: "AmazonBedrock", ProductName: "Amazon Bedrock",
			BillingEntity: "AWS", LineItemType: "Usage", Principal: gwPrincipal,
			UsageType: "USE1-Claude4.6Sonnet-input-tokens", Operation: "InvokeModelInference",
			UsageAmount: QuantityOf(27000), UnblendedCost: mustMoney(t, "0.081"), Currency: "USD",
			Tags: map[string]string{"iamPrincipal/team": "data-science", "iamPrincipal/cost-center": "12345"},
		},
		{
			Path: "bill.csv", Row: 2,
			BillingPeriod: april, UsageStart: day10,
			Account: "123456789012", ProductCode: "c8qmqjw2ttz0qyqdmqy4yl3ss", ProductName: "Claude Opus 4.6 (Amazon Bedrock Edition)",
			BillingEntity: "AWS Marketplace", LineItemType: "Usage", Principal: alice,
			UsageType: "USE1-MP:USE1_OutputTokenCount-Units", Operation: "Usage",
			UsageAmount: mustQuantity(t, "0.0123"), UnblendedCost: mustMoney(t, "0.3075"), Currency: "USD",
		},
	}
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"plain", []byte(awsCSV)},
		{"gzip", gz(awsCSV)},
		{"byte order mark and CRLF", []byte("\ufeff" + strings.ReplaceAll(awsCSV, "\n", "\r\n"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read("bill.csv", bytes.NewReader(tt.data))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Read differs (-want +got):\n%s", diff)
			}
		})
	}
}

// awsParquetLine is a CUR 2.0 row as AWS's Glue schema types it, built
// independently of the package's writer: other column order, extra
// columns, optional everything, microsecond timestamps, a map<string,
// double> discount column and real MAP<STRING,STRING> tag columns.
type awsParquetLine struct {
	Tags           map[string]string  `parquet:"tags,optional"`
	ResourceTags   map[string]string  `parquet:"resource_tags,optional"`
	Product        map[string]string  `parquet:"product,optional"`
	Discount       map[string]float64 `parquet:"discount,optional"`
	UsageType      *string            `parquet:"line_item_usage_type,optional"`
	UsageStart     *int64             `parquet:"line_item_usage_start_date,optional,timestamp(microsecond)"`
	UsageEnd       *int64             `parquet:"line_item_usage_end_date,optional,timestamp(microsecond)"`
	UsageAmount    *float64           `parquet:"line_item_usage_amount,optional"`
	UsageAccount   *string            `parquet:"line_item_usage_account_id,optional"`
	UnblendedCost  *float64           `parquet:"line_item_unblended_cost,optional"`
	NetCost        *float64           `parquet:"line_item_net_unblended_cost,optional"`
	ProductCode    *string            `parquet:"line_item_product_code,optional"`
	Operation      *string            `parquet:"line_item_operation,optional"`
	LineItemType   *string            `parquet:"line_item_line_item_type,optional"`
	Principal      *string            `parquet:"line_item_iam_principal,optional"`
	Currency       *string            `parquet:"line_item_currency_code,optional"`
	PeriodStart    *int64             `parquet:"bill_billing_period_start_date,optional,timestamp(microsecond)"`
	BillingEntity  *string            `parquet:"bill_billing_entity,optional"`
	LineItemID     *string            `parquet:"identity_line_item_id,optional"`
	TimeInterval   *string            `parquet:"identity_time_interval,optional"`
	SavingsPlanARN *string            `parquet:"savings_plan_savings_plan_a_r_n,optional"`
}

func ptr[T any](v T) *T { return &v }

func awsParquet(t testing.TB, rows []awsParquetLine) []byte {
	t.Helper()
	var b bytes.Buffer
	w := parquet.NewGenericWriter[awsParquetLine](&b, parquet.Compression(&parquet.Zstd))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadParquetFromAWSSchema(t *testing.T) {
	micros := func(tm time.Time) *int64 { return ptr(tm.UnixMicro()) }
	rows := []awsParquetLine{
		{
			Tags:         map[string]string{"iamPrincipal/team": "data-science", "user:env": "prod"},
			ResourceTags: map[string]string{"user:env": "prod"},
			Product:      map[string]string{"product_name": "Amazon Bedrock", "region": "us-east-1"},
			Discount:     map[string]float64{"bundled_discount": 0},
			UsageType:    ptr("USE1-Claude4.6Sonnet-input-tokens"),
			UsageStart:   micros(day10), UsageEnd: micros(day11),
			UsageAmount: ptr(27000.0), UsageAccount: ptr("123456789012"),
			UnblendedCost: ptr(0.081), NetCost: ptr(0.08),
			ProductCode: ptr("AmazonBedrock"), Operation: ptr("InvokeModelInference"),
			LineItemType: ptr("Usage"), Principal: ptr(gwPrincipal), Currency: ptr("USD"),
			PeriodStart: micros(april), BillingEntity: ptr("AWS"), LineItemID: ptr("x"),
		},
		{
			// Nulls everywhere they are allowed: no tags, no principal
			// (a service that does not record one), no amounts.
			UsageType:  ptr("TimedStorage-ByteHrs"),
			UsageStart: micros(day10), LineItemType: ptr("Usage"), ProductCode: ptr("AmazonS3"),
			PeriodStart: micros(april), UsageAccount: ptr("123456789012"),
		},
	}
	got, err := Read("bill.parquet", bytes.NewReader(awsParquet(t, rows)))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	want := []Line{
		{
			Path: "bill.parquet", Row: 1,
			BillingPeriod: april, UsageStart: day10, UsageEnd: day11,
			Account: "123456789012", ProductCode: "AmazonBedrock", ProductName: "Amazon Bedrock",
			BillingEntity: "AWS", LineItemType: "Usage", Principal: gwPrincipal,
			UsageType: "USE1-Claude4.6Sonnet-input-tokens", Operation: "InvokeModelInference",
			UsageAmount: QuantityOf(27000), UnblendedCost: mustMoney(t, "0.081"), Currency: "USD",
			Tags:         map[string]string{"iamPrincipal/team": "data-science", "user:env": "prod"},
			ResourceTags: map[string]string{"user:env": "prod"},
		},
		{
			Path: "bill.parquet", Row: 2,
			BillingPeriod: april, UsageStart: day10,
			Account: "123456789012", ProductCode: "AmazonS3", LineItemType: "Usage",
			UsageType: "TimedStorage-ByteHrs",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Read differs (-want +got):\n%s", diff)
	}
}

// TestReadParquetINT96 reads timestamps as Hive and Impala write them.
func TestReadParquetINT96(t *testing.T) {
	type row struct {
		PeriodStart  deprecatedInt96   `parquet:"bill_billing_period_start_date"`
		UsageStart   deprecatedInt96   `parquet:"line_item_usage_start_date"`
		Account      string            `parquet:"line_item_usage_account_id"`
		LineItemType string            `parquet:"line_item_line_item_type"`
		ProductCode  string            `parquet:"line_item_product_code"`
		UsageType    string            `parquet:"line_item_usage_type"`
		Principal    string            `parquet:"line_item_iam_principal"`
		UsageAmount  float64           `parquet:"line_item_usage_amount"`
		Cost         float64           `parquet:"line_item_unblended_cost"`
		Tags         map[string]string `parquet:"tags"`
	}
	var b bytes.Buffer
	w := parquet.NewGenericWriter[row](&b)
	if _, err := w.Write([]row{{
		PeriodStart: int96Of(april), UsageStart: int96Of(day10.Add(90 * time.Minute)),
		Account: "1", LineItemType: "Usage", ProductCode: "AmazonBedrock", UsageType: "u",
		UsageAmount: 0.1, Cost: 1e-13,
	}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := Read("hive.parquet", &b)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	want := []Line{{
		Path: "hive.parquet", Row: 1, BillingPeriod: april, UsageStart: day10.Add(90 * time.Minute),
		Account: "1", LineItemType: "Usage", ProductCode: "AmazonBedrock", UsageType: "u",
		UsageAmount: mustQuantity(t, "0.1"), UnblendedCost: 0, // 1e-13 rounds half to even to 0 picodollars
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Read differs (-want +got):\n%s", diff)
	}
}

type deprecatedInt96 = deprecated.Int96

func int96Of(tm time.Time) deprecated.Int96 {
	day := utcDay(tm)
	nanos := uint64(tm.Sub(day))
	julian := uint32(day.Unix()/86400 + julianUnixEpoch)
	return deprecated.Int96{uint32(nanos), uint32(nanos >> 32), julian}
}

// minimalHeader is the required columns and nothing else.
const minimalHeader = "bill_billing_period_start_date,line_item_usage_account_id,line_item_line_item_type,line_item_usage_start_date,line_item_product_code,line_item_usage_type,line_item_iam_principal,line_item_usage_amount,line_item_unblended_cost,tags\n"

const goodRow = "2026-04-01T00:00:00Z,1,Usage,2026-04-10T00:00:00Z,AmazonBedrock,u,p,1,0.5,{}\n"

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		// want are substrings every one of which the error must contain.
		want []string
	}{
		{
			name: "missing columns",
			data: "line_item_usage_type,line_item_usage_amount\nu,1\n",
			want: []string{"bill.csv: missing required column(s) bill_billing_period_start_date,", "line_item_iam_principal", "tags"},
		},
		{
			name: "empty",
			data: "",
			want: []string{"bill.csv: empty file"},
		},
		{
			name: "repeated column",
			data: strings.TrimSuffix(minimalHeader, "\n") + ",tags\n",
			want: []string{"bill.csv: header repeats column(s) tags"},
		},
		{
			name: "bad values name file, row and column",
			data: minimalHeader + goodRow +
				"2026-04-01T00:00:00Z,1,Usage,2026-04-10T00:00:00Z,AmazonBedrock,u,p,12 tokens,0.5,{}\n" +
				"2026-04-01T00:00:00Z,1,Usage,yesterday,AmazonBedrock,u,p,1,0.5,\"{\"\"team\"\":1}\"\n" +
				"2026-04-01T00:00:00Z,1,Usage\n" +
				",1,Usage,2026-04-10T00:00:00Z,AmazonBedrock,u,p,1,NaN,{}\n",
			want: []string{
				`bill.csv: row 2: line_item_usage_amount: "12 tokens": not a decimal number`,
				`bill.csv: row 3: line_item_usage_start_date: "yesterday": not a timestamp`,
				`bill.csv: row 3: tags: "{\"team\":1}": not a JSON object of strings`,
				"bill.csv: row 4: has 3 fields, the header has 10",
				"bill.csv: row 5: line_item_unblended_cost: \"NaN\": not a decimal number",
				"bill.csv: row 5: empty bill_billing_period_start_date",
			},
		},
		{
			name: "cost beyond pricing.Money",
			data: minimalHeader + "2026-04-01T00:00:00Z,1,Usage,2026-04-10T00:00:00Z,AmazonBedrock,u,p,1,1e10,{}\n",
			want: []string{"bill.csv: row 1: line_item_unblended_cost: 10000000000: does not fit in pricing.Money"},
		},
		{
			name: "absurd exponent",
			data: minimalHeader + "2026-04-01T00:00:00Z,1,Usage,2026-04-10T00:00:00Z,AmazonBedrock,u,p,1e999999999,0,{}\n",
			want: []string{"bill.csv: row 1: line_item_usage_amount: \"1e999999999\": exponent beyond ±400"},
		},
		{
			name: "end before start",
			data: "line_item_usage_end_date," + minimalHeader + "2026-04-09T00:00:00Z," + goodRow,
			want: []string{"bill.csv: row 1: line_item_usage_end_date 2026-04-09T00:00:00Z is before line_item_usage_start_date"},
		},
		{
			name: "bare quote",
			data: minimalHeader + goodRow + "2026-04-01T00:00:00Z,1,Us\"age,2026-04-10T00:00:00Z,AmazonBedrock,u,p,1,0.5,{}\n",
			want: []string{"bill.csv: row 2: line 3, column 26: bare \" in non-quoted-field"},
		},
		{
			name: "zip",
			data: "PK\x03\x04rest",
			want: []string{"bill.csv: zip archive"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read("bill.csv", strings.NewReader(tt.data))
			if err == nil {
				t.Fatalf("Read = %d lines, nil error; want an error", len(got))
			}
			if got != nil {
				t.Errorf("Read returned %d lines with its error, want none", len(got))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Read error = %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestReadMissingColumnsError(t *testing.T) {
	_, err := Read("bill.csv", strings.NewReader("tags\n{}\n"))
	var mc *MissingColumnsError
	if !errors.As(err, &mc) {
		t.Fatalf("Read error = %v, want a *MissingColumnsError", err)
	}
	if mc.Path != "bill.csv" || !slices.Contains(mc.Columns, "line_item_iam_principal") || slices.Contains(mc.Columns, "tags") {
		t.Errorf("MissingColumnsError = %+v, want bill.csv missing line_item_iam_principal but not tags", mc)
	}
	if !errors.Is(err, ErrFormat) {
		t.Errorf("errors.Is(%v, ErrFormat) = false, want true", err)
	}
}

func TestReadRowErrorsAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(minimalHeader)
	for range 25 {
		b.WriteString("2026-04-01T00:00:00Z,1,Usage,2026-04-10T00:00:00Z,AmazonBedrock,u,p,x,0,{}\n")
	}
	_, err := Read("bill.csv", strings.NewReader(b.String()))
	if err == nil || !strings.Contains(err.Error(), "bill.csv: row 20:") || strings.Contains(err.Error(), "row 21:") ||
		!strings.Contains(err.Error(), "bill.csv: 5 more row error(s) not shown") {
		t.Errorf("Read error = %v\nwant rows 1-20 and a note of 5 more", err)
	}
	var re *RowError
	if !errors.As(err, &re) || re.Path != "bill.csv" || re.Row != 1 || re.Column != colUsageAmount {
		t.Errorf("errors.As(RowError) = %+v, want bill.csv row 1 %s", re, colUsageAmount)
	}
}

func TestReadParquetErrors(t *testing.T) {
	good := awsParquet(t, []awsParquetLine{{UsageStart: ptr(day10.UnixMicro()), PeriodStart: ptr(april.UnixMicro())}})

	type wrongTypes struct {
		PeriodStart  int64   `parquet:"bill_billing_period_start_date"`
		UsageStart   string  `parquet:"line_item_usage_start_date"`
		Account      int64   `parquet:"line_item_usage_account_id"`
		LineItemType string  `parquet:"line_item_line_item_type"`
		ProductCode  string  `parquet:"line_item_product_code"`
		UsageType    string  `parquet:"line_item_usage_type"`
		Principal    string  `parquet:"line_item_iam_principal"`
		UsageAmount  bool    `parquet:"line_item_usage_amount"`
		Cost         float64 `parquet:"line_item_unblended_cost"`
		Tags         int32   `parquet:"tags"`
	}
	var wrong bytes.Buffer
	w := parquet.NewGenericWriter[wrongTypes](&wrong)
	w.Write([]wrongTypes{{UsageStart: "not a time"}})
	w.Close()

	type missing struct {
		UsageType string `parquet:"line_item_usage_type"`
	}
	var miss bytes.Buffer
	mw := parquet.NewGenericWriter[missing](&miss)
	mw.Write([]missing{{"u"}})
	mw.Close()

	tests := []struct {
		name string
		data []byte
		want []string
	}{
		{"truncated", good[:len(good)-10], []string{"bill.parquet: not a readable Parquet file"}},
		{"magic only", []byte("PAR1"), []string{"bill.parquet: not a readable Parquet file"}},
		{"missing columns", miss.Bytes(), []string{"bill.parquet: missing required column(s) bill_billing_period_start_date"}},
		{"wrong types", wrong.Bytes(), []string{
			"bill.parquet: column bill_billing_period_start_date: is INT64 without a TIMESTAMP annotation",
			"bill.parquet: column line_item_usage_account_id: has physical type INT64, want BYTE_ARRAY",
			"bill.parquet: column line_item_usage_amount: has physical type BOOLEAN, want DOUBLE",
			"bill.parquet: column tags: has physical type INT32, want a MAP",
		}},
		{"bad value", func() []byte {
			type r struct {
				PeriodStart  string            `parquet:"bill_billing_period_start_date"`
				UsageStart   string            `parquet:"line_item_usage_start_date"`
				Account      string            `parquet:"line_item_usage_account_id"`
				LineItemType string            `parquet:"line_item_line_item_type"`
				ProductCode  string            `parquet:"line_item_product_code"`
				UsageType    string            `parquet:"line_item_usage_type"`
				Principal    string            `parquet:"line_item_iam_principal"`
				UsageAmount  float64           `parquet:"line_item_usage_amount"`
				Cost         string            `parquet:"line_item_unblended_cost"`
				Tags         map[string]string `parquet:"tags"`
			}
			var b bytes.Buffer
			w := parquet.NewGenericWriter[r](&b)
			w.Write([]r{
				{PeriodStart: "2026-04-01", UsageStart: "2026-04-10T00:00:00Z", Cost: "1"},
				{PeriodStart: "2026-04-01", UsageStart: "soon", Cost: "1"},
				{PeriodStart: "2026-04-01", UsageStart: "2026-04-10T00:00:00Z", UsageAmount: math.Inf(1), Cost: "a lot"},
			})
			w.Close()
			return b.Bytes()
		}(), []string{
			`bill.parquet: row 2: line_item_usage_start_date: "soon": not a timestamp`,
			"bill.parquet: row 3: line_item_usage_amount: not a finite number",
			`bill.parquet: row 3: line_item_unblended_cost: "a lot": not a decimal number`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read("bill.parquet", bytes.NewReader(tt.data))
			if err == nil {
				t.Fatalf("Read = %d lines, nil error; want an error", len(got))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Read error = %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// TestReadParquetTagsAsJSON reads a tags column holding JSON text rather
// than a MAP, as conversions of CSV exports to Parquet write it.
func TestReadParquetTagsAsJSON(t *testing.T) {
	type row struct {
		PeriodStart  string  `parquet:"bill_billing_period_start_date"`
		UsageStart   string  `parquet:"line_item_usage_start_date"`
		Account      string  `parquet:"line_item_usage_account_id"`
		LineItemType string  `parquet:"line_item_line_item_type"`
		ProductCode  string  `parquet:"line_item_product_code"`
		UsageType    string  `parquet:"line_item_usage_type"`
		Principal    string  `parquet:"line_item_iam_principal"`
		UsageAmount  float64 `parquet:"line_item_usage_amount"`
		Cost         float64 `parquet:"line_item_unblended_cost"`
		Tags         string  `parquet:"tags"`
	}
	var b bytes.Buffer
	w := parquet.NewGenericWriter[row](&b)
	if _, err := w.Write([]row{{PeriodStart: "2026-04-01", UsageStart: "2026-04-10 00:00:00", Tags: `{"iamPrincipal/team":"ds"}`}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := Read("bill.parquet", &b)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	want := []Line{{Path: "bill.parquet", Row: 1, BillingPeriod: april, UsageStart: day10, Tags: map[string]string{"iamPrincipal/team": "ds"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Read differs (-want +got):\n%s", diff)
	}
}
