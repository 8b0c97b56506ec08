package usage

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// LedgerFiles returns the files that make up the ledger at path, oldest
// first: path.N ... path.2, path.1 (the ledger's rotated files, path.1 the
// newest of them), then path itself, the live file. Only those that exist
// are listed. The rotated files are found by reading path's directory for
// names that are path's name, a dot and a decimal number, not by a glob,
// so a path holding glob characters means itself and a gap left by a
// failed rename does not hide older files. Compressed copies made by
// external rotation (path.1.gz) are not ledger files and are left out.
//
// It is an error if no file exists.
func LedgerFiles(path string) ([]string, error) {
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
