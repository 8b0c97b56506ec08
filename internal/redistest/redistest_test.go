package redistest

import "testing"

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
