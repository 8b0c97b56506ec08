package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"testing"
)

// TestMain runs the test binary as the benchmark's loader process when
// run starts it as one (see startLoader).
func TestMain(m *testing.M) {
	if dir := os.Getenv(loaderEnv); dir != "" {
		if err := runLoader(context.Background(), dir, os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString("loader: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestQuick runs the whole benchmark with tiny numbers: it proves the
// benchmark still builds and runs, not how fast anything is.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs servers for a few seconds")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-quick", "-duration", "150ms"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for _, re := range []string{
		`max req/s, gateway\s+[1-9]\d*\s+[1-9]\d*`,
		`added latency p50 / p90 / p99\s+-?\+?[\d.]+ / `,
		`A/A control, bare / bare\s+[\d.]+ \(`,
		`A/A control, bare over bare\s+-?\+?[\d.]+ / `,
		`size-matched control over bare\s+-?\+?[\d.]+ / `,
		`size-matched control / bare\s+[\d.]+ \(`,
		`gateway over the size-matched control\s+-?\+?[\d.]+ / `,
		`size-matched: \+ header bytes, \+ body bytes\)\s+\+[1-9]\d* B, \+[1-9]\d* B`,
		`CPU/req in the loader \(client, upstream\), gateway \(bare\)\s+[\d.]+ µs \([\d.]+ µs\)`,
		`RSS with 20 open streams.*\+`,
		`RSS with 20 cached sessions.*\+`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("output does not match %q", re)
		}
	}
}
