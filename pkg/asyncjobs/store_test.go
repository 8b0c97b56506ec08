package asyncjobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/internal/fakeclock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	arnA   = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/aaaaaaaaaaaa"
	arnB   = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/bbbbbbbbbbbb"
	arnC   = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/cccccccccccc"
	alice  = "arn:aws:iam::123456789012:role/BedrockInvocationRole alice@acme.org"
	bob    = "arn:aws:iam::123456789012:role/BedrockInvocationRole bob@acme.org"
	oneDay = 24 * time.Hour
)

// open opens a store on path with the clock, failing the test on error,
// and closes it at the end of the test.
func open(t *testing.T, path string, clock *fakeclock.Clock, retention time.Duration) *Store {
	t.Helper()
	s, err := Open(Config{Path: path, Retention: retention, Now: clock.Now})
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// wantOwner checks what s says about arn.
func wantOwner(t *testing.T, s *Store, arn, want string) {
	t.Helper()
	got, ok, err := s.Owner(context.Background(), arn)
	if err != nil {
		t.Fatalf("Owner(%q) error = %v", arn, err)
	}
	if want == "" && ok {
		t.Errorf("Owner(%q) = %q, want none", arn, got)
	}
	if want != "" && (!ok || got != want) {
		t.Errorf("Owner(%q) = %q, %v, want %q", arn, got, ok, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"zero is the default", Config{}, nil},
		{"a day", Config{Retention: oneDay}, nil},
		{"negative", Config{Retention: -time.Hour}, []string{"ownership_retention:"}},
		{"shorter than a job", Config{Retention: time.Minute}, []string{"ownership_retention:"}},
	} {
		t.Run(tc.name, func(t *testing.T) { configtest.Problems(t, tc.cfg.Validate(), tc.want) })
	}
}

// TestRecordFirstOwnerWins: an invocation has one owner; a second owner
// is refused and changes nothing, the same owner again is fine.
func TestRecordFirstOwnerWins(t *testing.T) {
	ctx := context.Background()
	for _, path := range []string{"", filepath.Join(t.TempDir(), "owners.jsonl")} {
		t.Run("path="+filepath.Base(path), func(t *testing.T) {
			s := open(t, path, fakeclock.New(), 0)
			wantOwner(t, s, arnA, "")
			if err := s.Record(ctx, arnA, alice); err != nil {
				t.Fatalf("Record(alice) = %v", err)
			}
			if err := s.Record(ctx, arnA, alice); err != nil {
				t.Errorf("Record(alice) again = %v, want nil", err)
			}
			if err := s.Record(ctx, arnA, bob); !errors.Is(err, ErrConflict) {
				t.Errorf("Record(bob) = %v, want ErrConflict", err)
			}
			wantOwner(t, s, arnA, alice)
			wantOwner(t, s, arnB, "")
			if err := s.Record(ctx, "", alice); err == nil {
				t.Error("Record of an empty ARN succeeded")
			}
		})
	}
}

// TestPersistAndReload: records survive a restart (a new Store on the same
// file), and a conflicting record stays refused after it.
func TestPersistAndReload(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "owners.jsonl")
	clock := fakeclock.New()
	s := open(t, path, clock, 0)
	for arn, owner := range map[string]string{arnA: alice, arnB: bob} {
		if err := s.Record(ctx, arn, owner); err != nil {
			t.Fatal(err)
		}
	}
	// Written through: the file holds both before Close.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 2 {
		t.Errorf("file has %d lines before Close, want 2:\n%s", n, data)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, arnC, alice); !errors.Is(err, ErrClosed) {
		t.Errorf("Record after Close = %v, want ErrClosed", err)
	}

	r := open(t, path, clock, 0)
	wantOwner(t, r, arnA, alice)
	wantOwner(t, r, arnB, bob)
	wantOwner(t, r, arnC, "")
	if err := r.Record(ctx, arnA, bob); !errors.Is(err, ErrConflict) {
		t.Errorf("Record(bob) after reload = %v, want ErrConflict", err)
	}
}

