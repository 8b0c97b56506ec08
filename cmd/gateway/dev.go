package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// Identities of the emulated AWS account `gateway dev` runs against.
const (
	devAccount     = "123456789012"
	devRegion      = "us-east-1"
	devGatewayRole = "arn:aws:iam::" + devAccount + ":role/BedrockGatewayRole"
	devInvokeRole  = "arn:aws:iam::" + devAccount + ":role/BedrockInvocationRole"
)

// devUser is a demo caller `gateway dev` creates a key for.
type devUser struct{ user, team, tenant, costCenter string }

var devUsers = []devUser{
	{"alice@acme.org", "data-science", "", "12345"},
	{"bob@acme.org", "platform", "", "67890"},
}

// cmdDev runs the gateway against AWS emulated in-process (internal/fakeaws):
// no AWS account, no credentials. It is the first thing a newcomer runs.
func cmdDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "plain-HTTP data-plane address (curl, boto3)")
	tlsListen := fs.String("tls-listen", "127.0.0.1:8443", "HTTPS data-plane address (Go and JS SDKs need HTTPS for bearer tokens); empty to disable")
	dataDir := fs.String("data", "", "directory for the demo key store and certificate (default: a new temporary directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	dir := *dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "bedrock-gateway-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// The emulated AWS: STS and Bedrock Runtime on one loopback listener.
	fake := fakeaws.New(fakeaws.Options{AccountID: devAccount, Region: devRegion, Roles: []string{devInvokeRole}})
	fakeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fakeURL := "http://" + fakeLn.Addr().String()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveUntilDone(gctx, fakeLn, fake.Handler(), logger) })
	// Whatever fails below, stop the emulator before returning.
	stopFake := func(err error) error {
		fakeLn.Close()
		_ = g.Wait()
		return err
	}

	// Demo keys.
	keysFile := filepath.Join(dir, "keys.json")
	type demoKey struct {
		devUser
		key string
	}
	var keys []demoKey
	for _, u := range devUsers {
		k, _, err := auth.CreateKey(keysFile, u.user, u.team, u.tenant, u.costCenter, time.Now())
		if err != nil {
			return stopFake(fmt.Errorf("create demo key: %w", err))
		}
		keys = append(keys, demoKey{u, k})
	}

	cfg := &Config{
		Listen:  *listen,
		AWS:     AWSConfig{Region: devRegion, STSEndpoint: fakeURL, BedrockRuntimeEndpoint: fakeURL},
		Session: SessionConfig{RoleARN: devInvokeRole},
		Auth:    AuthConfig{APIKeysFile: keysFile},
		Usage:   UsageConfig{Ledger: filepath.Join(dir, "usage.jsonl")},
		Log:     LogConfig{Format: "text"},
	}
	cfg.applyDefaults(func(string) string { return "" })
	if err := cfg.Validate(); err != nil {
		return stopFake(fmt.Errorf("dev config: %w", err))
	}
	root := fake.RootCredentials(devGatewayRole)
	h, closeGateway, err := newGateway(ctx, cfg, credentials.StaticCredentialsProvider{Value: root}, logger, prometheus.NewRegistry(), stdout)
	if err != nil {
		return stopFake(err)
	}
	defer closeGateway()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_dev/billing", func(w http.ResponseWriter, r *http.Request) { writeBilling(w, r, fake) })
	mux.Handle("/", h)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return stopFake(err)
	}
	var tlsLn net.Listener
	var certFile string
	if *tlsListen != "" {
		cf, kf, err := writeSelfSignedCert(dir, time.Now())
		if err != nil {
			ln.Close()
			return stopFake(err)
		}
		cert, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			ln.Close()
			return stopFake(err)
		}
		certFile = cf
		tlsLn, err = listenOn(*tlsListen, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			ln.Close()
			return stopFake(err)
		}
	}

	printDevBanner(stdout, ln.Addr().String(), tlsLn, certFile, cfg.Usage.Ledger, keys[0].key, keys[1].key)

	g.Go(func() error { return serveUntilDone(gctx, ln, mux, logger) })
	if tlsLn != nil {
		g.Go(func() error { return serveUntilDone(gctx, tlsLn, mux, logger) })
	}
	err = g.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func printDevBanner(w io.Writer, addr string, tlsLn net.Listener, certFile, ledger, aliceKey, bobKey string) {
	base := "http://" + addr
	fmt.Fprintf(w, `
bedrock-gateway dev: AWS IS EMULATED IN-PROCESS (no AWS account is used, nothing is billed)

  gateway (HTTP)   %s
`, base)
	if tlsLn != nil {
		fmt.Fprintf(w, "  gateway (HTTPS)  https://%s   (self-signed; CA bundle: %s)\n", tlsLn.Addr(), certFile)
	}
	fmt.Fprintf(w, `  invocation role  %s
  billing rows     %s/_dev/billing   (what CUR 2.0 would show; add ?format=table)
  usage ledger     %s   (one JSON line per request, written as it happens)

demo API keys (shown once, valid until this process stops):
  alice@acme.org  team=data-science cost-center=12345  %s
  bob@acme.org    team=platform     cost-center=67890  %s

try it:
  curl -s %s/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/converse \
    -H "Authorization: Bearer %s" -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":[{"text":"Hello there"}]}]}'
  curl -s '%s/_dev/billing?format=table'

point an AWS SDK at it (boto3, AWS CLI, Go, JavaScript):
`, devInvokeRole, base, ledger, aliceKey, bobKey, base, aliceKey, base)
	if tlsLn != nil {
		fmt.Fprintf(w, "  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://%s\n  export AWS_CA_BUNDLE=%s\n", tlsLn.Addr(), certFile)
	} else {
		fmt.Fprintf(w, "  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=%s\n", base)
	}
	fmt.Fprintf(w, `  export AWS_BEARER_TOKEN_BEDROCK=%s
  export AWS_REGION=%s
  aws bedrock-runtime converse --model-id anthropic.claude-3-haiku-20240307-v1:0 \
    --messages '[{"role":"user","content":[{"text":"Hello"}]}]'

press Ctrl-C to stop.
`, bobKey, devRegion)
}

// writeBilling serves the emulated CUR 2.0 rows: JSON by default, or an
// aligned table with ?format=table.
func writeBilling(w http.ResponseWriter, r *http.Request, fake *fakeaws.Server) {
	rows := fake.BillingRows()
	if r.URL.Query().Get("format") == "table" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "line_item_iam_principal\tline_item_usage_type\tusage_amount\ttags")
		for _, row := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", row.IAMPrincipal, row.UsageType, row.UsageAmount, formatTags(row.Tags))
		}
		tw.Flush()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(struct {
		Note string               `json:"note"`
		Rows []fakeaws.BillingRow `json:"rows"`
	}{"emulated: what CUR 2.0 would show per IAM principal", rows})
}

func formatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%q:%q", k, tags[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}
