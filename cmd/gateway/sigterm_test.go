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
	"syscall"
	"testing"
	"time"
)

// TestSIGTERM runs the real program (this test binary re-executed as the
// gateway's main) and sends it a real SIGTERM while a stream is open:
// readiness goes false at once, new connections are refused after the
// drain delay, the open stream completes, the process exits 0, and the
// ledger holds the stream's record.
func TestSIGTERM(t *testing.T) {
	e := startEnvWith(t, extraConfig{plain: true, server: "  drain_delay: 300ms\n  shutdown_grace: 20s"}, alice)
	cfg, err := os.ReadFile(e.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	subCfg := filepath.Join(e.dir, "sub.yaml")
	writeFile(t, subCfg, strings.Replace(string(cfg), "ledger: usage.jsonl", "ledger: usage-sub.jsonl", 1))

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
	var base, adminURL string
	select {
	case a := <-addrs:
		base, adminURL = "http://"+a[0], "http://"+a[1]
	case err := <-exited:
		t.Fatalf("gateway exited at start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not start")
	}

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
		_, err := c.Get(base + "/gateway/whoami")
		return err != nil
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
	if !strings.Contains(string(ledger), `"operation":"ConverseStream","model":"amazon.nova-lite-v1:0","status":200`) ||
		!strings.Contains(string(ledger), `"output_tokens":`) {
		t.Errorf("ledger lacks the stream's record:\n%s", ledger)
	}
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
