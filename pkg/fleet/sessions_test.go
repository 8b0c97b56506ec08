package fleet

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/internal/redistest"
)

// keyLine returns a key file line for id with a fresh random key.
func keyLine(id string) string {
	k := make([]byte, 32)
	rand.Read(k)
	return id + ":" + base64.StdEncoding.EncodeToString(k)
}

func mustKeys(t testing.TB, lines ...string) *SessionKeys {
	t.Helper()
	k, err := ParseSessionKeys([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("ParseSessionKeys() error = %v", err)
	}
	return k
}

func TestParseSessionKeys(t *testing.T) {
	good, other := keyLine("k1"), keyLine("k2")
	short := "k3:" + base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct {
		name  string
		file  string
		seal  string   // id of the sealing key
		probs []string // prefixes of the problems, in order
	}{
		{"one key", good + "\n", "k1", nil},
		{"rotation: first seals", other + "\n" + good, "k2", nil},
		{"comments and blanks", "# session keys\n\n  " + good + "  \n", "k1", nil},
		{"empty", "", "", []string{"no keys"}},
		{"only comments", "# nothing\n", "", []string{"no keys"}},
		{"every problem at once", "nocolon\n" + "bad id!:AAAA\n" + "k4:not base64!\n" + short + "\n" + good + "\n" + good,
			"", []string{"line 1: ", "line 2: ", "line 3: ", "line 4: ", "line 6: "}},
		{"id too long", strings.Repeat("a", 33) + good[2:], "", []string{"line 1: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseSessionKeys([]byte(tt.file))
			configtest.Problems(t, err, tt.probs)
			if err != nil {
				for _, line := range strings.Split(tt.file, "\n") {
					if _, b64, ok := strings.Cut(line, ":"); ok && len(b64) > 8 && strings.Contains(err.Error(), b64) {
						t.Errorf("error %q quotes key material", err)
					}
				}
				return
			}
			if k.seal.id != tt.seal {
				t.Errorf("sealing key = %q, want %q", k.seal.id, tt.seal)
			}
		})
	}
}

// newSessions returns shared sessions on a fresh Redis (the same server
// for every call with the same srv) sealed with keys.
func newSessions(t testing.TB, srv *redistest.Server, keys *SessionKeys, lockTTL time.Duration) (*Sessions, *prometheus.Registry) {
	t.Helper()
	c := DefaultConfig()
	c.Redis.URL, c.SessionKeyFile, c.Timeout = srv.URL(), "k", 500*time.Millisecond
	st, err := Open(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	s, err := NewSessions(st, keys, SessionsOptions{LockTTL: lockTTL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func rawClient(t testing.TB, srv *redistest.Server) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

var testCreds = aws.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "secret-access-key-value",
	SessionToken: "session-token-value", CanExpire: true, Expires: time.Date(2026, 1, 2, 4, 4, 5, 0, time.UTC)}

const specA, specB = "45:arn:aws:iam::123456789012:role/BedrockUser5:alice0:3600000000000;0;", "45:arn:aws:iam::123456789012:role/BedrockUser3:bob0:3600000000000;0;"

func decryptFailures(reg *prometheus.Registry, reason string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "bedrock_gateway_fleet_session_decrypt_failures_total" && m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// TestSessionsRotation: a value sealed with the first key opens on every
// replica that has that key, first or not; a replica without it, or with
// another key under the same id, treats it as absent and counts why.
func TestSessionsRotation(t *testing.T) {
	srv := redistest.Start(t)
	old, next := keyLine("k1"), keyLine("k2")
	writer, _ := newSessions(t, srv, mustKeys(t, old), 0)
	ctx := t.Context()
	if err := writer.Store(ctx, specA, testCreds, time.Minute); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		keys   []string
		ok     bool
		reason string
	}{
		{"same keys", []string{old}, true, ""},
		{"rotating: new key first, old key second", []string{next, old}, true, ""},
		{"old key dropped", []string{next}, false, reasonUnknownKey},
		{"same id, other key", []string{keyLine("k1")}, false, reasonInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, reg := newSessions(t, srv, mustKeys(t, tt.keys...), 0)
			got, ok, err := r.Load(ctx, specA)
			if err != nil || ok != tt.ok {
				t.Fatalf("Load() = %v, %v, want ok %v", ok, err, tt.ok)
			}
			if ok && got != testCreds {
				t.Errorf("Load() = %+v, want %+v", got, testCreds)
			}
			if tt.reason != "" {
				if n := decryptFailures(reg, tt.reason); n != 1 {
					t.Errorf("decrypt failures{reason=%q} = %v, want 1", tt.reason, n)
				}
			}
		})
	}
}

// TestSessionsValueBoundToSpec: the additional data binds a value to its
// spec and header: copied under another spec's key, tampered with, or
// relabelled with another key id, it is absent, never someone's session.
func TestSessionsValueBoundToSpec(t *testing.T) {
	srv := redistest.Start(t)
	keys := mustKeys(t, keyLine("k1"), keyLine("k2"))
	s, reg := newSessions(t, srv, keys, 0)
	rdb := rawClient(t, srv)
	ctx := t.Context()
	if err := s.Store(ctx, specA, testCreds, time.Minute); err != nil {
		t.Fatal(err)
	}
	keyA, _ := s.redisKeys(specA)
	keyB, _ := s.redisKeys(specB)
	sealed, err := rdb.Get(ctx, keyA).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		v := bytes.Clone(sealed)
		v[i] ^= 1
		return v
	}
	relabelled := bytes.Clone(sealed)
	relabelled[3] = '2' // "k1" -> "k2", a key this replica has
	tests := []struct {
		name   string
		key    string
		value  []byte
		reason string
	}{
		{"copied to another spec", keyB, sealed, reasonInvalid},
		{"ciphertext bit flipped", keyA, flip(len(sealed) - 20), reasonInvalid},
		{"tag bit flipped", keyA, flip(len(sealed) - 1), reasonInvalid},
		{"key id relabelled", keyA, relabelled, reasonInvalid},
		{"unknown version", keyA, flip(0), reasonMalformed},
		{"truncated", keyA, sealed[:3], reasonMalformed},
		{"not sealed", keyA, []byte(`{"a":"ASIA","s":"x","t":"y"}`), reasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := decryptFailures(reg, tt.reason)
			if err := rdb.Set(ctx, tt.key, tt.value, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			spec := specA
			if tt.key == keyB {
				spec = specB
			}
			if got, ok, err := s.Load(ctx, spec); ok || err != nil {
				t.Fatalf("Load() = %q, %v, %v, want absent", got.AccessKeyID, ok, err)
			}
			if n := decryptFailures(reg, tt.reason) - before; n != 1 {
				t.Errorf("decrypt failures{reason=%q} rose by %v, want 1", tt.reason, n)
			}
		})
	}
}

// TestSessionsRedisHoldsNothingReadable: keys carry no part of the spec,
// values no credential, and the TTL is the one asked for.
func TestSessionsRedisHoldsNothingReadable(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := newSessions(t, srv, mustKeys(t, keyLine("k1")), 0)
	rdb := rawClient(t, srv)
	ctx := t.Context()
	if err := s.Store(ctx, specA, testCreds, 55*time.Minute); err != nil {
		t.Fatal(err)
	}
	unlock, held, err := s.Lock(ctx, specA)
	if err != nil || !held {
		t.Fatalf("Lock() = %v, %v, want held", held, err)
	}
	defer unlock()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys = %q, %v, want a value and a lock", keys, err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, DefaultKeyPrefix+"session") {
			t.Errorf("key %q outside the session namespace", k)
		}
		v, _ := rdb.Get(ctx, k).Bytes()
		for _, secret := range []string{"alice", "BedrockUser", "123456789012", testCreds.AccessKeyID, testCreds.SecretAccessKey, testCreds.SessionToken} {
			if strings.Contains(k, secret) || bytes.Contains(v, []byte(secret)) {
				t.Errorf("key %q or its value holds %q in clear", k, secret)
			}
		}
	}
	key, _ := s.redisKeys(specA)
	if ttl := rdb.PTTL(ctx, key).Val(); ttl > 55*time.Minute || ttl < 55*time.Minute-5*time.Second {
		t.Errorf("PTTL = %v, want 55m", ttl)
	}
	if err := s.Store(ctx, specB, testCreds, time.Millisecond/2); err != nil || rdb.Exists(ctx, func() string { k, _ := s.redisKeys(specB); return k }()).Val() != 0 {
		t.Errorf("Store with a TTL under 1ms: %v; want nothing stored", err)
	}
}

