package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bedrock-gateway/gateway/internal/redistest"
	"github.com/bedrock-gateway/gateway/pkg/budget"
	"github.com/bedrock-gateway/gateway/pkg/fleet"
)

// TestFleetTopologies: fleet mode behaves on a three-shard Redis Cluster
// and behind Sentinel as it does on one server: one AssumeRole per user
// across replicas, one limit and one hard budget for the whole fleet, and
// no call that Redis refuses. On the Cluster the keys spread over three
// processes, so a script or transaction whose keys are not in one slot
// would be refused with CROSSSLOT (counted as kind "reply") and the
// replica would silently fall back to its own state.
func TestFleetTopologies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		redis func(t *testing.T) fleet.RedisConfig
	}{
		{"cluster", func(t *testing.T) fleet.RedisConfig {
			// One address, as ElastiCache's configuration endpoint: the
			// client finds the other nodes through it.
			return fleet.RedisConfig{Addresses: []string{redistest.StartCluster(t, 3)[0].Addr()}}
		}},
		{"sentinel", func(t *testing.T) fleet.RedisConfig {
			s := redistest.StartSentinel(t, "gateway", redistest.Start(t), 5*time.Second)
			return fleet.RedisConfig{Addresses: []string{s.Addr()}, MasterName: "gateway"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const burst = 25
			f := startFleetOn(t, 2, tc.redis(t), func(_ int, c *Config) {
				// burst requests at once per user, then one per 100s.
				c.Policy.Limits.RequestsPerSecond, c.Policy.Limits.Burst = 0.01, burst
				// One Converse costs $0.00000102: the second passes, the third is refused.
				c.Budgets = budget.Config{{Name: "spender-daily", Scope: budget.ScopeUser, Match: "saas/acme/spender",
					Period: "daily", LimitUSD: "0.000002", Mode: "hard"}}
			})
			checkFleetShared(t, f, burst)
		})
	}
}

