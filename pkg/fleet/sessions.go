package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// DefaultSessionLockTTL is how long a fill lock outlives a holder that
// stopped renewing it (a replica that crashed or lost Redis), after which
// another replica takes over the fill. The holder renews it every third of
// that while its AssumeRole runs, so a live holder never loses it to a
// slow STS.
const DefaultSessionLockTTL = 3 * time.Second

// DefaultSessionTimeout bounds each Redis call for shared sessions. It is
// longer than fleet.timeout, meant for calls made on every request,
// because these are made only on a local miss, and one that gives up costs
// an AssumeRole, which takes longer still; a login storm of thousands of
// misses at once must not pass for Redis failing.
const DefaultSessionTimeout = 500 * time.Millisecond

// Sessions is the fleet's shared session store: the credentials each
// AssumeRole returned, sealed with AES-256-GCM (SessionKeys) under a Redis
// key derived from the session spec, and a short lock per spec so that one
// replica at a time calls STS for it. It implements sessioncache.Shared
// (which declares the contract; this package does not import sessioncache,
// so that the session cache's tests can run against it).
//
// Redis keys are Store.Key("session", h) and Store.Key("session-lock", h),
// with h the unpadded base64url SHA-256 of the spec encoding: no user name,
// tag or role is readable in them. The hash is not keyed, so that every
// replica finds the same key whatever its session_key_file holds (during a
// key rotation, or when one is misconfigured: it then counts decrypt
// failures instead of silently missing); someone who can list Redis and
// guesses a complete spec (role, session name, every tag, duration) can
// learn that it has a session, nothing more. Values are opaque: nothing in
// them is readable without a key.
//
// Every method fails with ErrUnavailable (or a Redis error reply) when
// Redis cannot be used; callers then do without.
type Sessions struct {
	st       *Store
	keys     *SessionKeys
	lockTTL  time.Duration
	timeout  time.Duration
	inflight chan struct{}          // one token per session call being made to Redis
	failures *prometheus.CounterVec // reason
}

// SessionsOptions are what NewSessions takes besides the store and keys.
type SessionsOptions struct {
	// LockTTL: see DefaultSessionLockTTL, the default. At least 30ms (its
	// thirds are renewal periods, in milliseconds).
	LockTTL time.Duration
	// Timeout: see DefaultSessionTimeout, the default.
	Timeout time.Duration
	// Registerer receives
	// bedrock_gateway_fleet_session_decrypt_failures_total. Optional.
	Registerer prometheus.Registerer
}

// Bounded values of the reason label of
// bedrock_gateway_fleet_session_decrypt_failures_total.
const (
	reasonUnknownKey = "unknown_key" // sealed with a key id this replica lacks
	reasonInvalid    = "invalid"     // wrong key, tampered, or another spec's value
	reasonMalformed  = "malformed"   // not a sealed session at all
)

// NewSessions returns the shared session store on st, sealing with keys.
func NewSessions(st *Store, keys *SessionKeys, o SessionsOptions) (*Sessions, error) {
	if st == nil || keys == nil {
		return nil, errors.New("fleet: sessions need a store and keys")
	}
	if o.LockTTL == 0 {
		o.LockTTL = DefaultSessionLockTTL
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultSessionTimeout
	}
	if o.LockTTL < 30*time.Millisecond {
		return nil, fmt.Errorf("fleet: session lock ttl must be at least 30ms, got %v", o.LockTTL)
	}
	s := &Sessions{st: st, keys: keys, lockTTL: o.LockTTL, timeout: o.Timeout, inflight: make(chan struct{}, maxInflight),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_fleet_session_decrypt_failures_total",
			Help: "Shared sessions read from Redis that did not decrypt and were treated as absent, by reason: unknown_key (sealed with a key not in session_key_file), invalid (wrong key, tampered, or copied from another session), malformed.",
		}, []string{"reason"})}
	for _, r := range []string{reasonUnknownKey, reasonInvalid, reasonMalformed} {
		s.failures.WithLabelValues(r)
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.failures); err != nil {
			return nil, fmt.Errorf("register fleet session metrics: %w", err)
		}
	}
	return s, nil
}

// maxInflight bounds the session calls a replica makes to Redis at once.
// A login storm brings thousands of local misses together; let loose on
// Redis at once they would open hundreds of connections and queue for
// them past the call timeout, which looks like Redis failing and costs an
// AssumeRole each. Queued here, they wait without a timeout running (only
// their caller's deadline), a few milliseconds each.
const maxInflight = 32

// do runs f through the store (timeout, breaker) once one of the
// maxInflight places is free, or fails with ErrUnavailable when ctx ends
// first.
func (s *Sessions) do(ctx context.Context, op string, f func(ctx context.Context, rdb redis.UniversalClient) error) error {
	select {
	case s.inflight <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, ctx.Err())
	}
	defer func() { <-s.inflight }()
	return s.st.DoWithin(ctx, op, s.timeout, f)
}

// sealedCreds is the plaintext of a sealed value.
type sealedCreds struct {
	AccessKeyID     string    `json:"a"`
	SecretAccessKey string    `json:"s"`
	SessionToken    string    `json:"t"`
	Expires         time.Time `json:"e"`
}

