package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/bedrock-gateway/gateway/internal/devcert"
	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/internal/gateway"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/server"
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
// no AWS account, no credentials. It is the first thing a newcomer runs,
// and it runs the same gateway as `serve`, built by the same constructor.
func cmdDev(ctx context.Context, args []string, p process) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(p.stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "plain-HTTP data-plane address (curl, boto3)")
	tlsListen := fs.String("tls-listen", "127.0.0.1:8443", "HTTPS data-plane address (the Go SDK sends bearer tokens only over HTTPS); empty to disable")
	adminListen := fs.String("admin-listen", "127.0.0.1:9090", "admin address (/metrics, /healthz, /readyz); off to disable")
	dataDir := fs.String("data", "", "directory for the demo key store and certificate (default: a new temporary directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	dir := *dataDir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	} else {
		d, err := os.MkdirTemp("", "bedrock-gateway-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	logger := slog.New(slog.NewTextHandler(p.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// The emulated AWS: STS and Bedrock Runtime on one loopback listener.
	fake := fakeaws.New(fakeaws.Options{AccountID: devAccount, Region: devRegion, Roles: []string{devInvokeRole}})
	fakeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fakeURL := "http://" + fakeLn.Addr().String()
	fakeCtx, stopFake := context.WithCancel(context.WithoutCancel(ctx))
	fakeDone := make(chan error, 1)
	go func() {
		fakeDone <- server.Serve(fakeCtx, fakeLn, fake.Handler(), server.Config{}, server.Options{Logger: logger})
	}()
	defer func() {
		stopFake()
		<-fakeDone
	}()

	// Demo keys.
	keysFile := filepath.Join(dir, "keys.json")
	var keys []string
	for _, u := range devUsers {
		k, _, err := auth.CreateKey(keysFile, u.user, u.team, u.tenant, u.costCenter, time.Now())
		if err != nil {
			return fmt.Errorf("create demo key: %w", err)
		}
		keys = append(keys, k)
	}

	cfg := gateway.Default()
	cfg.Listen, cfg.Admin.Listen, cfg.Server.DrainDelay = *listen, *adminListen, 0
	cfg.AWS = gateway.AWSConfig{Region: devRegion, STSEndpoint: fakeURL, BedrockRuntimeEndpoint: fakeURL}
	cfg.Session.RoleARN, cfg.Auth.APIKeysFile = devInvokeRole, keysFile
	cfg.Usage.Ledger, cfg.Log.Format = filepath.Join(dir, "usage.jsonl"), "text"
	cfg.Async.OwnershipFile = filepath.Join(dir, "async-owners.jsonl")
	root := fake.RootCredentials(devGatewayRole)
	g, err := gateway.New(ctx, &cfg, gateway.Options{Credentials: credentials.StaticCredentialsProvider{Value: root},
		Logger: logger, Stdout: p.stdout, Version: version})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer g.Close(closeTimeout)
	mux := http.NewServeMux()
	mux.Handle("GET /_dev/billing", fake.BillingHandler())
	mux.Handle("GET /_dev/cur", fake.CURHandler())
	mux.Handle("/", g.Handler())

	// The Go SDK sends bearer tokens only over HTTPS.
	var certFile string
	var tlsCfg *tls.Config
	if *tlsListen != "" {
		cf, kf, err := devcert.Write(dir, time.Now())
		if err != nil {
			return err
		}
		cert, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			return err
		}
		certFile, tlsCfg = cf, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ls := gateway.Listeners{Handler: mux}
	ln, err := p.listen("data", cfg.Listen)
	if err != nil {
		return err
	}
	ls.Data = append(ls.Data, ln)
	var tlsAddr net.Addr
	if tlsCfg != nil {
		tln, err := p.listen("data-tls", *tlsListen)
		if err != nil {
			ln.Close()
			return err
		}
		tlsAddr = tln.Addr()
		ls.Data = append(ls.Data, withTLS(tln, tlsCfg))
	}
	if cfg.Admin.Listen != gateway.AdminOff {
		if ls.Admin, err = p.listen("admin", cfg.Admin.Listen); err != nil {
			for _, l := range ls.Data {
				l.Close()
			}
			return err
		}
	}
	printDevBanner(p.stdout, ln.Addr().String(), tlsAddr, ls.Admin, certFile, cfg.Usage.Ledger, keys[0], keys[1])
	return g.Serve(ctx, ls)
}

func printDevBanner(w io.Writer, addr string, tlsAddr net.Addr, admin net.Listener, certFile, ledger, aliceKey, bobKey string) {
	base := "http://" + addr
	fmt.Fprintf(w, `
bedrock-gateway dev: AWS IS EMULATED IN-PROCESS (no AWS account is used, nothing is billed)

  gateway (HTTP)   %s
`, base)
	if tlsAddr != nil {
		fmt.Fprintf(w, "  gateway (HTTPS)  https://%s   (self-signed; CA bundle: %s)\n", tlsAddr, certFile)
	}
	if admin != nil {
		fmt.Fprintf(w, "  admin            http://%s   (/metrics, /healthz, /readyz)\n", admin.Addr())
	}
	fmt.Fprintf(w, `  invocation role  %s
  billing rows     %s/_dev/billing   (what CUR 2.0 would show; add ?format=table)
  CUR 2.0 export   %s/_dev/cur       (the emulated bill as AWS writes it: Parquet, or ?format=csv)
  usage ledger     %s   (one JSON line per request, written as it happens)

demo API keys (shown once, valid until this process stops):
  alice@acme.org  team=data-science cost-center=12345  %s
  bob@acme.org    team=platform     cost-center=67890  %s

try it:
  curl -s %s/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/converse \
    -H "Authorization: Bearer %s" -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":[{"text":"Hello there"}]}]}'
  curl -s '%s/_dev/billing?format=table'

reconcile the emulated bill with the ledger (exit 0: every session's usage billed as recorded):
  curl -s %s/_dev/cur -o bill.parquet
  go run ./cmd/gateway reconcile --cur bill.parquet --ledger %s --bill-lag 0

point an AWS SDK at it (boto3, AWS CLI, Go, JavaScript; boto3 and the CLI read AWS_DEFAULT_REGION, not AWS_REGION):
`, devInvokeRole, base, base, ledger, aliceKey, bobKey, base, aliceKey, base, base, ledger)
	if tlsAddr != nil {
		fmt.Fprintf(w, "  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://%s\n  export AWS_CA_BUNDLE=%s\n", tlsAddr, certFile)
	} else {
		fmt.Fprintf(w, "  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=%s\n", base)
	}
	fmt.Fprintf(w, `  export AWS_BEARER_TOKEN_BEDROCK=%s
  export AWS_REGION=%s AWS_DEFAULT_REGION=%s
  aws bedrock-runtime converse --model-id anthropic.claude-3-haiku-20240307-v1:0 \
    --messages '[{"role":"user","content":[{"text":"Hello"}]}]'

press Ctrl-C to stop.
`, bobKey, devRegion, devRegion)
}