// TestExpiry: a record lapses Retention after it was written, in memory
// and across a restart, and the restart drops it from the file.
func TestExpiry(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "owners.jsonl")
	clock := fakeclock.New()
	s := open(t, path, clock, 2*oneDay)
	if err := s.Record(ctx, arnA, alice); err != nil {
		t.Fatal(err)
	}
	clock.Advance(oneDay)
	if err := s.Record(ctx, arnB, bob); err != nil {
		t.Fatal(err)
	}
	clock.Advance(oneDay - time.Second)
	wantOwner(t, s, arnA, alice) // one second left
	clock.Advance(time.Second)
	wantOwner(t, s, arnA, "") // expired
	wantOwner(t, s, arnB, bob)

	// Memory lets go of expired records as new ones arrive.
	if err := s.Record(ctx, arnC, alice); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 2 {
		t.Errorf("Len() = %d after the sweep, want 2 (B and C)", n)
	}
	s.Close()

	r := open(t, path, clock, 2*oneDay)
	wantOwner(t, r, arnA, "")
	wantOwner(t, r, arnB, bob)
	wantOwner(t, r, arnC, alice)
	r.Close()
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), arnA) || strings.Count(string(data), "\n") != 2 {
		t.Errorf("file after a restart still holds the expired record, or lost a live one:\n%s", data)
	}
	// An expired invocation is free to be recorded again (ARNs are not
	// reused by Bedrock; the store does not rely on it).
	clock.Advance(3 * oneDay)
	q := open(t, path, clock, 2*oneDay)
	if err := q.Record(ctx, arnB, alice); err != nil {
		t.Errorf("Record of an expired invocation = %v", err)
	}
}

// TestLoadSkipsDamage: a line cut short by a machine crash, and lines that
// are not records, are skipped (and dropped from the file); the records
// around them load, and the next record starts a line of its own.
func TestLoadSkipsDamage(t *testing.T) {
	ctx := context.Background()
	clock := fakeclock.New()
	ts := fakeclock.Start.Format(time.RFC3339)
	good := `{"arn":"` + arnA + `","owner":"` + alice + `","time":"` + ts + `"}` + "\n"
	for name, content := range map[string]string{
		"torn last line":    good + `{"arn":"` + arnB + `","own`,
		"garbage line":      "not json\n" + good,
		"missing owner":     `{"arn":"` + arnB + `","time":"` + ts + `"}` + "\n" + good,
		"repeat, new owner": good + `{"arn":"` + arnA + `","owner":"` + bob + `","time":"` + ts + `"}` + "\n",
		"empty":             "",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "owners.jsonl")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			s := open(t, path, clock, 0)
			if content != "" {
				wantOwner(t, s, arnA, alice)
			}
			wantOwner(t, s, arnB, "")
			if err := s.Record(ctx, arnC, bob); err != nil {
				t.Fatal(err)
			}
			s.Close()
			r := open(t, path, clock, 0)
			wantOwner(t, r, arnC, bob)
		})
	}
}

// TestOpenRefusesABadPath: a path that cannot be a file stops the start.
func TestOpenRefusesABadPath(t *testing.T) {
	dir := t.TempDir()
	for name, path := range map[string]string{
		"a directory":       dir,
		"missing directory": filepath.Join(dir, "nope", "owners.jsonl"),
	} {
		t.Run(name, func(t *testing.T) {
			if s, err := Open(Config{Path: path}); err == nil {
				s.Close()
				t.Errorf("Open(%q) succeeded", path)
			}
		})
	}
}

// TestConcurrentRecords: many owners racing for many invocations, each
// invocation ends with exactly one owner, the same after a reload.
func TestConcurrentRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "owners.jsonl")
	clock := fakeclock.New()
	s := open(t, path, clock, 0)
	arns := []string{arnA, arnB, arnC}
	var wg sync.WaitGroup
	for _, owner := range []string{alice, bob} {
		for range 4 {
			wg.Go(func() {
				for _, arn := range arns {
					if err := s.Record(ctx, arn, owner); err != nil && !errors.Is(err, ErrConflict) {
						t.Errorf("Record = %v", err)
					}
					s.Owner(ctx, arn)
				}
			})
		}
	}
	wg.Wait()
	want := map[string]string{}
	for _, arn := range arns {
		owner, ok, _ := s.Owner(ctx, arn)
		if !ok {
			t.Fatalf("%s has no owner", arn)
		}
		want[arn] = owner
	}
	s.Close()
	r := open(t, path, clock, 0)
	for arn, owner := range want {
		wantOwner(t, r, arn, owner)
	}
}