// checkFleetShared runs TestFleetTopologies' checks on f, whose replicas
// allow burst requests per user and a hard budget of two Converse calls
// to user "spender".
func checkFleetShared(t *testing.T, f *fleetEnv, burst int) {
	t.Helper()
	// Each user's two requests go to different replicas.
	const users = 20
	for u := range users {
		for r := range 2 {
			if rec := f.converse((u+r)%2, fmt.Sprintf("u%d", u)); rec.Code != http.StatusOK {
				t.Fatalf("u%d on replica %d: %d %s", u, (u+r)%2, rec.Code, rec.Body)
			}
		}
	}
	n, failed := f.assumeRoles(), f.redisErrors()
	if n < users || float64(n-users) > failed {
		t.Errorf("%d users, 2 requests each through 2 replicas: %d AssumeRole calls with %v failed Redis calls, want %d\n%s",
			users, n, failed, users, f.fleetMetrics())
	}

	// A cold user's concurrent first requests through both replicas.
	before, failedBefore := f.assumeRoles(), f.redisErrors()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if rec := f.converseRetrying(i%2, "cold"); rec.Code != http.StatusOK {
				t.Errorf("cold user request %d: %d %s", i, rec.Code, rec.Body)
			}
		})
	}
	wg.Wait()
	if n, failed := f.assumeRoles()-before, f.redisErrors()-failedBefore; n < 1 || float64(n-1) > failed {
		t.Errorf("20 concurrent first requests of one user: %d AssumeRole calls with %v failed Redis calls, want 1", n, failed)
	}

	// The limit is the fleet's: burst requests in all, whichever replica.
	failedBefore = f.redisErrors()
	admitted := 0
	for i := range burst + 10 {
		switch rec := f.converse(i%2, "limited"); rec.Code {
		case http.StatusOK:
			admitted++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("limited request %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if failed := f.redisErrors() - failedBefore; admitted != burst && failed == 0 {
		t.Errorf("%d requests of one user through 2 replicas: %d admitted, want the fleet's burst of %d\n%s",
			burst+10, admitted, burst, f.fleetMetrics())
	}

	// The budget is the fleet's: replica 1 refuses what replica 0 spent.
	// (A replica reuses its own read of Redis for budget.FleetReadInterval,
	// so the refusal is asked of the replica that has not read yet.)
	for i, r := range []int{0, 0, 1} {
		want := http.StatusOK
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if rec := f.converse(r, "spender"); rec.Code != want {
			t.Errorf("spender's call %d on replica %d: %d %s, want %d", i+1, r, rec.Code, rec.Body, want)
		}
		// Spends reach Redis in the background; send them now.
		if err := f.replicas[r].budgets.Flush(context.Background()); err != nil {
			t.Fatalf("budget flush on replica %d: %v", r, err)
		}
	}

	if refused := f.counter("bedrock_gateway_fleet_redis_errors_total", map[string]string{"kind": "reply"}); refused != 0 {
		t.Errorf("%v Redis calls answered with an error (CROSSSLOT, MOVED...), want none\n%s", refused, f.fleetMetrics())
	}
	for i, g := range f.replicas {
		if g.fleet.Degraded() {
			t.Errorf("replica %d degraded", i)
		}
	}
}

// TestFleetSentinelFailover: three Sentinels (quorum two) watch a master
// and its replica. When the master dies, and with it the first Sentinel
// the gateway knows, the other two promote the replica; the gateway's
// replicas find it through them, are back in shared mode, and cost one
// AssumeRole per new user across the fleet, with no request failed along
// the way.
func TestFleetSentinelFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	sentinels := redistest.StartSentinels(t, "gateway", master, 3, 2, time.Second)
	f := startFleetOn(t, 2, fleet.RedisConfig{Addresses: redistest.Addrs(sentinels), MasterName: "gateway"}, nil)
	for u := range 10 {
		if rec := f.converse(u%2, fmt.Sprintf("before%d", u)); rec.Code != http.StatusOK {
			t.Fatalf("before the failover: %d %s", rec.Code, rec.Body)
		}
	}

	master.Kill()
	sentinels[0].Kill()
	sentinel := sentinels[1]
	deadline := time.Now().Add(60 * time.Second)
	for u := 0; ; u++ {
		// Known users are served throughout.
		if rec := f.converse(u%2, fmt.Sprintf("before%d", u%10)); rec.Code != http.StatusOK {
			t.Fatalf("during the failover: %d %s", rec.Code, rec.Body)
		}
		if addr, err := redistest.MasterOf(sentinel, "gateway"); err == nil && addr == replica.Addr() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Sentinel did not promote the replica within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.awaitShared(t, deadline)

	f.checkNewUsers(t)
}

// TestFleetClusterFailover: when a Cluster master dies and its replica
// takes over its slots, the replicas serve known users throughout, find
// the new master, are back in shared mode, and cost one AssumeRole per
// new user across the fleet.
func TestFleetClusterFailover(t *testing.T) {
	t0 := time.Now()
	masters, replicas := redistest.StartClusterWithReplicas(t, 3)
	t.Logf("cluster up in %v", time.Since(t0))
	f := startFleetOn(t, 2, fleet.RedisConfig{Addresses: redistest.Addrs(append(masters, replicas...))}, nil)
	for u := range 10 {
		if rec := f.converse(u%2, fmt.Sprintf("before%d", u)); rec.Code != http.StatusOK {
			t.Fatalf("before the failover: %d %s", rec.Code, rec.Body)
		}
	}

	masters[0].Kill()
	killed := time.Now()
	promoted := redis.NewClient(&redis.Options{Addr: replicas[0].Addr()})
	defer promoted.Close()
	deadline := time.Now().Add(60 * time.Second)
	for u := 0; ; u++ {
		if rec := f.converse(u%2, fmt.Sprintf("before%d", u%10)); rec.Code != http.StatusOK {
			t.Fatalf("during the failover: %d %s", rec.Code, rec.Body)
		}
		info, err := promoted.ClusterInfo(context.Background()).Result()
		role, _ := promoted.Do(context.Background(), "ROLE").Slice()
		if err == nil && strings.Contains(info, "cluster_state:ok") && len(role) > 0 && role[0] == "master" {
			break
		}
		if time.Now().After(deadline) {
			nodes, _ := promoted.ClusterNodes(context.Background()).Result()
			repl, _ := promoted.Info(context.Background(), "replication").Result()
			t.Fatalf("the replica did not take over within 60s (role %v)\nCLUSTER NODES:\n%s\n%s", role, nodes, repl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tookOver := time.Since(killed)
	f.awaitShared(t, deadline)

	t.Logf("the replica took over %v after the master died; the gateway's replicas were in shared mode again after %v",
		tookOver.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	f.checkNewUsers(t)
}

// awaitShared sends known users' requests (before0..before9) until both
// replicas are out of degraded mode, failing t at deadline: after a
// failover their breakers may be open, and each probes Redis again
// within its back-off.
func (f *fleetEnv) awaitShared(t *testing.T, deadline time.Time) {
	t.Helper()
	for u := 0; ; u++ {
		f.converse(u%2, fmt.Sprintf("before%d", u%10))
		if !f.replicas[0].fleet.Degraded() && !f.replicas[1].fleet.Degraded() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas degraded %v, %v after the failover", f.replicas[0].fleet.Degraded(), f.replicas[1].fleet.Degraded())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkNewUsers sends 10 new users' requests, each through both
// replicas, and checks they cost 10 AssumeRole calls (more only as far as
// Redis calls failed): the fleet shares sessions again.
func (f *fleetEnv) checkNewUsers(t *testing.T) {
	t.Helper()
	before, failedBefore := f.assumeRoles(), f.redisErrors()
	for u := range 10 {
		for r := range 2 {
			if rec := f.converse((u+r)%2, fmt.Sprintf("after%d", u)); rec.Code != http.StatusOK {
				t.Fatalf("after the failover: %d %s", rec.Code, rec.Body)
			}
		}
	}
	if n, failed := f.assumeRoles()-before, f.redisErrors()-failedBefore; n < 10 || float64(n-10) > failed {
		t.Errorf("10 new users through 2 replicas after the failover: %d AssumeRole calls with %v failed Redis calls, want 10\n%s",
			n, failed, f.fleetMetrics())
	}
}