// TestSessionsLock: one holder at a time; a live holder keeps its lock
// past LockTTL; unlock releases only its own lock; a lapsed lock can be
// taken by another replica.
func TestSessionsLock(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 90 * time.Millisecond
	a, _ := newSessions(t, srv, mustKeys(t, keyLine("k1")), ttl)
	b, _ := newSessions(t, srv, mustKeys(t, keyLine("k1")), ttl)
	rdb := rawClient(t, srv)
	ctx := t.Context()
	_, lockKey := a.redisKeys(specA)

	unlockA, held, err := a.Lock(ctx, specA)
	if err != nil || !held {
		t.Fatalf("first Lock() = %v, %v, want held", held, err)
	}
	if _, held, err := b.Lock(ctx, specA); err != nil || held {
		t.Fatalf("second Lock() = %v, %v, want not held", held, err)
	}
	unlockOther, held, _ := b.Lock(ctx, specB)
	if !held {
		t.Fatal("Lock() of another spec not held")
	}
	unlockOther()
	// Renewal: watch the lock's TTL go back up twice, which takes about
	// 2/3 of LockTTL, and see it never lapse meanwhile.
	renewals, last := 0, rdb.PTTL(ctx, lockKey).Val()
	for deadline := time.Now().Add(5 * time.Second); renewals < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("lock not renewed")
		}
		ttl := rdb.PTTL(ctx, lockKey).Val()
		if ttl < 0 {
			t.Fatalf("lock lapsed while held (PTTL %v)", ttl)
		}
		if ttl > last {
			renewals++
		}
		last = ttl
	}
	// A holder whose lock lapsed and was taken does not release the new
	// holder's.
	rdb.Del(ctx, lockKey)
	unlockB, held, err := b.Lock(ctx, specA)
	if err != nil || !held {
		t.Fatalf("Lock() after the lock lapsed = %v, %v, want held", held, err)
	}
	unlockA()
	unlockA() // idempotent
	if rdb.Exists(ctx, lockKey).Val() != 1 {
		t.Fatal("the old holder's unlock released the new holder's lock")
	}
	unlockB()
	if rdb.Exists(ctx, lockKey).Val() != 0 {
		t.Fatal("unlock did not release the lock")
	}
}

