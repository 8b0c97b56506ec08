package report

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"

	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// Records streams the records of files, in order, one at a time. A line
// that is not exactly a usage.Record (read as strictly as
// usage.ReadLedger reads: unknown fields are errors) stops the stream
// with an error naming the file and line number. A last line without its
// newline, the trace of a crash in the middle of a write
// (usage.ErrPartialRecord), is skipped and passed to partial (which may be
// nil): the records before it are sound, and failing the whole report over
// one lost request would help nobody. It is tolerated at the end of any
// file, since every rotated file was once the live one, and inside a file
// as a line that ends before its record does: the ledger ends such a
// fragment with a newline when it reopens the file after the crash.
func Records(files []string, partial func(PartialRecord)) iter.Seq2[usage.Record, error] {
	return func(yield func(usage.Record, error) bool) {
		for _, name := range files {
			if !readFile(name, partial, yield) {
				return
			}
		}
	}
}

// readFile yields the records of one file; false means stop.
func readFile(name string, partial func(PartialRecord), yield func(usage.Record, error) bool) bool {
	f, err := os.Open(name)
	if err != nil {
		yield(usage.Record{}, fmt.Errorf("read ledger: %w", err))
		return false
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var buf []byte
	for n := 1; ; n++ {
		line, err := readLine(br, buf[:0])
		buf = line
		switch {
		case err == io.EOF && len(line) == 0:
			return true
		case err == io.EOF:
			if partial != nil {
				partial(PartialRecord{File: name, Line: n})
			}
			return true
		case err != nil:
			yield(usage.Record{}, fmt.Errorf("read ledger %s: line %d: %w", name, n, err))
			return false
		}
		rec, err := usage.DecodeRecord(line)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// A record cut short by a crash, which the ledger ended
			// with a newline when it reopened the file: skipped and
			// reported like a last line without its newline.
			if partial != nil {
				partial(PartialRecord{File: name, Line: n})
			}
			continue
		}
		if err != nil {
			yield(usage.Record{}, fmt.Errorf("ledger %s: line %d: %w", name, n, err))
			return false
		}
		if !yield(rec, nil) {
			return false
		}
	}
}

// readLine appends the next line of br, without its newline, to buf. It
// returns io.EOF with the bytes of a last line that has no newline. The
// buffer is reused from line to line, so a long ledger allocates little.
func readLine(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return buf[:len(buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return buf, err
		}
	}
}

// FromFiles reads every record of files (see Records) into a report. The
// partial records it skipped are listed in Report.Partial.
func FromFiles(files []string, o Options) (*Report, error) {
	var partial []PartialRecord
	r, err := Build(Records(files, func(p PartialRecord) { partial = append(partial, p) }), o)
	if err != nil {
		return nil, err
	}
	r.Partial = partial
	return r, nil
}
