package usage

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrPartialRecord means the ledger ends in a line without its newline: a
// record whose write was cut short (the machine, not the gateway, crashed
// mid-write). The records before it are sound.
var ErrPartialRecord = errors.New("usage ledger ends in a partial record")

// ReadLedger reads a ledger written by Ledger: one JSON Record per line.
// It is strict, so that a ledger that does not hold what the gateway
// wrote is noticed: a line that is not exactly a Record (unknown fields
// included) is an error naming its line number, and a last line without
// its newline is ErrPartialRecord. On error it returns the records read
// before the problem.
func ReadLedger(r io.Reader) ([]Record, error) {
	br := bufio.NewReader(r)
	var recs []Record
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && err == io.EOF {
			return recs, fmt.Errorf("line %d: %w", n, ErrPartialRecord)
		}
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		rec, err := DecodeRecord(line)
		if err != nil {
			return recs, fmt.Errorf("line %d: %w", n, err)
		}
		recs = append(recs, rec)
	}
}

// DecodeRecord reads one ledger line strictly: exactly one Record and
// nothing else, no unknown fields. A record cut short (by a crash in the
// middle of its write) is an error wrapping io.ErrUnexpectedEOF.
func DecodeRecord(line []byte) (Record, error) {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return rec, fmt.Errorf("not a usage record: %w", err)
	}
	if dec.More() {
		return rec, errors.New("more than one record")
	}
	return rec, nil
}
