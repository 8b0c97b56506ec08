package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// AsyncOwners records who started each asynchronous invocation in Redis,
// so that every replica answers GetAsyncInvoke and ListAsyncInvokes the
// same way (pkg/proxy's AsyncOwners; pkg/asyncjobs is the single-replica
// store). Values are the owner (role ARN and session name, as the proxy
// builds it); keys are a hash of the invocation ARN. A record lives for
// the retention.
//
// There is no local fallback: a replica that cannot ask Redis cannot know
// who owns a job, so Owner fails and the proxy answers 503 (fail closed).
type AsyncOwners struct {
	store     *Store
	retention time.Duration
}

// ErrAsyncConflict: the invocation is already recorded with another owner.
var ErrAsyncConflict = errors.New("invocation already has another owner")

// NewAsyncOwners returns the Redis ownership store; retention is how long a
// record is kept.
func NewAsyncOwners(s *Store, retention time.Duration) (*AsyncOwners, error) {
	if s == nil || retention <= 0 {
		return nil, errors.New("fleet: NewAsyncOwners needs a store and a positive retention")
	}
	return &AsyncOwners{store: s, retention: retention}, nil
}

func (a *AsyncOwners) key(arn string) string {
	sum := sha256.Sum256([]byte(arn))
	return a.store.Key("async-owner", base64.RawURLEncoding.EncodeToString(sum[:]))
}

// Owner returns the owner recorded for arn.
func (a *AsyncOwners) Owner(ctx context.Context, arn string) (string, bool, error) {
	var owner string
	err := a.store.Do(ctx, "async_owner", func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		owner, err = rdb.Get(ctx, a.key(arn)).Result()
		return err
	})
	switch {
	case errors.Is(err, redis.Nil):
		return "", false, nil
	case err != nil:
		return "", false, err
	}
	return owner, true, nil
}

// Record notes that owner started arn: the first owner keeps it (SET NX),
// the same owner again is a no-op, another owner is ErrAsyncConflict.
func (a *AsyncOwners) Record(ctx context.Context, arn, owner string) error {
	var prev string
	var set bool
	err := a.store.Do(ctx, "async_record", func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		if set, err = rdb.SetNX(ctx, a.key(arn), owner, a.retention).Result(); err != nil || set {
			return err
		}
		prev, err = rdb.Get(ctx, a.key(arn)).Result()
		return err
	})
	switch {
	case err != nil:
		return err
	case set || prev == owner:
		return nil
	}
	return fmt.Errorf("%w", ErrAsyncConflict)
}
