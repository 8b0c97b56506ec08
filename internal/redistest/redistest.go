// Package redistest runs a real redis-server for tests: each test gets its
// own, on a free loopback port, with persistence off, stopped when the test
// ends; or its own Cluster, replica or Sentinel (topology.go). Tests that need one skip when redis-server is not installed, except
// in CI (CI=true), where .ci/run installs Debian's redis-server package and
// a missing binary is a failure.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	bin  string
	port int
	argv []string // redis-server's arguments
	dir  string   // its working directory, where it writes any file (a replica's RDB, a Cluster node's nodes.conf)
	tls  bool     // it accepts only TLS

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts a redis-server for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, func(port int) []string { return serverArgs(port) })
}

// serverArgs are the arguments of a plain server on port: loopback only,
// nothing persisted, and a replica's first sync started at once (not
// after the default 5s wait for more replicas).
func serverArgs(port int) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning",
		"--repl-diskless-sync-delay", "0"}
}

// start starts redis-server with the arguments argv gives for the port
// start picks.
func start(t testing.TB, argv func(port int) []string) *Server {
	t.Helper()
	s := &Server{t: t, bin: binary(t), port: freePort(t), dir: t.TempDir()}
	s.argv = argv(s.port)
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// binary is $REDIS_SERVER, or redis-server from PATH; it skips t when
// there is none, except in CI.
func binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("REDIS_SERVER"); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found in CI: .ci/run must install it")
		}
		t.Skip("redis-server not installed (apt-get install redis-server)")
	}
	return bin
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL (rediss:// for StartTLS), database 0.
func (s *Server) URL() string {
	if s.tls {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// StartTLS starts a redis-server for t that accepts only TLS, serving the
// certificate and key in certFile and keyFile (and not asking clients for
// one), and stops it when t ends.
func StartTLS(t testing.TB, certFile, keyFile string) *Server {
	t.Helper()
	return startTLS(t, certFile, keyFile, nil)
}

// startTLS is StartTLS with more arguments.
func startTLS(t testing.TB, certFile, keyFile string, more func(port int) []string) *Server {
	t.Helper()
	s := &Server{t: t, bin: binary(t), port: freePort(t), dir: t.TempDir(), tls: true}
	s.argv = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", certFile,
		"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--loglevel", "warning"}
	if more != nil {
		s.argv = append(s.argv, more(s.port)...)
	}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// Kill stops the server at once (SIGKILL), as a crash would. It is a no-op
// if the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port, empty, and returns once
// it accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command(s.bin, s.argv...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pong(s.Addr(), s.tls) {
			return
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			s.cmd = nil
			s.t.Fatalf("redis-server on %s did not answer PING within 10s", s.Addr())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pong reports whether a Redis server at addr answers PING, over TLS
// (its certificate not checked: this only waits for it to start) if
// useTLS.
func pong(addr string, useTLS bool) bool {
	d := &net.Dialer{Timeout: 200 * time.Millisecond}
	var c net.Conn
	var err error
	if useTLS {
		c, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprint(c, "PING\r\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Servers listen below Linux's ephemeral port range (32768-60999 by
// default), and so do Cluster bus ports (the port plus 10000). A port in
// that range, once its server is killed, can become the local port of a
// connection to itself (a TCP self-connect): a Cluster node that pings a
// dead master's bus port then reads its own pings back, the master never
// looks dead, and its replica is never promoted.
const (
	portLow  = 10000
	portHigh = 22000 // bus ports up to 32000
	busShift = 10000
)

// freePort returns a port in [portLow, portHigh) that, with its bus port,
// is free now.
func freePort(t testing.TB) int {
	t.Helper()
	free := func(p int) bool {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		ln.Close()
		return true
	}
	for range 1000 {
		if p := portLow + rand.IntN(portHigh-portLow); free(p) && free(p+busShift) {
			return p
		}
	}
	t.Fatalf("redistest: no free port in [%d, %d)", portLow, portHigh)
	return 0
}
