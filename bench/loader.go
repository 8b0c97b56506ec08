package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

// The load generator, the upstream and the emulated STS run in a child
// process, the loader: the parent process then holds only the two proxies
// under test, so its allocation counts and RSS are theirs, and the load
// generator's garbage does not set off garbage collections in the proxies
// mid-measurement. The two processes still share the machine's CPUs, as
// a load generator on the same host always does.

// loaderEnv, set to the benchmark's temporary directory, makes the
// program (or the test binary, see TestMain) run as the loader.
const loaderEnv = "BEDROCK_GATEWAY_BENCH_LOADER"

// hello is the loader's first line: where its servers listen.
type hello struct {
	PlainURL, TLSURL, STSURL string
	// RootKeyID and RootSecret are the gateway's own credentials in the
	// emulated account.
	RootKeyID, RootSecret string
}

// command is one measurement the parent asks of the loader.
type command struct {
	Op       string // "closed", "open", "hold", "release", "sessions"
	Target   string
	Header   http.Header
	Workers  int
	N        int
	Duration time.Duration
	Rate     float64
	Stream   bool // open loop: ConverseStream first-event latency instead of Converse
	// Target2 and Header2, when set, are a second target that "closed" and
	// "open" interleave with the first in slices of length Slice.
	Target2 string
	Header2 http.Header
	Slice   time.Duration
}

// reply is the loader's answer to a command.
type reply struct {
	Err      string
	Requests int64
	Seconds  float64
	Accepts  int64 // upstream connections accepted during the command
	// CPU is the loader's CPU time during the command: the load
	// generator's, the upstream's and STS's, which the proxies' requests
	// cost this machine besides their own.
	CPU       time.Duration
	Latencies []time.Duration // open loop, sorted: the calls that succeeded
	Failed    int             // open loop: calls that failed
	// SignedHeader and SignedBody ("signed"): the header and body length
	// of a signed Converse the upstream received.
	SignedHeader http.Header
	SignedBody   int64
	// Interleaved runs: the second target's figures, and (closed loop)
	// the requests completed per slice, even slices the first target's.
	Requests2  int64
	Latencies2 []time.Duration
	Failed2    int
	Slices     []int64
}

