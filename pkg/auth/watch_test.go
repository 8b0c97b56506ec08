package auth

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bedrock-gateway/gateway/internal/logbuf"
)

// startWatcher starts a watcher of path polling every second, running
// until the test's bubble ends, and returns it with its log.
func startWatcher(t *testing.T, path string) (*KeyWatcher, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	w, err := NewKeyWatcher(path, time.Second, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("NewKeyWatcher() error = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w, logs
}

// TestKeyWatcherRevocation is the promise behind "revocation takes effect
// within seconds on every replica": two replicas watch one file, a third
// party revokes a key, and both refuse it within one poll interval.
func TestKeyWatcherRevocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path, alice, rec, bob := lifecycleStore2(t)
		var replicas []*KeyVerifier
		for range 2 {
			w, _ := startWatcher(t, path)
			replicas = append(replicas, NewDynamicKeyVerifier(w.Current))
		}
		for i, a := range replicas {
			if _, err := a.Authenticate(requestWith(t, "X-Api-Key", alice)); err != nil {
				t.Fatalf("replica %d: Authenticate(alice) before revocation error = %v", i, err)
			}
		}

		// Another replica (here: the CLI) revokes the key.
		ksMust(t, RevokeKey(path, rec.ID, time.Now()))
		time.Sleep(time.Second)
		synctest.Wait()

		for i, a := range replicas {
			if _, err := a.Authenticate(requestWith(t, "X-Api-Key", alice)); !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("replica %d: Authenticate(alice) one interval after revocation error = %v, want %v", i, err, ErrInvalidCredentials)
			}
			if _, err := a.Authenticate(requestWith(t, "X-Api-Key", bob)); err != nil {
				t.Errorf("replica %d: Authenticate(bob) error = %v, want nil", i, err)
			}
		}
	})
}

// TestKeyWatcherTeamChange: a key whose team changes authenticates with
// the new team after one interval, so its session spec (and tag) changes.
func TestKeyWatcherTeamChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path, alice, rec := lifecycleStore(t)
		w, _ := startWatcher(t, path)
		a := NewDynamicKeyVerifier(w.Current)
		ksMust(t, UpdateKey(path, rec.ID, func(r *KeyRecord) error { r.Team = "research"; return nil }))
		time.Sleep(time.Second)
		synctest.Wait()
		got, err := a.Authenticate(requestWith(t, "X-Api-Key", alice))
		if err != nil || got.Team != "research" {
			t.Errorf("Authenticate(alice) after team change = %+v, %v; want team research", got, err)
		}
	})
}

// TestKeyWatcherExpiry uses the watcher with an injected clock: expiry
// needs no reload, only time.
func TestKeyWatcherExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path, alice, rec := lifecycleStore(t)
		ksMust(t, SetKeyExpiry(path, rec.ID, keyTimePtr(time.Now().Add(10*time.Second))))
		w, _ := startWatcher(t, path)
		a := NewDynamicKeyVerifier(w.Current)
		a.Now = time.Now // the bubble's clock
		if _, err := a.Authenticate(requestWith(t, "X-Api-Key", alice)); err != nil {
			t.Fatalf("Authenticate(alice) before expiry error = %v", err)
		}
		time.Sleep(10 * time.Second)
		if _, err := a.Authenticate(requestWith(t, "X-Api-Key", alice)); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("Authenticate(alice) at expiry error = %v, want %v", err, ErrInvalidCredentials)
		}
	})
}

// TestKeyWatcherKeepsLastGood: an invalid or missing file is refused and
// logged once, and the last valid keys stay in force; a valid file is
// picked up again.
func TestKeyWatcherKeepsLastGood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path, alice, _ := lifecycleStore(t)
		w, logs := startWatcher(t, path)
		a := NewDynamicKeyVerifier(w.Current)
		good := w.Current()
		valid, err := os.ReadFile(path)
		ksMust(t, err)

		ksMust(t, os.WriteFile(path, []byte(`{"version":2,"keys":[{"id":"x"}]}`), 0o600))
		time.Sleep(3 * time.Second) // three polls
		synctest.Wait()
		if w.Current() != good {
			t.Error("Current() changed to an invalid store")
		}
		if _, err := a.Authenticate(requestWith(t, "X-Api-Key", alice)); err != nil {
			t.Errorf("Authenticate(alice) with an invalid file error = %v, want the last good store to accept", err)
		}
		if n := strings.Count(logs.String(), "key store reload refused"); n != 1 {
			t.Errorf("invalid file logged %d times over three polls, want once:\n%s", n, logs)
		}
		if _, err := w.Reload(); err == nil {
			t.Error("Reload() with an invalid file error = nil, want the reason")
		}

		ksMust(t, os.Remove(path))
		time.Sleep(time.Second)
		synctest.Wait()
		if w.Current() != good {
			t.Error("Current() changed when the file disappeared")
		}
		if !strings.Contains(logs.String(), "no such file") {
			t.Errorf("missing file not logged:\n%s", logs)
		}

		ksMust(t, os.WriteFile(path, valid, 0o600))
		_, _, err = CreateKey(path, "carol", "", "", "", time.Now())
		ksMust(t, err)
		time.Sleep(time.Second)
		synctest.Wait()
		if got := len(w.Current().Records()); got != 3 {
			t.Errorf("after the file is valid again, Current() has %d records, want 3", got)
		}
		for _, secret := range []string{alice, alice[len(keyPrefix)+keyIDLen+1:], goodHash[len(hashPrefix):]} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("log contains key material %q:\n%s", secret, logs)
			}
		}
	})
}

// TestKeyWatcherRacyWrite: a rewrite in place that keeps the file's size
// and mtime (a file system with coarse timestamps) is still seen while
// the mtime is recent.
func TestKeyWatcherRacyWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path, alice, rec := lifecycleStore(t)
		mtime := time.Now()
		ksMust(t, os.Chtimes(path, mtime, mtime))
		w, _ := startWatcher(t, path)
		a := NewDynamicKeyVerifier(w.Current)

		data, err := os.ReadFile(path)
		ksMust(t, err)
		same := bytes.Replace(data, []byte(`"team": "ml"`), []byte(`"team": "qa"`), 1)
		if bytes.Equal(same, data) {
			t.Fatal("test store has no team ml")
		}
		ksMust(t, os.WriteFile(path, same, 0o600))
		ksMust(t, os.Chtimes(path, mtime, mtime))
		time.Sleep(time.Second)
		synctest.Wait()
		got, err := a.Authenticate(requestWith(t, "X-Api-Key", alice))
		if err != nil || got.Team != "qa" {
			t.Errorf("Authenticate(%s) after a same-size, same-mtime rewrite = %+v, %v; want team qa", rec.ID, got, err)
		}
	})
}

func TestNewKeyWatcherRefusesBadStart(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewKeyWatcher(filepath.Join(dir, "missing.json"), 0, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NewKeyWatcher(missing) error = %v, want %v", err, fs.ErrNotExist)
	}
	bad := filepath.Join(dir, "bad.json")
	ksMust(t, os.WriteFile(bad, []byte(`{"version":9}`), 0o600))
	if _, err := NewKeyWatcher(bad, 0, nil); err == nil {
		t.Error("NewKeyWatcher(invalid store) error = nil, want an error")
	}
}

func TestNewDynamicKeyVerifierNil(t *testing.T) {
	a := NewDynamicKeyVerifier(func() *KeyStore { return nil })
	if _, err := a.Authenticate(requestWith(t, "X-Api-Key", fixedKey(goodID, 1))); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("Authenticate() with no store error = %v, want %v", err, ErrInvalidCredentials)
	}
}
