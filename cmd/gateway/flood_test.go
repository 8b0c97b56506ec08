package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// floodConns is how many connections TestSlowBodyFlood holds open; set
// GATEWAY_FLOOD_CONNS to measure with more.
func floodConns() int {
	if n, err := strconv.Atoi(os.Getenv("GATEWAY_FLOOD_CONNS")); err == nil && n > 0 {
		return n
	}
	return 500
}

// rssBytes is this process's resident set size (Linux), or 0.
func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func heapInUse() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestSlowBodyFlood: connections that send headers and then hold their
// bodies (Content-Length 100, one byte sent), half without a key and half
// with one, cannot hold the gateway: the unauthenticated ones are answered
// and closed at once, the keyed ones when the body deadline passes, and
// goroutines and heap return to their baseline. The figures are logged.
func TestSlowBodyFlood(t *testing.T) {
	const bodyTimeout = time.Second
	e := startEnvWith(t, extraConfig{plain: true, top: "proxy: {body_timeout: 1s}"}, alice)
	addr := strings.TrimPrefix(e.baseURL, "http://")
	if status, body, _ := e.call(t, map[string]string{"x-api-key": e.keys[alice.user]}); status != 200 {
		t.Fatalf("warm-up call: %d %s", status, body)
	}
	baseG, baseHeap, baseRSS := runtime.NumGoroutine(), heapInUse(), rssBytes()

	n := floodConns()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		key := ""
		if i%2 == 1 {
			key = "x-api-key: " + e.keys[alice.user] + "\r\n"
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n%sContent-Length: 100\r\n\r\n{", conversePath, key)
	}
	start := time.Now()
	peakG, peakRSS := runtime.NumGoroutine(), rssBytes()

	// Every connection is answered and closed by the gateway, within the
	// body deadline plus the drain allowance.
	var wg sync.WaitGroup
	closedAfter := make([]time.Duration, n)
	unanswered := make([]bool, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(bodyTimeout + 10*time.Second))
			b, err := io.ReadAll(c)
			closedAfter[i] = time.Since(start)
			unanswered[i] = err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 ")
		}()
	}
	wg.Wait()
	var worstUnauth, worstKeyed time.Duration
	for i, d := range closedAfter {
		if unanswered[i] {
			t.Errorf("connection %d (keyed: %v) was not answered and closed within %v", i, i%2 == 1, bodyTimeout+10*time.Second)
		}
		if i%2 == 0 {
			worstUnauth = max(worstUnauth, d)
		} else {
			worstKeyed = max(worstKeyed, d)
		}
	}
	if worstKeyed > bodyTimeout+5*time.Second {
		t.Errorf("keyed connections held for %v, want about the %v body deadline", worstKeyed, bodyTimeout)
	}

	var afterG int
	deadline := time.Now().Add(10 * time.Second)
	for {
		afterG = runtime.NumGoroutine()
		if afterG <= baseG+10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	afterHeap, afterRSS := heapInUse(), rssBytes()
	t.Logf("%d connections: goroutines %d -> peak %d -> %d; heap in use %.1f -> %.1f MiB; RSS %.1f -> peak %.1f -> %.1f MiB; unauthenticated closed within %v, keyed within %v",
		n, baseG, peakG, afterG, float64(baseHeap)/(1<<20), float64(afterHeap)/(1<<20),
		float64(baseRSS)/(1<<20), float64(peakRSS)/(1<<20), float64(afterRSS)/(1<<20), worstUnauth.Round(time.Millisecond), worstKeyed.Round(time.Millisecond))
	if afterG > baseG+10 {
		t.Errorf("goroutines %d after the flood, want back near the baseline %d", afterG, baseG)
	}
	if afterHeap > baseHeap+16<<20 {
		t.Errorf("heap in use %d bytes after the flood, want near the baseline %d", afterHeap, baseHeap)
	}
}
