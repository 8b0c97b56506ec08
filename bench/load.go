package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const model = "anthropic.claude-3-haiku-20240307-v1:0"

// body is a 4 KiB Converse request, the size issue 13's aims are set for.
var body = `{"messages":[{"role":"user","content":[{"text":"` + strings.Repeat("lorem ipsum ", (4096-64)/12) + `"}]}]}`

// client sends the benchmark's requests to one target over plain
// HTTP/1.1 keep-alive connections.
type client struct {
	base   string
	hc     *http.Client
	header http.Header
}

func newClient(base string, conns int, header http.Header) *client {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		IdleConnTimeout: time.Minute, DisableCompression: true}
	return &client{base: base, hc: &http.Client{Transport: tr}, header: header}
}

func (c *client) close() { c.hc.Transport.(*http.Transport).CloseIdleConnections() }

func (c *client) request(ctx context.Context, modelID, op string, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/model/"+modelID+"/"+op, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s: %s", op, resp.Status, msg)
	}
	return resp, nil
}

// converse sends one Converse and reads the whole answer.
func (c *client) converse(ctx context.Context) error {
	resp, err := c.request(ctx, model, "converse", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// firstFrame sends one ConverseStream and returns once its first
// event-stream frame has arrived, with the rest of the stream still open.
func (c *client) firstFrame(ctx context.Context, modelID string, h http.Header) (io.ReadCloser, error) {
	resp, err := c.request(ctx, modelID, "converse-stream", h)
	if err != nil {
		return nil, err
	}
	var prelude [4]byte
	if _, err := io.ReadFull(resp.Body, prelude[:]); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("first frame: %w", err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, int64(binary.BigEndian.Uint32(prelude[:]))-4); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("first frame: %w", err)
	}
	return resp.Body, nil
}

// stream sends one ConverseStream, reads it to the end and returns the
// time from start to its first frame.
func (c *client) stream(ctx context.Context, start time.Time) (time.Duration, error) {
	rest, err := c.firstFrame(ctx, model, nil)
	if err != nil {
		return 0, err
	}
	ttff := time.Since(start)
	defer rest.Close()
	_, err = io.Copy(io.Discard, rest)
	return ttff, err
}

// closedLoop runs workers that each send Converse after Converse for d,
// and returns how many completed in how many seconds. With two clients it
// interleaves them: time is cut in slices of length slice, and a request
// goes to clients[k%2] when it starts in slice k. n[k] counts the
// requests started in slice k that completed, so that gateway and bare
// compare slice by slice, under the same conditions of a shared machine,
// instead of run by run.
func closedLoop(ctx context.Context, clients []*client, workers int, d, slice time.Duration) ([]int64, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	nslices := 1
	if len(clients) > 1 {
		nslices = max(int(d/slice), 2)
	} else {
		slice = d
	}
	n := make([]atomic.Int64, nslices)
	var firstErr error
	var once sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				k := min(int(time.Since(start)/slice), nslices-1)
				if err := clients[k%len(clients)].converse(ctx); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				n[k].Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return nil, 0, firstErr
	}
	out := make([]int64, nslices)
	total := int64(0)
	for i := range n {
		out[i] = n[i].Load()
		total += out[i]
	}
	if total == 0 {
		return nil, 0, errors.New("closed loop: no request completed")
	}
	return out, elapsed.Seconds(), nil
}

// openLoop starts calls at a fixed rate for d, whatever the answers take,
// and returns, for each of targets (1 or 2), the latencies do reports for
// the calls that succeeded, sorted, and how many failed (reported, not
// hidden: the stdlib's bare ReverseProxy cuts a few ConverseStreams short
// under this load). With two targets a call goes to target k%2 when it is
// due in slice k, as closedLoop interleaves. do measures from due, when
// its call was scheduled, so a slow target is not let off by a slower
// schedule (coordinated omission). It fails only when every call to a
// target did.
func openLoop(ctx context.Context, rate float64, d, slice time.Duration, targets int,
	do func(ctx context.Context, target int, due time.Time) (time.Duration, error)) ([][]time.Duration, []int, error) {
	total := max(int(rate*d.Seconds()), 1)
	interval := time.Duration(float64(time.Second) / rate)
	if targets < 2 {
		targets, slice = 1, d+time.Second
	}
	lat := make([]time.Duration, total)
	errs := make([]error, total)
	which := make([]int, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		offset := time.Duration(i) * interval
		due := start.Add(offset)
		which[i] = int(offset/slice) % targets
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		wg.Go(func() {
			lat[i], errs[i] = do(ctx, which[i], due)
		})
	}
	wg.Wait()
	ok := make([][]time.Duration, targets)
	failed := make([]int, targets)
	firstErr := make([]error, targets)
	for i, err := range errs {
		t := which[i]
		if err != nil {
			failed[t]++
			firstErr[t] = cmp.Or(firstErr[t], err)
			continue
		}
		ok[t] = append(ok[t], lat[i])
	}
	for t := range ok {
		if len(ok[t]) == 0 {
			return nil, failed, firstErr[t]
		}
		slices.Sort(ok[t])
	}
	return ok, failed, nil
}

// percentile returns the p-th percentile (0..100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return sorted[i]
}
