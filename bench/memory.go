package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
)

// rss returns the process's resident set size in bytes after a GC that
// hands freed memory back to the OS, so that two readings compare live
// memory; 0 where /proc/self/status does not exist.
func rss() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// holdStreams opens n ConverseStreams through c that the upstream holds
// open after their first frame, and returns their bodies, still open.
func holdStreams(ctx context.Context, c *client, n int) ([]io.ReadCloser, error) {
	bodies := make([]io.ReadCloser, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 128) // opened this many at a time
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			bodies[i], errs[i] = c.firstFrame(ctx, holdModel, nil)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, b := range bodies {
				if b != nil {
					b.Close()
				}
			}
			return nil, fmt.Errorf("open stream %d of %d: %w", i+1, n, err)
		}
	}
	return bodies, nil
}

// fillSessions sends one Converse for each of n distinct users of the
// tenant through a platform key, so the gateway caches n sessions.
func fillSessions(ctx context.Context, c *client, n, workers int) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				h := http.Header{"X-Gateway-Tenant": {tenant}, "X-Gateway-User": {fmt.Sprintf("user%06d", i)}}
				resp, err := c.request(ctx, model, "converse", h)
				if err != nil {
					errs <- fmt.Errorf("session %d: %w", i, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}
