package cur

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"
)

// readParquet reads a CUR 2.0 Parquet file column by column, decoding
// only the columns the package uses (a CUR file has a hundred and more).
//
// The Parquet library trusts the file's metadata more than a reader of
// untrusted input should, and can panic on a corrupt file; a panic while
// decoding is turned into an error naming the file, so that one bad
// download cannot take the process down.
func readParquet(name string, r io.ReaderAt, size int64) (lines []Line, err error) {
	defer func() {
		if p := recover(); p != nil {
			lines, err = nil, fmt.Errorf("%s: corrupt Parquet file (%s): %w", name, truncate(fmt.Sprint(p)), ErrFormat)
		}
	}()
	f, err := parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w: %w", name, err, ErrFormat)
	}
	top := make(map[string]*parquet.Column)
	for _, c := range f.Root().Columns() {
		if _, dup := top[c.Name()]; dup {
			return nil, fmt.Errorf("%s: schema repeats column %s: %w", name, c.Name(), ErrFormat)
		}
		top[c.Name()] = c
	}
	if err := checkColumns(name, func(c string) bool { return top[c] != nil }); err != nil {
		return nil, err
	}
	var decoders []columnDecoder
	var schemaErrs []error
	for _, col := range slices.Sorted(maps.Keys(readColumns)) {
		kind := readColumns[col]
		c := top[col]
		if c == nil {
			continue
		}
		d, err := newColumnDecoder(col, kind, c)
		if err != nil {
			schemaErrs = append(schemaErrs, fmt.Errorf("%s: column %s: %w: %w", name, col, err, ErrFormat))
			continue
		}
		decoders = append(decoders, d)
	}
	if len(schemaErrs) > 0 {
		return nil, errors.Join(schemaErrs...)
	}
	if err := checkSizes(f, size); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, err, ErrFormat)
	}

	errs := rowErrors{path: name}
	base := 0
	for _, rg := range f.RowGroups() {
		n := int(rg.NumRows())
		group := make([]Line, n)
		for i := range group {
			group[i] = Line{Path: name, Row: base + i + 1}
		}
		for _, d := range decoders {
			if err := d.decode(rg, group, &errs); err != nil {
				return nil, fmt.Errorf("%s: column %s: %w", name, d.name(), err)
			}
		}
		for i := range group {
			if err := group[i].finish(); err != nil {
				errs.add(group[i].Row, "", err)
			}
		}
		if errs.full() {
			errs.stoppedAt = base + n
			break
		}
		lines = append(lines, group...)
		base += n
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return lines, nil
}

// maxRowsPerByte bounds the rows a file may claim per byte of its size.
// Parquet can encode a million nulls in a few bytes, so a small hostile
// file could otherwise make the reader allocate gigabytes; a real CUR
// row, with its line item ID, times and amounts, takes tens of bytes
// even compressed.
const maxRowsPerByte = 8

// maxInflation bounds how much larger than the file its pages may claim
// to be once decompressed, for the same reason.
const maxInflation = 1024

func checkSizes(f *parquet.File, size int64) error {
	limit := maxRowsPerByte*size + 1024
	if rows := f.NumRows(); rows < 0 || rows > limit {
		return fmt.Errorf("claims %d rows in %d bytes", rows, size)
	}
	var rows, unpacked int64
	for _, rg := range f.Metadata().RowGroups {
		if rg.NumRows < 0 {
			return fmt.Errorf("row group claims %d rows", rg.NumRows)
		}
		rows += rg.NumRows
		for _, cc := range rg.Columns {
			u := cc.MetaData.TotalUncompressedSize
			if u < 0 || u > maxInflation*size {
				return fmt.Errorf("column chunk claims %d bytes uncompressed in a %d-byte file", u, size)
			}
			unpacked += u
		}
	}
	if rows > limit {
		return fmt.Errorf("row groups claim %d rows in %d bytes", rows, size)
	}
	if unpacked > maxInflation*size {
		return fmt.Errorf("columns claim %d bytes uncompressed in a %d-byte file", unpacked, size)
	}
	return nil
}

// columnDecoder turns one top-level column of a row group into fields of
// its lines.
type columnDecoder interface {
	name() string
	decode(rg parquet.RowGroup, lines []Line, errs *rowErrors) error
}

