package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// Files returns the ledger files that make up the ledger at path, oldest
// first: path.N ... path.2, path.1 (the ledger's rotated files, path.1 the
// newest of them), then path itself, the live file. Only those that exist
// are listed. The rotated files are found by reading path's directory for
// names that are path's name, a dot and a decimal number, not by a glob,
// so a path holding glob characters means itself and a gap left by a
// failed rename does not hide older files. Compressed copies made by
// external rotation (path.1.gz) are not ledger files and are left out.
//
// It is an error if no file exists.
func Files(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if base == "" {
		return nil, fmt.Errorf("ledger %q: not a file name", path)
	}
	entries, err := os.ReadDir(orDot(dir))
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	type rotated struct {
		n    int
		name string
	}
	var backups []rotated
	live := false
	for _, e := range entries {
		name := e.Name()
		if name == base {
			live = isFile(dir, e)
			continue
		}
		suffix, ok := strings.CutPrefix(name, base+".")
		if !ok {
			continue
		}
		n, ok := backupIndex(suffix)
		if ok && isFile(dir, e) {
			backups = append(backups, rotated{n, name})
		}
	}
	slices.SortFunc(backups, func(a, b rotated) int { return b.n - a.n })
	files := make([]string, 0, len(backups)+1)
	for _, b := range backups {
		files = append(files, dir+b.name)
	}
	if live {
		files = append(files, path)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("ledger %s: %w", path, fs.ErrNotExist)
	}
	return files, nil
}

func orDot(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// backupIndex parses the N of a rotated file path.N: digits with no sign
// and no leading zero, as the ledger writes them (strconv.Itoa).
func backupIndex(s string) (int, bool) {
	if s == "" || s[0] == '0' || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// isFile reports whether e is a regular file, or a symlink the caller can
// follow to one.
func isFile(dir string, e fs.DirEntry) bool {
	if e.Type().IsRegular() {
		return true
	}
	if e.Type()&fs.ModeSymlink == 0 {
		return false
	}
	fi, err := os.Stat(filepath.Join(orDot(dir), e.Name()))
	return err == nil && fi.Mode().IsRegular()
}

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
		rec, err := decode(line)
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

// decode reads one ledger line as usage.ReadLedger does: exactly one
// Record and nothing else, no unknown fields. (ReadLedger itself returns
// a whole file's records at once, which a month of ledger cannot afford.)
func decode(line []byte) (usage.Record, error) {
	var rec usage.Record
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
