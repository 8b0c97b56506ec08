package cur

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

// FuzzReadCSV feeds the CSV reader arbitrary files: it must never panic,
// every error must name the file, and what it accepts must survive being
// written and read again.
func FuzzReadCSV(f *testing.F) {
	f.Add([]byte(awsCSV))
	f.Add([]byte(minimalHeader + goodRow))
	f.Add([]byte(minimalHeader + "2026-04-01T00:00:00Z,1,Usage,yesterday,AmazonBedrock,u,p,1e999,NaN,\"{\"\"a\"\":1}\"\n"))
	f.Add([]byte("line_item_usage_end_date," + minimalHeader + "2026-04-11 00:00:00.000," + goodRow))
	f.Add([]byte(minimalHeader + "2026-04-01,1,Usage,2026-04-10T00:00:00Z,AmazonBedrock,u,p,.5,-3.075E-1,\"{\"\"iamPrincipal/team\"\":\"\"a,\\\"\"b\"\"}\"\n"))
	var b bytes.Buffer
	if err := WriteCSV(&b, sampleLines(f)); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.HasPrefix(data, []byte(parquetMagic)) || bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
			t.Skip("not CSV")
		}
		lines, err := Read("fuzz.csv", bytes.NewReader(data))
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.csv") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		var out bytes.Buffer
		if err := WriteCSV(&out, lines); err != nil {
			t.Fatalf("WriteCSV of lines Read accepted: %v", err)
		}
		again, err := Read("fuzz.csv", &out)
		if err != nil {
			t.Fatalf("reading back what WriteCSV wrote: %v\n%s", err, out.Bytes())
		}
		if len(again) != len(lines) {
			t.Fatalf("read back %d lines, wrote %d", len(again), len(lines))
		}
		for i := range lines {
			a, b := lines[i], again[i]
			if !a.UsageAmount.Equal(b.UsageAmount) || a.UnblendedCost != b.UnblendedCost || a.Principal != b.Principal ||
				a.UsageType != b.UsageType || !mapsEqual(a.Tags, b.Tags) {
				t.Fatalf("line %d changed on the round trip:\n%+v\n%+v", i+1, a, b)
			}
		}
	})
}

// FuzzReadParquet feeds the reader arbitrary Parquet files: it must
// never panic or run away with memory, and every error must name the
// file.
func FuzzReadParquet(f *testing.F) {
	var b bytes.Buffer
	if err := WriteParquet(&b, sampleLines(f)); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(b.Bytes()[:len(b.Bytes())/2])
	f.Add(awsParquet(f, []awsParquetLine{
		{Tags: map[string]string{"k": "v"}, UsageStart: ptr(day10.UnixMicro()), PeriodStart: ptr(april.UnixMicro()), UsageAmount: ptr(1.5)},
		{},
	}))
	f.Add([]byte(parquetMagic))
	f.Add([]byte(parquetMagic + "\x00\x00\x00\x00" + parquetMagic))
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b.Bytes())
	zw.Close()
	f.Add(z.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := Read("fuzz.parquet", bytes.NewReader(data))
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.parquet") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, l := range lines {
			if l.Path != "fuzz.parquet" || l.Row < 1 {
				t.Fatalf("line without provenance: %+v", l)
			}
		}
	})
}