func newColumnDecoder(col string, kind colKind, c *parquet.Column) (columnDecoder, error) {
	if kind == kindMap && !c.Leaf() {
		return newMapDecoder(col, c)
	}
	if !c.Leaf() {
		return nil, errors.New("is a group, want a plain value")
	}
	if c.MaxRepetitionLevel() != 0 {
		return nil, errors.New("is repeated, want one value a row")
	}
	d := &leafDecoder{col: col, leaf: c.Index(), maxDef: c.MaxDefinitionLevel()}
	t := c.Type()
	lt := t.LogicalType()
	ct := t.ConvertedType()
	switch kind {
	case kindString:
		switch t.Kind() {
		case parquet.ByteArray, parquet.FixedLenByteArray:
			d.conv = func(l *Line, v parquet.Value) error {
				setString(l, col, string(v.ByteArray()))
				return nil
			}
		default:
			return nil, fmt.Errorf("has physical type %s, want BYTE_ARRAY (string)", t.Kind())
		}
	case kindDouble:
		conv, err := numberConv(t.Kind(), lt)
		if err != nil {
			return nil, err
		}
		d.conv = func(l *Line, v parquet.Value) error {
			q, err := conv(v)
			if err != nil {
				return err
			}
			return setQuantity(l, col, q)
		}
	case kindMap:
		// A map written as its JSON text, as in CSV (some conversions
		// of CSV exports to Parquet do this).
		if t.Kind() != parquet.ByteArray {
			return nil, fmt.Errorf("has physical type %s, want a MAP", t.Kind())
		}
		d.conv = func(l *Line, v parquet.Value) error {
			m, err := parseMap(string(v.ByteArray()))
			if err != nil {
				return err
			}
			setMap(l, col, m)
			return nil
		}
	case kindTimestamp:
		conv, err := timeConv(t.Kind(), lt, ct)
		if err != nil {
			return nil, err
		}
		d.conv = func(l *Line, v parquet.Value) error {
			tm, err := conv(v)
			if err != nil {
				return err
			}
			setTime(l, col, tm)
			return nil
		}
	}
	return d, nil
}

// numberConv returns how to read a number of the given physical type:
// DOUBLE (what CUR writes), FLOAT, INT32/INT64 (plain or DECIMAL) or a
// decimal string.
func numberConv(k parquet.Kind, lt *format.LogicalType) (func(parquet.Value) (Quantity, error), error) {
	scale := int32(0)
	if lt != nil {
		if dec, ok := lt.Value.(*format.DecimalType); ok {
			scale = dec.Scale
		}
	}
	if scale < 0 || scale > 38 {
		return nil, fmt.Errorf("has DECIMAL scale %d", scale)
	}
	switch k {
	case parquet.Double:
		return func(v parquet.Value) (Quantity, error) { return quantityFromFloat(v.Double()) }, nil
	case parquet.Float:
		// A float32 widened to float64 is exact; its shortest decimal as
		// a float32 is what the writer meant.
		return func(v parquet.Value) (Quantity, error) {
			f := float64(v.Float())
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return Quantity{}, errNotFinite
			}
			return quantityFromText(fmt.Sprint(v.Float()))
		}, nil
	case parquet.Int32:
		return func(v parquet.Value) (Quantity, error) { return scaled(big.NewInt(int64(v.Int32())), scale) }, nil
	case parquet.Int64:
		return func(v parquet.Value) (Quantity, error) { return scaled(big.NewInt(v.Int64()), scale) }, nil
	case parquet.ByteArray, parquet.FixedLenByteArray:
		if scale > 0 || (lt != nil && lt.Value != nil && isDecimal(lt)) {
			return func(v parquet.Value) (Quantity, error) {
				b := v.ByteArray()
				if len(b) > 32 {
					return Quantity{}, errTooLarge
				}
				return scaled(twosComplement(b), scale)
			}, nil
		}
		return func(v parquet.Value) (Quantity, error) {
			s := strings.TrimSpace(string(v.ByteArray()))
			q, err := quantityFromText(s)
			if err != nil {
				return Quantity{}, fmt.Errorf("%q: %w", truncate(s), err)
			}
			return q, nil
		}, nil
	}
	return nil, fmt.Errorf("has physical type %s, want DOUBLE", k)
}