// redisKeys returns the value and lock keys of spec.
func (s *Sessions) redisKeys(spec string) (value, lock string) {
	sum := sha256.Sum256([]byte("bedrock-gateway session\x00" + spec))
	h := base64.RawURLEncoding.EncodeToString(sum[:])
	return s.st.Key("session", h), s.st.Key("session-lock", h)
}

// Load returns the credentials shared for spec, the cache's injective
// encoding of a session spec. ok is false when there are none, or when the
// value does not decrypt with this replica's keys (counted in
// bedrock_gateway_fleet_session_decrypt_failures_total, never used, never
// an error). Whether the credentials are still fresh enough to hand out is
// the caller's rule, not the store's.
func (s *Sessions) Load(ctx context.Context, spec string) (creds aws.Credentials, ok bool, err error) {
	key, _ := s.redisKeys(spec)
	var v []byte
	err = s.do(ctx, "session_get", func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		v, err = rdb.Get(ctx, key).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return aws.Credentials{}, false, nil
	}
	if err != nil {
		return aws.Credentials{}, false, err
	}
	pt, err := s.keys.openFor(spec, v)
	if err != nil {
		switch err {
		case errUnknownKey:
			s.failures.WithLabelValues(reasonUnknownKey).Inc()
		case errOpen:
			s.failures.WithLabelValues(reasonInvalid).Inc()
		default:
			s.failures.WithLabelValues(reasonMalformed).Inc()
		}
		return aws.Credentials{}, false, nil
	}
	var sc sealedCreds
	if err := json.Unmarshal(pt, &sc); err != nil || sc.AccessKeyID == "" || sc.SecretAccessKey == "" ||
		sc.SessionToken == "" || sc.Expires.IsZero() {
		// Authentic but unusable: a replica of another version wrote it.
		s.failures.WithLabelValues(reasonMalformed).Inc()
		return aws.Credentials{}, false, nil
	}
	return aws.Credentials{AccessKeyID: sc.AccessKeyID, SecretAccessKey: sc.SecretAccessKey,
		SessionToken: sc.SessionToken, CanExpire: true, Expires: sc.Expires}, true, nil
}

// Store shares creds for spec for ttl, sealed with the first key. The
// caller sets ttl so that the value is gone before the credentials enter
// its expiry margin; below a millisecond (PX's unit) nothing is stored.
// A value already there is replaced: the last fill wins, which also
// repairs a value other replicas could not decrypt.
func (s *Sessions) Store(ctx context.Context, spec string, creds aws.Credentials, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return nil
	}
	pt, err := json.Marshal(sealedCreds{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey,
		SessionToken: creds.SessionToken, Expires: creds.Expires})
	if err != nil {
		return fmt.Errorf("fleet: encode session: %w", err)
	}
	v := s.keys.sealFor(spec, pt)
	clear(pt)
	key, _ := s.redisKeys(spec)
	return s.do(ctx, "session_set", func(ctx context.Context, rdb redis.UniversalClient) error {
		return rdb.Set(ctx, key, v, ttl.Truncate(time.Millisecond)).Err()
	})
}

// Lock scripts: a lock is released or renewed only by the holder whose
// random token it still holds, so a holder whose lock expired (and was
// taken by another replica) cannot release or extend the new holder's.
var (
	unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
	renewScript  = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
)

// Lock tries to take spec's fill lock (SET NX PX LockTTL with a random
// token). held is false when another replica holds it. While held, it is
// renewed every LockTTL/3 until unlock, which deletes it if it is still
// this holder's (compare-and-delete). unlock must be called, once the
// session is stored, and may be called more than once.
func (s *Sessions) Lock(ctx context.Context, spec string) (unlock func(), held bool, err error) {
	_, key := s.redisKeys(spec)
	var b [16]byte
	rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	err = s.do(ctx, "session_lock", func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		held, err = rdb.SetNX(ctx, key, token, s.lockTTL).Result()
		return err
	})
	if err != nil || !held {
		return nil, false, err
	}
	l := &fillLock{s: s, key: key, token: token, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()
	return l.release, true, nil
}

// fillLock is one held fill lock.
type fillLock struct {
	s          *Sessions
	key, token string
	stop, done chan struct{} // stop ends renew; done says it has ended
	once       sync.Once
}

// renew extends the lock every LockTTL/3 until release, or until it finds
// the lock no longer this holder's. A renewal that fails (Redis down) is
// tried again at the next tick; if none succeeds the lock expires and
// another replica may take over, which costs one more AssumeRole, never a
// wrong session.
func (l *fillLock) renew() {
	defer close(l.done)
	t := time.NewTicker(l.s.lockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		var kept int64
		ctx, cancel := context.WithTimeout(context.Background(), l.s.lockTTL)
		err := l.s.do(ctx, "session_lock_renew", func(ctx context.Context, rdb redis.UniversalClient) error {
			var err error
			kept, err = renewScript.Run(ctx, rdb, []string{l.key}, l.token, l.s.lockTTL.Milliseconds()).Int64()
			return err
		})
		cancel()
		if err == nil && kept == 0 {
			return // lost it
		}
	}
}

func (l *fillLock) release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		// Best effort: if Redis cannot be reached the lock expires by itself.
		ctx, cancel := context.WithTimeout(context.Background(), l.s.lockTTL)
		defer cancel()
		l.s.do(ctx, "session_unlock", func(ctx context.Context, rdb redis.UniversalClient) error {
			return unlockScript.Run(ctx, rdb, []string{l.key}, l.token).Err()
		})
	})
}