// runLoader serves commands from in, one reply each to out, until in ends.
func runLoader(ctx context.Context, dir string, in io.Reader, out io.Writer) error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certName), filepath.Join(dir, keyName))
	if err != nil {
		return err
	}
	up := newUpstream()
	plainURL, tlsURL, err := up.serve(cert)
	if err != nil {
		return err
	}
	defer up.close()
	fake := fakeaws.New(fakeaws.Options{AccountID: account, Region: region, Roles: []string{invokeRole}, RecordLimit: 1})
	stsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	stsSrv := &http.Server{Handler: fake.STSHandler()}
	go stsSrv.Serve(stsLn)
	defer stsSrv.Close()
	root := fake.RootCredentials(gatewayRole)
	enc := json.NewEncoder(out)
	if err := enc.Encode(hello{PlainURL: plainURL, TLSURL: tlsURL, STSURL: "http://" + stsLn.Addr().String(),
		RootKeyID: root.AccessKeyID, RootSecret: root.SecretAccessKey}); err != nil {
		return err
	}

	clients := map[string]*client{}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	clientFor := func(target string, header http.Header, conns int) *client {
		keys := make([]string, 0, len(header))
		for k := range header {
			keys = append(keys, k+"="+strings.Join(header[k], ","))
		}
		sort.Strings(keys)
		id := fmt.Sprint(target, keys, conns)
		if cl, ok := clients[id]; ok {
			return cl
		}
		cl := newClient(target, conns, header)
		clients[id] = cl
		return cl
	}
	var held []io.ReadCloser
	// Held streams live until "release", under their own context.
	holdCtx, holdCancel := newHold(ctx)
	defer func() { holdCancel() }()
	dec := json.NewDecoder(bufio.NewReader(in))
	for {
		var c command
		if err := dec.Decode(&c); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var r reply
		accepts0, cpu0 := up.accepts.Load(), cpuTime()
		switch c.Op {
		case "closed", "open":
			clients := []*client{clientFor(c.Target, c.Header, max(c.Workers*2, 512))}
			if c.Target2 != "" {
				clients = append(clients, clientFor(c.Target2, c.Header2, max(c.Workers*2, 512)))
			}
			if c.Op == "closed" {
				r.Slices, r.Seconds, err = closedLoop(ctx, clients, c.Workers, c.Duration, c.Slice)
				for k, n := range r.Slices {
					if k%2 == 0 {
						r.Requests += n
					} else {
						r.Requests2 += n
					}
				}
				break
			}
			do := func(ctx context.Context, target int, due time.Time) (time.Duration, error) {
				if c.Stream {
					return clients[target].stream(ctx, due)
				}
				err := clients[target].converse(ctx)
				return time.Since(due), err
			}
			var lat [][]time.Duration
			var failed []int
			lat, failed, err = openLoop(ctx, c.Rate, c.Duration, c.Slice, len(clients), do)
			if err == nil {
				r.Latencies, r.Failed = lat[0], failed[0]
				if len(lat) > 1 {
					r.Latencies2, r.Failed2 = lat[1], failed[1]
				}
			}
		case "hold":
			held, err = holdStreams(holdCtx, newClient(c.Target, c.N, c.Header), c.N)
		case "signed":
			up.mu.Lock()
			r.SignedHeader, r.SignedBody = up.signedHeader, up.signedBody
			up.signedHeader = nil // the next column's gateway sends its own
			up.mu.Unlock()
			if r.SignedHeader == nil {
				err = errors.New("the upstream has seen no signed Converse")
			}
		case "release":
			holdCancel()
			for _, b := range held {
				b.Close()
			}
			held = nil
			holdCtx, holdCancel = newHold(ctx)
		case "sessions":
			start := time.Now()
			err = fillSessions(ctx, clientFor(c.Target, c.Header, c.Workers), c.N, c.Workers)
			r.Seconds = time.Since(start).Seconds()
		default:
			err = fmt.Errorf("unknown command %q", c.Op)
		}
		r.Accepts, r.CPU = up.accepts.Load()-accepts0, cpuTime()-cpu0
		if err != nil {
			r.Err = err.Error()
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
}

// newHold is the context held streams are opened under, and its cancel.
func newHold(ctx context.Context) (context.Context, func()) {
	return context.WithCancel(ctx)
}

// loader is the parent's handle on the loader process.
type loader struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	enc   *json.Encoder
	dec   *json.Decoder
	hello hello
}

// startLoader starts this program again as the loader, in dir (which
// holds the upstream's certificate), on the CPUs in cpus (a taskset list;
// "" for any), and waits for its hello.
func startLoader(dir, cpus string, stderr io.Writer) (*loader, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	if taskset, err := exec.LookPath("taskset"); err == nil && cpus != "" {
		cmd = exec.Command(taskset, "-c", cpus, exe)
	}
	cmd.Env = append(os.Environ(), loaderEnv+"="+dir)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l := &loader{cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), dec: json.NewDecoder(bufio.NewReader(stdout))}
	if err := l.dec.Decode(&l.hello); err != nil {
		l.close()
		return nil, fmt.Errorf("loader did not start: %w", err)
	}
	return l, nil
}

// do runs one command in the loader.
func (l *loader) do(c command) (reply, error) {
	if err := l.enc.Encode(c); err != nil {
		return reply{}, fmt.Errorf("loader: %w", err)
	}
	var r reply
	if err := l.dec.Decode(&r); err != nil {
		return reply{}, fmt.Errorf("loader: %w", err)
	}
	if r.Err != "" {
		return r, fmt.Errorf("%s: %s", c.Op, r.Err)
	}
	return r, nil
}

// close ends the loader: it returns when its input ends.
func (l *loader) close() {
	l.stdin.Close()
	done := make(chan struct{})
	go func() { l.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		l.cmd.Process.Kill()
		<-done
	}
}