func isDecimal(lt *format.LogicalType) bool {
	_, ok := lt.Value.(*format.DecimalType)
	return ok
}

// scaled returns n×10^-scale.
func scaled(n *big.Int, scale int32) (Quantity, error) {
	r := new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil))
	p, err := decimalToPico(r.FloatString(int(scale)))
	if err != nil {
		return Quantity{}, err
	}
	return Quantity{pico: *p}, nil
}

// twosComplement reads a big-endian two's complement integer, the way
// Parquet stores a DECIMAL in a byte array.
func twosComplement(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return n
}

// julianUnixEpoch is the Julian day number of 1970-01-01, for INT96
// timestamps (Impala and Hive write them: nanoseconds of the day, then
// the Julian day).
const julianUnixEpoch = 2440588

// timeConv returns how to read a timestamp of the given physical type:
// INT64 annotated TIMESTAMP (any unit), INT96, INT32 DATE, or text.
func timeConv(k parquet.Kind, lt *format.LogicalType, ct *deprecated.ConvertedType) (func(parquet.Value) (time.Time, error), error) {
	switch k {
	case parquet.Int64:
		unit := time.Duration(0)
		if lt != nil {
			if ts, ok := lt.Value.(*format.TimestampType); ok {
				switch ts.Unit.Value.(type) {
				case *format.MilliSeconds:
					unit = time.Millisecond
				case *format.MicroSeconds:
					unit = time.Microsecond
				case *format.NanoSeconds:
					unit = time.Nanosecond
				}
			}
		}
		if unit == 0 && ct != nil {
			switch *ct {
			case deprecated.TimestampMillis:
				unit = time.Millisecond
			case deprecated.TimestampMicros:
				unit = time.Microsecond
			}
		}
		if unit == 0 {
			return nil, errors.New("is INT64 without a TIMESTAMP annotation")
		}
		return func(v parquet.Value) (time.Time, error) {
			n := v.Int64()
			switch unit {
			case time.Millisecond:
				return time.UnixMilli(n).UTC(), nil
			case time.Microsecond:
				return time.UnixMicro(n).UTC(), nil
			}
			return time.Unix(0, n).UTC(), nil
		}, nil
	case parquet.Int96:
		return func(v parquet.Value) (time.Time, error) {
			i := v.Int96()
			nanos := int64(uint64(i[0]) | uint64(i[1])<<32)
			if nanos < 0 || nanos >= int64(24*time.Hour) {
				return time.Time{}, fmt.Errorf("INT96 timestamp with %d ns in a day", nanos)
			}
			days := int64(i[2]) - julianUnixEpoch
			return time.Unix(days*86400, nanos).UTC(), nil
		}, nil
	case parquet.Int32:
		if lt != nil {
			if _, ok := lt.Value.(*format.DateType); ok {
				return dateConv, nil
			}
		}
		if ct != nil && *ct == deprecated.Date {
			return dateConv, nil
		}
		return nil, errors.New("is INT32 without a DATE annotation")
	case parquet.ByteArray:
		return func(v parquet.Value) (time.Time, error) { return parseTime(string(v.ByteArray())) }, nil
	}
	return nil, fmt.Errorf("has physical type %s, want a TIMESTAMP", k)
}

func dateConv(v parquet.Value) (time.Time, error) {
	return time.Unix(int64(v.Int32())*86400, 0).UTC(), nil
}

// leafDecoder decodes a column holding one optional value a row.
type leafDecoder struct {
	col    string
	leaf   int
	maxDef int
	conv   func(*Line, parquet.Value) error
}

func (d *leafDecoder) name() string { return d.col }

func (d *leafDecoder) decode(rg parquet.RowGroup, lines []Line, errs *rowErrors) error {
	i := 0
	err := eachValue(rg, d.leaf, func(v parquet.Value) error {
		if v.RepetitionLevel() != 0 {
			return errors.New("repeated value in a column of one value a row")
		}
		if i >= len(lines) {
			return fmt.Errorf("more values than the %d rows of the row group", len(lines))
		}
		if v.DefinitionLevel() == d.maxDef && !v.IsNull() {
			if err := d.conv(&lines[i], v); err != nil {
				errs.add(lines[i].Row, d.col, err)
			}
		}
		i++
		return nil
	})
	if err != nil {
		return err
	}
	if i != len(lines) {
		return fmt.Errorf("%d values for the %d rows of the row group", i, len(lines))
	}
	return nil
}

