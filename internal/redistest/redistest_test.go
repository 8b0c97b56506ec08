package redistest

import (
	"errors"
	"io/fs"
	"os"
	"testing"
)

func TestStartKillRestart(t *testing.T) {
	s := Start(t)
	if !pong(s.Addr(), false) {
		t.Fatal("no PONG after Start")
	}
	s.Kill()
	if pong(s.Addr(), false) {
		t.Fatal("PONG after Kill")
	}
	s.Restart()
	if !pong(s.Addr(), false) {
		t.Fatal("no PONG after Restart")
	}
}

// TestFilesStayInTempDirs: a replica's first sync writes an RDB file; it
// goes to the server's own directory, not the package under test.
func TestFilesStayInTempDirs(t *testing.T) {
	StartReplica(t, Start(t))
	if _, err := os.Stat("dump.rdb"); !errors.Is(err, fs.ErrNotExist) {
		os.Remove("dump.rdb")
		t.Errorf("dump.rdb in the working directory (%v): a server wrote outside its directory", err)
	}
}
