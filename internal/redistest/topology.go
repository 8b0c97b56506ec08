package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots a Redis Cluster divides keys
// into.
const clusterSlots = 16384

// StartCluster starts a Redis Cluster of n masters (no replicas) for t,
// the 16384 slots split evenly among them, and returns once every node
// reports the cluster ok. Keys whose slots differ land on different
// processes, so a multi-key command or script whose keys do not share a
// hash tag fails with CROSSSLOT, as on ElastiCache in cluster mode.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	masters, _ := startCluster(t, clusterSpec{masters: n, nodeTimeout: 5 * time.Second})
	return masters
}

// StartTLSCluster is StartCluster with every node accepting only TLS,
// serving the certificate and key in certFile and keyFile (which must be
// its own CA: the nodes check each other with it), clients and cluster
// bus alike.
func StartTLSCluster(t testing.TB, n int, certFile, keyFile string) []*Server {
	t.Helper()
	masters, _ := startCluster(t, clusterSpec{masters: n, nodeTimeout: 5 * time.Second, certFile: certFile, keyFile: keyFile})
	return masters
}

// StartClusterWithReplicas is StartCluster with one replica per master,
// and a node timeout of two seconds (five for StartCluster): a master
// that dies is replaced by its replica within a few seconds.
// replicas[i] replicates masters[i].
func StartClusterWithReplicas(t testing.TB, n int) (masters, replicas []*Server) {
	t.Helper()
	return startCluster(t, clusterSpec{masters: n, replicas: true, nodeTimeout: 2 * time.Second})
}

// clusterSpec is a Cluster to start: masters, each with a replica if
// replicas; nodes judge another failed after nodeTimeout without an
// answer; with certFile and keyFile, TLS only.
type clusterSpec struct {
	masters           int
	replicas          bool
	nodeTimeout       time.Duration
	certFile, keyFile string
}

func startCluster(t testing.TB, spec clusterSpec) (masters, replicas []*Server) {
	t.Helper()
	node := func() *Server {
		cluster := func(port int) []string {
			return []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.FormatInt(spec.nodeTimeout.Milliseconds(), 10)}
		}
		if spec.certFile != "" {
			return startTLS(t, spec.certFile, spec.keyFile, func(port int) []string {
				return append(cluster(port), "--tls-cluster", "yes", "--tls-replication", "yes")
			})
		}
		return start(t, func(port int) []string { return append(serverArgs(port), cluster(port)...) })
	}
	n := spec.masters
	for range n {
		masters = append(masters, node())
		if spec.replicas {
			replicas = append(replicas, node())
		}
	}
	all := append(append([]*Server(nil), masters...), replicas...)
	ctx := context.Background()
	do := func(s *Server, args ...any) (any, error) {
		o := &redis.Options{Addr: s.Addr()}
		if s.tls {
			o.TLSConfig = &tls.Config{InsecureSkipVerify: true} // setting up, not testing
		}
		c := redis.NewClient(o)
		defer c.Close()
		return c.Do(ctx, args...).Result()
	}
	for i, s := range masters {
		args := []any{"CLUSTER", "ADDSLOTS"}
		for slot := i * clusterSlots / n; slot < (i+1)*clusterSlots/n; slot++ {
			args = append(args, slot)
		}
		if _, err := do(s, args...); err != nil {
			t.Fatalf("cluster node %s: %v", s.Addr(), err)
		}
	}
	for _, s := range all[1:] {
		if _, err := do(s, "CLUSTER", "MEET", "127.0.0.1", all[0].port); err != nil {
			t.Fatalf("cluster node %s: %v", s.Addr(), err)
		}
	}
	known := func(s *Server, what string) bool {
		info, err := do(s, "CLUSTER", "INFO")
		str, _ := info.(string)
		return err == nil && strings.Contains(str, what)
	}
	waitFor(t, 30*time.Second, "every node to know the others", func() bool {
		for _, s := range all {
			if !known(s, "cluster_known_nodes:"+strconv.Itoa(len(all))+"\r\n") {
				return false
			}
		}
		return true
	})
	for i, r := range replicas {
		id, err := do(masters[i], "CLUSTER", "MYID")
		if err == nil {
			_, err = do(r, "CLUSTER", "REPLICATE", id)
		}
		if err != nil {
			t.Fatalf("cluster replica %s: %v", r.Addr(), err)
		}
	}
	waitFor(t, 30*time.Second, "the cluster to be ok on every node, each replica in sync", func() bool {
		for _, s := range all {
			if !known(s, "cluster_state:ok") {
				return false
			}
		}
		for _, r := range replicas {
			info, err := do(r, "INFO", "replication")
			if str, _ := info.(string); err != nil || !strings.Contains(str, "master_link_status:up") {
				return false
			}
		}
		return true
	})
	return masters, replicas
}

// Addrs are the servers' host:port addresses.
func Addrs(servers []*Server) []string {
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// StartReplica starts a server that replicates master, and returns once
// its first sync is done.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	r := start(t, func(port int) []string {
		return append(serverArgs(port), "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	})
	waitFor(t, 30*time.Second, "the replica's first sync", func() bool {
		c := redis.NewClient(&redis.Options{Addr: r.Addr()})
		defer c.Close()
		info, err := c.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	return r
}

// StartSentinel starts a Sentinel for t that monitors master as name,
// with a quorum of one and a master declared down after downAfter, and
// returns once it answers for name.
func StartSentinel(t testing.TB, name string, master *Server, downAfter time.Duration) *Server {
	t.Helper()
	return startSentinel(t, name, master, 1, downAfter)
}

// StartSentinels starts n Sentinels for t that monitor master as name,
// agreeing it is down when quorum of them see it so after downAfter, and
// returns once each knows the others (found through the master, every
// two seconds), so that a failover can be agreed.
func StartSentinels(t testing.TB, name string, master *Server, n, quorum int, downAfter time.Duration) []*Server {
	t.Helper()
	ss := make([]*Server, n)
	for i := range ss {
		ss[i] = startSentinel(t, name, master, quorum, downAfter)
	}
	waitFor(t, 30*time.Second, "the Sentinels to find each other", func() bool {
		for _, s := range ss {
			c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
			others, err := c.Sentinels(context.Background(), name).Result()
			c.Close()
			if err != nil || len(others) != n-1 {
				return false
			}
		}
		return true
	})
	return ss
}

func startSentinel(t testing.TB, name string, master *Server, quorum int, downAfter time.Duration) *Server {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	s := start(t, func(port int) []string {
		// Sentinel rewrites its config file, so each gets its own.
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d %d\n"+
			"sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s 10000\n",
			port, filepath.Dir(conf), name, master.port, quorum, name, downAfter.Milliseconds(), name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{conf, "--sentinel", "--loglevel", "warning"}
	})
	waitFor(t, 30*time.Second, "the Sentinel to know "+name, func() bool {
		addr, err := MasterOf(s, name)
		return err == nil && addr != ""
	})
	return s
}

// MasterOf asks the Sentinel s for name's master's address.
func MasterOf(s *Server, name string) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(context.Background(), name).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel answered %v", hp)
	}
	return hp[0] + ":" + hp[1], nil
}

// waitFor polls cond until it holds, failing t after limit. Starting
// processes and forming a cluster take real time; there is no clock to
// fake.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: waited %v for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