// mapDecoder decodes a MAP<string,string> column: a group holding one
// repeated group of a key and a value leaf (the Parquet spec names them
// key_value, key and value; older writers used other names, so only the
// shape is checked).
type mapDecoder struct {
	col              string
	keyLeaf, valLeaf int
	keyDef, valDef   int // definition level of a present key, value
}

func newMapDecoder(col string, c *parquet.Column) (*mapDecoder, error) {
	kids := c.Columns()
	if c.Leaf() || len(kids) != 1 || kids[0].Leaf() || !kids[0].Repeated() {
		return nil, errors.New("is not a MAP (want a group of one repeated key/value group)")
	}
	kv := kids[0].Columns()
	if len(kv) != 2 || !kv[0].Leaf() || !kv[1].Leaf() {
		return nil, errors.New("is not a MAP (want key and value leaves)")
	}
	for _, leaf := range kv {
		if k := leaf.Type().Kind(); k != parquet.ByteArray {
			return nil, fmt.Errorf("has a %s %s, want map<string,string>", k, leaf.Name())
		}
		if leaf.MaxRepetitionLevel() != 1 {
			return nil, errors.New("is a nested MAP, want map<string,string>")
		}
	}
	return &mapDecoder{
		col:     col,
		keyLeaf: kv[0].Index(), valLeaf: kv[1].Index(),
		keyDef: kv[0].MaxDefinitionLevel(), valDef: kv[1].MaxDefinitionLevel(),
	}, nil
}

func (d *mapDecoder) name() string { return d.col }

type levelled struct {
	rep, def int
	s        string
}

func (d *mapDecoder) decode(rg parquet.RowGroup, lines []Line, errs *rowErrors) error {
	keys, err := leafValues(rg, d.keyLeaf)
	if err != nil {
		return err
	}
	vals, err := leafValues(rg, d.valLeaf)
	if err != nil {
		return err
	}
	if len(keys) != len(vals) {
		return fmt.Errorf("%d keys but %d values", len(keys), len(vals))
	}
	maps := make([]map[string]string, len(lines))
	row := -1
	for j, k := range keys {
		v := vals[j]
		if k.rep != v.rep {
			return fmt.Errorf("keys and values out of step at value %d", j)
		}
		if k.rep == 0 {
			row++
			if row >= len(lines) {
				return fmt.Errorf("more maps than the %d rows of the row group", len(lines))
			}
		} else if row < 0 {
			return errors.New("first value continues a row")
		}
		if k.def < d.keyDef {
			continue // a null or empty map
		}
		val := ""
		if v.def >= d.valDef {
			val = v.s
		}
		m := maps[row]
		if m == nil {
			m = make(map[string]string)
			maps[row] = m
		}
		if _, dup := m[k.s]; dup {
			errs.add(lines[row].Row, d.col, fmt.Errorf("key %q twice", truncate(k.s)))
			continue
		}
		m[k.s] = val
	}
	if row+1 != len(lines) {
		return fmt.Errorf("%d maps for the %d rows of the row group", row+1, len(lines))
	}
	for i, m := range maps {
		setMap(&lines[i], d.col, m)
	}
	return nil
}

func leafValues(rg parquet.RowGroup, leaf int) ([]levelled, error) {
	var out []levelled
	err := eachValue(rg, leaf, func(v parquet.Value) error {
		out = append(out, levelled{rep: v.RepetitionLevel(), def: v.DefinitionLevel(), s: string(v.ByteArray())})
		return nil
	})
	return out, err
}

// eachValue calls fn for every value of one leaf column of rg, nulls
// included, in order.
func eachValue(rg parquet.RowGroup, leaf int, fn func(parquet.Value) error) error {
	chunks := rg.ColumnChunks()
	if leaf < 0 || leaf >= len(chunks) {
		return fmt.Errorf("no column chunk %d", leaf)
	}
	pages := chunks[leaf].Pages()
	defer pages.Close()
	buf := make([]parquet.Value, 256)
	for {
		p, err := pages.ReadPage()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		vr := p.Values()
		for {
			n, err := vr.ReadValues(buf)
			for _, v := range buf[:n] {
				if err := fn(v); err != nil {
					return err
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	}
}
