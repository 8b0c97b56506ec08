package fleet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/redistest"
)

// TestAsyncOwners: a record made through one replica is seen by another;
// the first owner keeps a job; with Redis gone the store fails (the proxy
// then answers 503) rather than guess.
func TestAsyncOwners(t *testing.T) {
	srv := redistest.Start(t)
	open := func() *AsyncOwners {
		c := DefaultConfig()
		c.Redis.URL, c.SessionKeyFile = srv.URL(), "k"
		s, err := Open(c, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		a, err := NewAsyncOwners(s, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a, b := open(), open()
	ctx := context.Background()
	const arn = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/abc"
	if _, ok, err := b.Owner(ctx, arn); ok || err != nil {
		t.Fatalf("Owner of an unknown job = %v, %v; want none", ok, err)
	}
	if err := a.Record(ctx, arn, "role alice"); err != nil {
		t.Fatal(err)
	}
	if owner, ok, err := b.Owner(ctx, arn); !ok || err != nil || owner != "role alice" {
		t.Errorf("Owner through another replica = %q, %v, %v; want alice", owner, ok, err)
	}
	if err := b.Record(ctx, arn, "role alice"); err != nil {
		t.Errorf("same owner again: %v", err)
	}
	if err := b.Record(ctx, arn, "role bob"); !errors.Is(err, ErrAsyncConflict) {
		t.Errorf("another owner: %v, want ErrAsyncConflict", err)
	}
	srv.Kill()
	if _, _, err := a.Owner(ctx, arn); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Owner with Redis down = %v, want ErrUnavailable", err)
	}
}
