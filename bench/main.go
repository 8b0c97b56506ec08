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
	"net"
	"net/http"
	"os"
	"os/signal"
	"text/tabwriter"
	"time"

	"github.com/bedrock-gateway/gateway/internal/devcert"
	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// settings are the flags.
type settings struct {
	duration time.Duration
	workers  int
	streams  int
	sessions int
}

func parseFlags(args []string, stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings
	fs.DurationVar(&s.duration, "duration", 5*time.Second, "length of each closed- and open-loop run")
	fs.IntVar(&s.workers, "workers", 32, "concurrent workers of the closed-loop runs")
	fs.IntVar(&s.streams, "streams", 5000, "concurrent open streams for the stream memory row")
	fs.IntVar(&s.sessions, "sessions", 10000, "distinct users for the session memory row")
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
	rate                float64
	streamRate          float64
	bareLat, gwLat      []time.Duration
	bareFirst, gwFirst  []time.Duration
	bareRSS, gwRSS      int64 // with s.streams open streams; only measured on HTTPS/h2
	sessionRSS          int64 // with s.sessions sessions; only measured on HTTP/1.1
	sessionFill         time.Duration
	measuredStreams     bool
	measuredSessionsRSS bool
}

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
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(must(x509.ParseCertificate(cert.Certificate[0])))

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
	stsURL := "http://" + stsLn.Addr().String()

	fmt.Fprintf(stderr, "bench: %d workers × %v per run; %d streams; %d sessions\n", s.workers, s.duration, s.streams, s.sessions)
	var cols []column
	for _, u := range []struct {
		name, url, ca string
	}{{"HTTP/1.1 upstream", plainURL, ""}, {"HTTPS/h2 upstream", tlsURL, certFile}} {
		fmt.Fprintf(stderr, "bench: %s\n", u.name)
		col, err := measure(ctx, s, dir, u.name, u.url, u.ca, roots, stsURL, fake, up, u.ca != "", u.ca == "")
		if err != nil {
			return fmt.Errorf("%s: %w", u.name, err)
		}
		cols = append(cols, col)
	}
	report(stdout, s, cols)
	return nil
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// measure runs every measurement against the bare proxy and the gateway
// in front of one upstream.
func measure(ctx context.Context, s settings, dir, name, upstreamURL, caBundle string, roots *x509.CertPool,
	stsURL string, fake *fakeaws.Server, up *upstream, streams, sessions bool) (column, error) {
	col := column{name: name}
	bare, err := startBare(upstreamURL, roots)
	if err != nil {
		return col, err
	}
	defer bare.close()
	gw, err := startGateway(ctx, dir, stsURL, fake, upstreamURL, caBundle, s.sessions)
	if err != nil {
		return col, err
	}
	defer gw.close()
	conns := max(s.workers*2, 512)
	bc := newClient(bare.url, conns, nil)
	defer bc.close()
	gc := newClient(gw.url, conns, http.Header{"Authorization": {"Bearer " + gw.key}})
	defer gc.close()
	for _, c := range []*client{bc, gc} { // warm up: session, connections
		if _, err := closedLoop(ctx, c, s.workers, min(s.duration, time.Second), &up.accepts); err != nil {
			return col, fmt.Errorf("warm-up: %w", err)
		}
	}
	if col.bare, err = closedLoop(ctx, bc, s.workers, s.duration, &up.accepts); err != nil {
		return col, fmt.Errorf("bare: %w", err)
	}
	if col.gw, err = closedLoop(ctx, gc, s.workers, s.duration, &up.accepts); err != nil {
		return col, fmt.Errorf("gateway: %w", err)
	}
	col.rate = col.bare.rps / 2
	converse := func(c *client) func(context.Context, time.Time) (time.Duration, error) {
		return func(ctx context.Context, due time.Time) (time.Duration, error) {
			err := c.converse(ctx)
			return time.Since(due), err
		}
	}
	if col.bareLat, err = openLoop(ctx, col.rate, s.duration, converse(bc)); err != nil {
		return col, fmt.Errorf("bare open loop: %w", err)
	}
	if col.gwLat, err = openLoop(ctx, col.rate, s.duration, converse(gc)); err != nil {
		return col, fmt.Errorf("gateway open loop: %w", err)
	}
	// A stream costs more than a Converse: a quarter of the gateway's
	// Converse maximum keeps both proxies out of saturation.
	col.streamRate = col.gw.rps / 4
	if col.bareFirst, err = openLoop(ctx, col.streamRate, s.duration, bc.stream); err != nil {
		return col, fmt.Errorf("bare streams: %w", err)
	}
	if col.gwFirst, err = openLoop(ctx, col.streamRate, s.duration, gc.stream); err != nil {
		return col, fmt.Errorf("gateway streams: %w", err)
	}
	if streams {
		col.measuredStreams = true
		for _, t := range []struct {
			c   *client
			out *int64
		}{{newClient(bare.url, s.streams, nil), &col.bareRSS}, {newClient(gw.url, s.streams, gc.header), &col.gwRSS}} {
			*t.out, err = holdStreams(ctx, t.c, s.streams)
			t.c.close()
			if err != nil {
				return col, fmt.Errorf("open streams: %w", err)
			}
		}
	}
	if sessions {
		col.measuredSessionsRSS = true
		pc := newClient(gw.url, s.workers, http.Header{"Authorization": {"Bearer " + gw.platform}})
		defer pc.close()
		if col.sessionRSS, col.sessionFill, err = fillSessions(ctx, pc, s.sessions, s.workers); err != nil {
			return col, err
		}
	}
	return col, nil
}

