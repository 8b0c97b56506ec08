//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// TestSIGTERM runs the real program (this test binary re-executed as the
// gateway's main) and sends it a real SIGTERM while a stream is open:
// readiness goes false at once, new connections are refused after the
// drain delay, the open stream completes, the process exits 0, and the
// ledger holds the stream's record.
func TestSIGTERM(t *testing.T) {
	e := startEnvWith(t, extraConfig{plain: true, server: "  drain_delay: 300ms\n  shutdown_grace: 20s"}, alice)
	sub := startSubprocess(t, e, "usage-sub.jsonl")
	base, adminURL, cmd, exited := sub.base, sub.admin, sub.cmd, sub.exited

	// Hold a stream open: the fake keeps event 1 until released.
	release := make(chan struct{})
	e.mu.Lock()
	e.holdFor, e.release = "ConverseStream", release
	e.mu.Unlock()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, base+"/model/amazon.nova-lite-v1:0/converse-stream",
		strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`))
	req.Header.Set("Authorization", "Bearer "+e.keys[alice.user])
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := readFrameFrom(resp.Body); err != nil {
		t.Fatalf("first event: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readiness false after SIGTERM", func() bool {
		r, err := http.Get(adminURL + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusServiceUnavailable
	})
	eventually(t, "new connections refused after the drain delay", func() bool {
		c := &http.Client{Transport: &http.Transport{}, Timeout: time.Second}
		defer c.CloseIdleConnections()
		r, err := c.Get(base + "/gateway/whoami")
		if err != nil {
			return true
		}
		// Not refused yet: an unclosed answer would hold its
		// connection, and its goroutines, past the test.
		r.Body.Close()
		return false
	})

	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(rest) == 0 {
		t.Fatalf("the open stream did not finish cleanly: %d more bytes, %v", len(rest), err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("gateway exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
	ledger, err := os.ReadFile(filepath.Join(e.dir, "usage-sub.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ledger), `"operation":"ConverseStream","model":"amazon.nova-lite-v1:0","region":"us-east-1","status":200`) ||
		!strings.Contains(string(ledger), `"output_tokens":`) {
		t.Errorf("ledger lacks the stream's record:\n%s", ledger)
	}
}

// subprocess is the real program (this test binary re-executed as the
// gateway's main) serving e's configuration with its own ledger file.
type subprocess struct {
	base, admin string // data-plane and admin URLs
	cmd         *exec.Cmd
	exited      chan error // receives cmd.Wait's result
}

func startSubprocess(t *testing.T, e *env, ledger string) subprocess {
	t.Helper()
	cfg, err := os.ReadFile(e.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	subCfg := filepath.Join(e.dir, "sub.yaml")
	writeFile(t, subCfg, strings.Replace(string(cfg), "ledger: usage.jsonl", "ledger: "+ledger, 1))

	cmd := exec.Command(os.Args[0], "serve", "-config", subCfg)
	// The real program finds its own AWS identity through the SDK's
	// standard credential chain: here the environment, everything else
	// shut off.
	root := e.fake.RootCredentials(testGatewayRole)
	cmd.Env = append(os.Environ(), execMainEnv+"=1", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME="+e.bedrockURL,
		"AWS_ACCESS_KEY_ID="+root.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+root.SecretAccessKey, "AWS_SESSION_TOKEN=",
		"AWS_PROFILE=", "AWS_CONFIG_FILE="+filepath.Join(e.dir, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(e.dir, "no-credentials"), "AWS_EC2_METADATA_DISABLED=true")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addrs := make(chan [2]string, 1)
	go func() {
		var data, admin string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			switch rec.Msg {
			case "listening":
				data = rec.Addr
			case "admin listening":
				admin = rec.Addr
			}
			if data != "" && admin != "" {
				addrs <- [2]string{data, admin}
				data, admin = "", ""
			}
		}
		io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	select {
	case a := <-addrs:
		return subprocess{base: "http://" + a[0], admin: "http://" + a[1], cmd: cmd, exited: exited}
	case err := <-exited:
		t.Fatalf("gateway exited at start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not start")
	}
	panic("unreachable")
}

// readFrameFrom reads one event-stream message.
func readFrameFrom(r io.Reader) ([]byte, error) {
	var prelude [4]byte
	if _, err := io.ReadFull(r, prelude[:]); err != nil {
		return nil, err
	}
	n := int(prelude[0])<<24 | int(prelude[1])<<16 | int(prelude[2])<<8 | int(prelude[3])
	rest := make([]byte, n-4)
	_, err := io.ReadFull(r, rest)
	return append(prelude[:], rest...), err
}

// TestSIGTERMUnderLoad sends SIGTERM to the real program while sixteen
// clients keep calling Converse: every request the gateway answered is in
// the ledger once the process has exited (the ledger is buffered; shutdown
// writes it), the ledger holds no request the clients were not answered
// for beyond those whose answer was lost with its connection, and Bedrock
// saw each forwarded request exactly once (no POST retried).
func TestSIGTERMUnderLoad(t *testing.T) {
	e := startEnvWith(t, extraConfig{plain: true, server: "  drain_delay: 200ms\n  shutdown_grace: 20s"}, alice)
	sub := startSubprocess(t, e, "usage-load.jsonl")

	const workers, before = 16, 400
	var (
		mu       sync.Mutex
		answered = map[string]int{} // X-Gateway-Request-Id → status
		failed   int                // requests without an answer
		ok       atomic.Int64
		wg       sync.WaitGroup
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	for range workers {
		wg.Go(func() {
			for {
				req, _ := http.NewRequest(http.MethodPost, sub.base+"/model/amazon.nova-lite-v1:0/converse",
					strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`))
				req.Header.Set("Authorization", "Bearer "+e.keys[alice.user])
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					return // refused: the gateway has stopped listening
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				answered[resp.Header.Get("X-Gateway-Request-Id")] = resp.StatusCode
				mu.Unlock()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				}
			}
		})
	}
	eventually(t, "load under way", func() bool { return ok.Load() >= before })
	if err := sub.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	select {
	case err := <-sub.exited:
		if err != nil {
			t.Fatalf("gateway exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}

	recs := readLedger(t, filepath.Join(e.dir, "usage-load.jsonl"))
	inLedger := make(map[string]usage.Record, len(recs))
	forwarded := 0
	for _, r := range recs {
		if _, dup := inLedger[r.RequestID]; dup {
			t.Errorf("request %s is in the ledger twice", r.RequestID)
		}
		inLedger[r.RequestID] = r
		if r.Status == http.StatusOK {
			forwarded++
		}
	}
	missing := 0
	for id, status := range answered {
		if r, ok := inLedger[id]; !ok || r.Status != status {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d answered requests are not in the ledger with their status", missing, len(answered))
	}
	if extra := len(recs) - len(answered); extra < 0 || extra > failed {
		t.Errorf("ledger has %d records for %d answered requests and %d without an answer", len(recs), len(answered), failed)
	}
	invs := 0
	for _, inv := range e.fake.Invocations() {
		if inv.Operation == "Converse" {
			invs++
		}
	}
	if invs != forwarded {
		t.Errorf("Bedrock saw %d Converse calls for %d forwarded requests in the ledger; want each once", invs, forwarded)
	}
	t.Logf("%d requests answered (%d OK), %d refused at shutdown, %d ledger records", len(answered), ok.Load(), failed, len(recs))
}
