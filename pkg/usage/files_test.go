package usage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeLedgerFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLedgerFiles(t *testing.T) {
	tests := []struct {
		name  string
		files []string // created under the test directory
		want  []string
	}{
		{"live only", []string{"usage.jsonl"}, []string{"usage.jsonl"}},
		{"rotated, oldest first", []string{"usage.jsonl", "usage.jsonl.1", "usage.jsonl.2", "usage.jsonl.3"},
			[]string{"usage.jsonl.3", "usage.jsonl.2", "usage.jsonl.1", "usage.jsonl"}},
		{"numeric not lexical order", []string{"usage.jsonl", "usage.jsonl.2", "usage.jsonl.10", "usage.jsonl.9"},
			[]string{"usage.jsonl.10", "usage.jsonl.9", "usage.jsonl.2", "usage.jsonl"}},
		{"gap left by a failed rename", []string{"usage.jsonl", "usage.jsonl.1", "usage.jsonl.3"},
			[]string{"usage.jsonl.3", "usage.jsonl.1", "usage.jsonl"}},
		{"between rotation and reopen", []string{"usage.jsonl.1"}, []string{"usage.jsonl.1"}},
		{"other names ignored", []string{
			"usage.jsonl", "usage.jsonl.1", "usage.jsonl.1.gz", "usage.jsonl.01", "usage.jsonl.0",
			"usage.jsonl.-1", "usage.jsonl.x", "usage.jsonl.", "other.jsonl.1", "usage.jsonlx.1", "xusage.jsonl",
		}, []string{"usage.jsonl.1", "usage.jsonl"}},
		{"glob characters are literal", []string{"u[1].jsonl", "u[1].jsonl.1", "u1.jsonl"},
			[]string{"u[1].jsonl.1", "u[1].jsonl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				writeLedgerFile(t, filepath.Join(dir, f), "")
			}
			base := "usage.jsonl"
			if strings.HasPrefix(tt.files[0], "u[") {
				base = "u[1].jsonl"
			}
			got, err := LedgerFiles(filepath.Join(dir, base))
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i] = strings.TrimPrefix(got[i], dir+string(filepath.Separator))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Files mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLedgerFilesSkipsDirectoriesAndFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "usage.jsonl")
	writeLedgerFile(t, path, "")
	if err := os.Mkdir(path+".1", 0o700); err != nil {
		t.Fatal(err)
	}
	writeLedgerFile(t, filepath.Join(dir, "elsewhere"), "")
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), path+".2"); err != nil {
		t.Skip("no symlinks here:", err)
	}
	got, err := LedgerFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{path + ".2", path}, got); diff != "" {
		t.Errorf("Files mismatch (-want +got):\n%s", diff)
	}
}

func TestLedgerFilesNoLedger(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "missing.jsonl"), filepath.Join(dir, "nodir", "usage.jsonl")} {
		if _, err := LedgerFiles(path); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("LedgerFiles(%q) error = %v, want ErrNotExist naming the path", path, err)
		}
	}
	if _, err := LedgerFiles(dir + string(filepath.Separator)); err == nil {
		t.Errorf("LedgerFiles(a directory path) succeeded, want an error")
	}
}

func TestLedgerFilesRelative(t *testing.T) {
	t.Chdir(t.TempDir())
	writeLedgerFile(t, "usage.jsonl", "")
	writeLedgerFile(t, "usage.jsonl.1", "")
	got, err := LedgerFiles("usage.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"usage.jsonl.1", "usage.jsonl"}, got); diff != "" {
		t.Errorf("Files mismatch (-want +got):\n%s", diff)
	}
}
