// Command bench measures what the gateway costs over a bare
// httputil.ReverseProxy, side by side in one process, against an upstream
// Bedrock that answers at once: throughput, added latency, allocations,
// upstream connections, stream first-event latency and memory per open
// stream and per cached session.
//
//	go run ./bench [-duration 5s] [-workers 32] [-streams 5000] [-sessions 10000] [-quick]
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/bedrock-gateway/gateway/internal/devcert"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if dir := os.Getenv(loaderEnv); dir != "" {
		err = runLoader(ctx, dir, os.Stdin, os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Names devcert.Write gives the upstream's certificate and key.
const (
	certName = "cert.pem"
	keyName  = "key.pem"
)

// settings are the flags.
type settings struct {
	duration time.Duration
	workers  int
	streams  int
	sessions int
	pin      bool
	cpuProf  string
}

func parseFlags(args []string, stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings
	fs.DurationVar(&s.duration, "duration", 5*time.Second, "length of each closed- and open-loop run")
	fs.IntVar(&s.workers, "workers", 32, "concurrent workers of the closed-loop runs")
	fs.IntVar(&s.streams, "streams", 5000, "concurrent open streams for the stream memory row")
	fs.IntVar(&s.sessions, "sessions", 10000, "distinct users for the session memory row")
	fs.StringVar(&s.cpuProf, "cpuprofile", "", "write a CPU profile of the proxies' process to this file")
	fs.BoolVar(&s.pin, "pin", false, "proxies on one half of the CPUs, the loader on the other (Linux): a proxy-bound run")
	quick := fs.Bool("quick", false, "a short smoke run (tiny numbers) unless other flags say otherwise")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["duration"] {
			s.duration = 200 * time.Millisecond
		}
		if !set["workers"] {
			s.workers = 4
		}
		if !set["streams"] {
			s.streams = 20
		}
		if !set["sessions"] {
			s.sessions = 20
		}
	}
	if s.duration <= 0 || s.workers < 1 || s.streams < 1 || s.sessions < 1 {
		return s, errors.New("-duration, -workers, -streams and -sessions must be positive")
	}
	return s, nil
}

// column is the results for one upstream protocol.
type column struct {
	name                string
	bare, gw            closedResult
	ratios              []float64 // gateway / bare of each pair of interleaved slices, sorted
	ratio               float64   // gateway / bare over the whole interleaved run
	rate                float64
	streamRate          float64
	bareLat, gwLat      []time.Duration
	bareFirst, gwFirst  []time.Duration
	aa                  control
	sized               sizedControl
	failed              [2]int // open-loop calls that failed, bare and gateway
	bareRSS, gwRSS      int64  // RSS growth with s.streams open streams; only measured on HTTPS/h2
	procRSS             int64  // the proxies' process RSS with them open
	sessionRSS          int64  // with s.sessions sessions; only measured on HTTP/1.1
	sessionFill         time.Duration
	measuredStreams     bool
	measuredSessionsRSS bool
}

// control is the A/A control: the same interleaved runs with a second
// bare proxy in the gateway's place. Two identical proxies should differ
// by nothing, so what these runs show is the measurement's own noise on
// this machine at this moment, the margin within which a gateway figure
// cannot be told from the bare proxy's.
type control struct {
	ratios         []float64
	ratio          float64
	lat1, lat2     []time.Duration
	first1, first2 []time.Duration
}

// sizedControl is the size-matched control: the open loop again, bare
// against a bare proxy that sends a request of the gateway's size (see
// startSized). The difference between the two is what the bigger request
// costs the upstream; the gateway's own cost is what remains.
type sizedControl struct {
	ratios      []float64 // the interleaved closed loop, as column.ratios
	ratio       float64
	bare, sized []time.Duration
	headerBytes int // the header bytes the control adds
	pad         int // the bytes it adds to the body
}

// closedResult is the closed-loop runs of one proxy, added up.
type closedResult struct {
	rps     float64       // the median of the rounds
	mallocs float64       // heap allocations per request in the proxies' process
	bytes   float64       // heap bytes allocated per request in the proxies' process
	conns   float64       // upstream connections opened per 1,000 requests
	cpu     time.Duration // CPU time per request in the proxies' process
	// loaderCPU is the loader's CPU time per request: the client's and
	// the upstream's work for it, larger for a request that carries more
	// header (a signature, a session token) to decode.
	loaderCPU time.Duration
}