// TestSessionsRedisDown: with Redis gone every method fails with
// ErrUnavailable, which the session cache falls back on.
func TestSessionsRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := newSessions(t, srv, mustKeys(t, keyLine("k1")), 0)
	srv.Kill()
	ctx := t.Context()
	if _, _, err := s.Load(ctx, specA); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Load() error = %v, want ErrUnavailable", err)
	}
	if err := s.Store(ctx, specA, testCreds, time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Store() error = %v, want ErrUnavailable", err)
	}
	if _, held, err := s.Lock(ctx, specA); held || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lock() = %v, %v, want ErrUnavailable", held, err)
	}
}

// FuzzOpenSession: a value read from Redis is untrusted input. Opening it
// never panics, and nothing but the genuine value opens.
func FuzzOpenSession(f *testing.F) {
	keys := mustKeys(f, keyLine("k1"), keyLine("k2"))
	genuine := keys.sealFor(specA, []byte(`{"a":"x"}`))
	f.Add(genuine)
	f.Add(genuine[:2])
	f.Add([]byte{})
	f.Add([]byte{1, 2, 'k', '1'})
	f.Add([]byte{1, 255})
	f.Fuzz(func(t *testing.T, v []byte) {
		pt, err := keys.openFor(specA, v)
		if err == nil && !bytes.Equal(v, genuine) {
			t.Fatalf("openFor(%x) = %q, want an error", v, pt)
		}
		if err != nil && !errors.Is(err, errUnknownKey) && !errors.Is(err, errMalformed) && !errors.Is(err, errOpen) {
			t.Fatalf("openFor(%x) error = %v, want a known reason", v, err)
		}
	})
}

func TestNewSessionsRegistrationConflict(t *testing.T) {
	srv := redistest.Start(t)
	s, reg := newSessions(t, srv, mustKeys(t, keyLine("k1")), 0)
	if _, err := NewSessions(s.st, s.keys, SessionsOptions{Registerer: reg}); err == nil {
		t.Error("NewSessions() on a registry that has its metrics: nil error, want one")
	}
	if _, err := NewSessions(s.st, s.keys, SessionsOptions{LockTTL: time.Millisecond}); err == nil {
		t.Error("NewSessions() with a 1ms lock TTL: nil error, want one")
	}
	want := fmt.Sprintf("%v", testutil.CollectAndCount(s.failures))
	if want != "3" {
		t.Errorf("decrypt failure series = %s, want 3 (every reason exported from zero)", want)
	}
}