// report prints the table.
func report(w io.Writer, s settings, cols []column) {
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
	row("gateway / bare", func(c column) string { return fmt.Sprintf("%.2f", c.gw.rps/c.bare.rps) })
	row("open loop at 50% of bare's max", func(c column) string { return fmt.Sprintf("%.0f req/s", c.rate) })
	row("added latency p50 / p90 / p99", func(c column) string { return added(c.bareLat, c.gwLat, 50, 90, 99) })
	row("  (bare p50 / p99)", func(c column) string { return lat(c.bareLat, 50, 99) })
	row("streams open loop at 25% of gateway's max", func(c column) string { return fmt.Sprintf("%.0f streams/s", c.streamRate) })
	row("stream first event, added p50 / p99", func(c column) string { return added(c.bareFirst, c.gwFirst, 50, 99) })
	row("  (bare p50 / p99)", func(c column) string { return lat(c.bareFirst, 50, 99) })
	row("allocs/req, gateway (bare)", func(c column) string { return fmt.Sprintf("%.0f (%.0f)", c.gw.mallocs, c.bare.mallocs) })
	row("bytes/req, gateway (bare)", func(c column) string { return fmt.Sprintf("%s (%s)", size(c.gw.bytes), size(c.bare.bytes)) })
	row("added allocs/req, added bytes/req", func(c column) string {
		return fmt.Sprintf("%.0f, %s", c.gw.mallocs-c.bare.mallocs, size(c.gw.bytes-c.bare.bytes))
	})
	row("upstream conns per 1,000 req, gateway (bare)", func(c column) string { return fmt.Sprintf("%.2f (%.2f)", c.gw.conns, c.bare.conns) })
	row(fmt.Sprintf("RSS with %d open streams, gateway (bare)", s.streams), func(c column) string {
		if !c.measuredStreams {
			return "-"
		}
		return fmt.Sprintf("+%s (+%s)", size(float64(c.gwRSS)), size(float64(c.bareRSS)))
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
	fmt.Fprintln(w, `
allocs and bytes per request count the whole process (load generator and
upstream included), hence the bare column; "added" is the difference.
RSS rows count the whole process too; the session row includes the
emulated STS's record of each credential it issued.`)
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
	out := ""
	for i, p := range ps {
		if i > 0 {
			out += " / "
		}
		d := percentile(gw, p) - percentile(bare, p)
		sign := "+"
		if d < 0 {
			sign = ""
		}
		out += sign + ms(d)
	}
	return out + " ms"
}

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