// rounds is how many times each closed loop runs, bare and gateway taking
// turns, for the max req/s, allocation and connection rows. The ratio and
// the latencies come from interleaved runs instead (see slice), which a
// slow spell of the shared machine cannot favour one proxy in.
const rounds = 3

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bedrock-gateway-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	certFile, keyFile, err := devcert.Write(dir, time.Now())
	if err != nil {
		return err
	}
	if filepath.Base(certFile) != certName || filepath.Base(keyFile) != keyName {
		return fmt.Errorf("devcert wrote %s and %s, the loader reads %s and %s", certFile, keyFile, certName, keyName)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(must(x509.ParseCertificate(cert.Certificate[0])))

	cpus := ""
	if s.pin {
		cpus = pinCPUs()
	}
	ld, err := startLoader(dir, cpus, stderr)
	if err != nil {
		return err
	}
	defer ld.close()
	if s.cpuProf != "" {
		f, err := os.Create(s.cpuProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if cpus != "" {
		fmt.Fprintf(stderr, "bench: proxies on CPUs 0-%d, loader on CPUs %s\n", runtime.GOMAXPROCS(0)-1, cpus)
	}

	fmt.Fprintf(stderr, "bench: %d workers × %v per run, %d rounds; %d streams; %d sessions\n", s.workers, s.duration, rounds, s.streams, s.sessions)
	var cols []column
	for _, u := range []struct {
		name, url, ca string
	}{{"HTTP/1.1 upstream", ld.hello.PlainURL, ""}, {"HTTPS/h2 upstream", ld.hello.TLSURL, certFile}} {
		fmt.Fprintf(stderr, "bench: %s\n", u.name)
		col, err := measure(ctx, s, dir, u.name, u.url, u.ca, roots, ld, u.ca != "", u.ca == "")
		if err != nil {
			return fmt.Errorf("%s: %w", u.name, err)
		}
		cols = append(cols, col)
	}
	report(stdout, s, cols, cpus)
	return nil
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// closedRounds runs the closed loop against bare and gateway in turns and
// measures allocations in this process (the proxies) around each run.
func closedRounds(ld *loader, bare, gw command) (closedResult, closedResult, error) {
	var res [2]struct {
		rps                     []float64
		requests                int64
		mallocs, bytes, accepts uint64
		cpu, loaderCPU          time.Duration
	}
	for range rounds {
		for i, c := range []command{bare, gw} {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			cpu0 := cpuTime()
			r, err := ld.do(c)
			cpu1 := cpuTime()
			runtime.ReadMemStats(&after)
			if err != nil {
				return closedResult{}, closedResult{}, err
			}
			res[i].rps = append(res[i].rps, float64(r.Requests)/r.Seconds)
			res[i].requests += r.Requests
			res[i].mallocs += after.Mallocs - before.Mallocs
			res[i].bytes += after.TotalAlloc - before.TotalAlloc
			res[i].accepts += uint64(r.Accepts)
			res[i].cpu += cpu1 - cpu0
			res[i].loaderCPU += r.CPU
		}
	}
	var out [2]closedResult
	for i, r := range res {
		slices.Sort(r.rps)
		n := float64(r.requests)
		out[i] = closedResult{rps: r.rps[len(r.rps)/2], mallocs: float64(r.mallocs) / n, bytes: float64(r.bytes) / n,
			conns: float64(r.accepts) * 1000 / n, cpu: time.Duration(float64(r.cpu) / n),
			loaderCPU: time.Duration(float64(r.loaderCPU) / n)}
	}
	return out[0], out[1], nil
}

// slice is how long the interleaved runs stay on one proxy before
// switching to the other: short enough that a slow spell of the shared
// machine falls on both, long enough (hundreds of requests) that the
// switch itself is noise.
const slice = 250 * time.Millisecond

// interleavedClosed runs the closed loop against bare and gateway
// interleaved slice by slice, and returns each pair of slices' ratio
// (gateway over the bare slice just before it), sorted, and the ratio of
// the totals.
func interleavedClosed(ld *loader, bare, gw command) ([]float64, float64, error) {
	c := bare
	c.Target2, c.Header2, c.Slice = gw.Target, gw.Header, slice
	r, err := ld.do(c)
	if err != nil {
		return nil, 0, err
	}
	var ratios []float64
	for k := 0; k+1 < len(r.Slices); k += 2 {
		if r.Slices[k] > 0 {
			ratios = append(ratios, float64(r.Slices[k+1])/float64(r.Slices[k]))
		}
	}
	if len(ratios) == 0 || r.Requests == 0 {
		return nil, 0, errors.New("interleaved closed loop: no complete pair of slices")
	}
	slices.Sort(ratios)
	return ratios, float64(r.Requests2) / float64(r.Requests), nil
}

// interleavedOpen runs one open loop at c.Rate for c.Duration, bare and
// gateway taking slices in turn, and returns each one's latencies.
func interleavedOpen(ld *loader, failed *[2]int, bare, gw command) ([]time.Duration, []time.Duration, error) {
	c := bare
	c.Target2, c.Header2, c.Slice = gw.Target, gw.Header, slice
	r, err := ld.do(c)
	if err != nil {
		return nil, nil, err
	}
	failed[0] += r.Failed
	failed[1] += r.Failed2
	return r.Latencies, r.Latencies2, nil
}

// measure runs every measurement against the bare proxy and the gateway
// in front of one upstream.
func measure(ctx context.Context, s settings, dir, name, upstreamURL, caBundle string, roots *x509.CertPool,
	ld *loader, streams, sessions bool) (column, error) {
	col := column{name: name}
	bare, err := startBare(upstreamURL, roots)
	if err != nil {
		return col, err
	}
	defer bare.close()
	bare2, err := startBare(upstreamURL, roots)
	if err != nil {
		return col, err
	}
	defer bare2.close()
	gw, err := startGateway(ctx, dir, ld.hello, upstreamURL, caBundle, s.sessions)
	if err != nil {
		return col, err
	}
	defer gw.close()
	bc := command{Target: bare.url, Workers: s.workers}
	b2c := command{Target: bare2.url, Workers: s.workers}
	gc := command{Target: gw.url, Workers: s.workers, Header: http.Header{"Authorization": {"Bearer " + gw.key}}}
	with := func(c command, op string, d time.Duration, rate float64, stream bool) command {
		c.Op, c.Duration, c.Rate, c.Stream = op, d, rate, stream
		return c
	}
	for _, c := range []command{bc, b2c, gc} { // warm up: session, connections
		if _, err := ld.do(with(c, "closed", min(s.duration, time.Second), 0, false)); err != nil {
			return col, fmt.Errorf("warm-up: %w", err)
		}
	}
	signed, err := ld.do(command{Op: "signed"})
	if err != nil {
		return col, err
	}
	col.sized.pad = int(signed.SignedBody) - len(body)
	for _, k := range []string{"Authorization", "X-Amz-Security-Token", "X-Amz-Date"} {
		col.sized.headerBytes += len(k) + len(signed.SignedHeader.Get(k))
	}
	sized, err := startSized(upstreamURL, roots, signed.SignedHeader, col.sized.pad)
	if err != nil {
		return col, err
	}
	defer sized.close()
	sc := command{Target: sized.url, Workers: s.workers}
	if _, err := ld.do(with(sc, "closed", min(s.duration, time.Second), 0, false)); err != nil {
		return col, fmt.Errorf("warm-up: %w", err)
	}
	if col.bare, col.gw, err = closedRounds(ld, with(bc, "closed", s.duration, 0, false), with(gc, "closed", s.duration, 0, false)); err != nil {
		return col, err
	}
	// Each proxy gets 2×duration of the interleaved run.
	if col.ratios, col.ratio, err = interleavedClosed(ld, with(bc, "closed", 4*s.duration, 0, false), with(gc, "closed", 0, 0, false)); err != nil {
		return col, err
	}
	col.rate = col.bare.rps / 2
	if col.bareLat, col.gwLat, err = interleavedOpen(ld, &col.failed, with(bc, "open", 2*s.duration, col.rate, false), gc); err != nil {
		return col, fmt.Errorf("open loop: %w", err)
	}
	if col.sized.ratios, col.sized.ratio, err = interleavedClosed(ld, with(bc, "closed", 4*s.duration, 0, false), sc); err != nil {
		return col, fmt.Errorf("size-matched control: %w", err)
	}
	var sizedFailed [2]int
	if col.sized.bare, col.sized.sized, err = interleavedOpen(ld, &sizedFailed, with(bc, "open", 2*s.duration, col.rate, false), sc); err != nil {
		return col, fmt.Errorf("size-matched control: %w", err)
	}
	// A stream costs more than a Converse: a quarter of the gateway's
	// Converse maximum keeps both proxies out of saturation.
	col.streamRate = col.gw.rps / 4
	if col.bareFirst, col.gwFirst, err = interleavedOpen(ld, &col.failed, with(bc, "open", 2*s.duration, col.streamRate, true), gc); err != nil {
		return col, fmt.Errorf("streams: %w", err)
	}
	// The A/A control: the same three interleaved runs, bare against bare.
	var aaFailed [2]int
	if col.aa.ratios, col.aa.ratio, err = interleavedClosed(ld, with(bc, "closed", 4*s.duration, 0, false), b2c); err != nil {
		return col, fmt.Errorf("A/A: %w", err)
	}
	if col.aa.lat1, col.aa.lat2, err = interleavedOpen(ld, &aaFailed, with(bc, "open", 2*s.duration, col.rate, false), b2c); err != nil {
		return col, fmt.Errorf("A/A open loop: %w", err)
	}
	if col.aa.first1, col.aa.first2, err = interleavedOpen(ld, &aaFailed, with(bc, "open", 2*s.duration, col.streamRate, true), b2c); err != nil {
		return col, fmt.Errorf("A/A streams: %w", err)
	}
	if streams {
		col.measuredStreams = true
		for _, t := range []struct {
			c   command
			out *int64
		}{{bc, &col.bareRSS}, {gc, &col.gwRSS}} {
			before := rss()
			c := t.c
			c.Op, c.N = "hold", s.streams
			if _, err := ld.do(c); err != nil {
				return col, fmt.Errorf("open streams: %w", err)
			}
			after := rss()
			*t.out = after - before
			if t.out == &col.gwRSS {
				col.procRSS = after
			}
			if _, err := ld.do(command{Op: "release"}); err != nil {
				return col, err
			}
		}
	}
	if sessions {
		col.measuredSessionsRSS = true
		before := rss()
		r, err := ld.do(command{Op: "sessions", Target: gw.url, N: s.sessions, Workers: s.workers,
			Header: http.Header{"Authorization": {"Bearer " + gw.platform}}})
		if err != nil {
			return col, err
		}
		col.sessionRSS, col.sessionFill = rss()-before, time.Duration(r.Seconds*float64(time.Second))
	}
	return col, nil
}

// report prints the table.
func report(w io.Writer, s settings, cols []column, cpus string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(label string, cell func(c column) string) {
		fmt.Fprint(tw, label)
		for _, c := range cols {
			fmt.Fprint(tw, "\t", cell(c))
		}
		fmt.Fprintln(tw, "\t")
	}
	row("", func(c column) string { return c.name })
	row(fmt.Sprintf("max req/s, bare (%d workers × %v)", s.workers, s.duration), func(c column) string { return fmt.Sprintf("%.0f", c.bare.rps) })
	row("max req/s, gateway", func(c column) string { return fmt.Sprintf("%.0f", c.gw.rps) })
	row("gateway / bare, interleaved: all (median, p10-p90 of slices)", func(c column) string { return ratios(c.ratio, c.ratios) })
	row("  A/A control, bare / bare", func(c column) string { return ratios(c.aa.ratio, c.aa.ratios) })
	row("  size-matched control / bare", func(c column) string { return ratios(c.sized.ratio, c.sized.ratios) })
	row("open loop at 50% of bare's max", func(c column) string { return fmt.Sprintf("%.0f req/s", c.rate) })
	row("added latency p50 / p90 / p99", func(c column) string { return added(c.bareLat, c.gwLat, 50, 90, 99) })
	row("  (bare p50 / p99)", func(c column) string { return lat(c.bareLat, 50, 99) })
	row("  A/A control, bare over bare", func(c column) string { return added(c.aa.lat1, c.aa.lat2, 50, 90, 99) })
	row("  size-matched control over bare", func(c column) string { return added(c.sized.bare, c.sized.sized, 50, 90, 99) })
	row("  gateway over the size-matched control", func(c column) string {
		return addedOver(c.bareLat, c.gwLat, c.sized.bare, c.sized.sized, 50, 90, 99)
	})
	row("  (size-matched: + header bytes, + body bytes)", func(c column) string {
		return fmt.Sprintf("+%d B, +%d B", c.sized.headerBytes, c.sized.pad)
	})
	row("streams open loop at 25% of gateway's max", func(c column) string { return fmt.Sprintf("%.0f streams/s", c.streamRate) })
	row("stream first event, added p50 / p99", func(c column) string { return added(c.bareFirst, c.gwFirst, 50, 99) })
	row("  (bare p50 / p99)", func(c column) string { return lat(c.bareFirst, 50, 99) })
	row("  A/A control, bare over bare", func(c column) string { return added(c.aa.first1, c.aa.first2, 50, 99) })
	row("open-loop calls failed, gateway (bare)", func(c column) string { return fmt.Sprintf("%d (%d)", c.failed[1], c.failed[0]) })
	row("CPU/req in the proxy, gateway (bare)", func(c column) string {
		return fmt.Sprintf("%.1f µs (%.1f µs), %+.0f%%", us(c.gw.cpu), us(c.bare.cpu), 100*(float64(c.gw.cpu)/float64(c.bare.cpu)-1))
	})
	row("CPU/req in the loader (client, upstream), gateway (bare)", func(c column) string {
		return fmt.Sprintf("%.1f µs (%.1f µs), %+.0f%%", us(c.gw.loaderCPU), us(c.bare.loaderCPU), 100*(float64(c.gw.loaderCPU)/float64(c.bare.loaderCPU)-1))
	})
	row("allocs/req in the proxy, gateway (bare)", func(c column) string { return fmt.Sprintf("%.0f (%.0f)", c.gw.mallocs, c.bare.mallocs) })
	row("bytes/req in the proxy, gateway (bare)", func(c column) string { return fmt.Sprintf("%s (%s)", size(c.gw.bytes), size(c.bare.bytes)) })
	row("added allocs/req, added bytes/req", func(c column) string {
		return fmt.Sprintf("%.0f, %s", c.gw.mallocs-c.bare.mallocs, size(c.gw.bytes-c.bare.bytes))
	})
	row("upstream conns per 1,000 req, gateway (bare)", func(c column) string { return fmt.Sprintf("%.2f (%.2f)", c.gw.conns, c.bare.conns) })
	row(fmt.Sprintf("RSS with %d open streams, gateway (bare)", s.streams), func(c column) string {
		if !c.measuredStreams {
			return "-"
		}
		return fmt.Sprintf("+%s (+%s), %s in all", size(float64(c.gwRSS)), size(float64(c.bareRSS)), size(float64(c.procRSS)))
	})
	row("  added per stream", func(c column) string {
		if !c.measuredStreams {
			return "-"
		}
		return size(float64(c.gwRSS-c.bareRSS) / float64(s.streams))
	})
	row(fmt.Sprintf("RSS with %d cached sessions", s.sessions), func(c column) string {
		if !c.measuredSessionsRSS {
			return "-"
		}
		return fmt.Sprintf("+%s (%s each, filled in %v)", size(float64(c.sessionRSS)),
			size(float64(c.sessionRSS)/float64(s.sessions)), c.sessionFill.Round(100*time.Millisecond))
	})
	tw.Flush()
	where := "on the same CPUs"
	if cpus != "" {
		where = fmt.Sprintf("pinned to CPUs %s, the proxies to the others (-pin)", cpus)
	}
	fmt.Fprintln(w, `
The proxies run in this process; the load generator, the upstream and the
emulated STS in a child process `+where+`. Max req/s is the median
of `+strconv.Itoa(rounds)+` closed-loop rounds, bare and gateway taking turns. The
ratio and the latencies come from runs that interleave the proxies in
`+slice.String()+` slices (the closed loop for 4×duration, the open loops for
2×duration): the ratio of all requests completed, and the median and
spread of each pair of slices' ratio. The A/A control rows repeat those
runs with a second bare proxy in the gateway's place: how far two
identical proxies differ, the noise floor of this run. The size-matched
control is a bare proxy that sends a request of the gateway's size (its
SigV4 headers, its stamped body's length): what the bigger request costs
the upstream, which the gateway's added latency includes. Allocations,
bytes and RSS are this process's: the proxies' own. "in all" is the
process's whole RSS with the gateway's streams open (bare idle).`)
}

func ratios(all float64, sorted []float64) string {
	return fmt.Sprintf("%.2f (%.2f, %.2f-%.2f)", all, sorted[len(sorted)/2], sorted[len(sorted)/10], sorted[len(sorted)*9/10])
}

func lat(sorted []time.Duration, ps ...float64) string {
	out := ""
	for i, p := range ps {
		if i > 0 {
			out += " / "
		}
		out += ms(percentile(sorted, p))
	}
	return out + " ms"
}

func added(bare, gw []time.Duration, ps ...float64) string {
	return diffs(ps, func(p float64) time.Duration { return percentile(gw, p) - percentile(bare, p) })
}

// diffs formats d at each of ps as signed milliseconds.
func diffs(ps []float64, d func(p float64) time.Duration) string {
	out := ""
	for i, p := range ps {
		if i > 0 {
			out += " / "
		}
		sign := "+"
		if d(p) < 0 {
			sign = ""
		}
		out += sign + ms(d(p))
	}
	return out + " ms"
}

// addedOver is, at each percentile, how much more gw adds over bare than
// sized adds over bare2: the gateway's latency over the size-matched
// control's, each measured against the bare proxy in its own run.
func addedOver(bare, gw, bare2, sized []time.Duration, ps ...float64) string {
	return diffs(ps, func(p float64) time.Duration {
		return (percentile(gw, p) - percentile(bare, p)) - (percentile(sized, p) - percentile(bare2, p))
	})
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func size(b float64) string {
	switch {
	case b >= 1<<20 || b <= -1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10 || b <= -1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
