// Command gateway is an identity-aware gateway for Amazon Bedrock Runtime:
// it authenticates each caller, assumes an AWS role per caller with the
// caller's identity as the session name and team / tenant / cost center as
// session tags, and forwards the caller's Bedrock calls signed with that
// session, so AWS billing (CUR 2.0) shows who spent what.
//
// Usage:
//
//	gateway serve -config FILE [-listen ADDR] [-admin-listen ADDR]
//	gateway keys create|list|revoke|rotate|update -config FILE|-keys FILE ...
//	gateway dev [-listen ADDR] [-tls-listen ADDR] [-admin-listen ADDR] [-data DIR]
//	gateway report --ledger FILE... [--group-by user,team,...]
//	gateway reconcile --cur FILE... --ledger FILE...
//	gateway prices [--config FILE] [--region R] [--model PATTERN]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/bedrock-gateway/gateway/internal/gateway"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/reconcile"
	"github.com/bedrock-gateway/gateway/pkg/report"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// SIGTERM (or Ctrl-C) starts a graceful shutdown; a second one kills
	// the process at once, as the signal's default action. SIGHUP (config
	// reload) is handled by `serve` itself.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], process{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	var code exitCode
	if errors.As(err, &code) {
		os.Exit(int(code)) // the command has said why
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gateway:", err)
		}
		os.Exit(2)
	}
}

const usageText = `usage:
  gateway serve -config FILE [-listen ADDR] [-admin-listen ADDR]
                (SIGHUP reloads the config; SIGTERM drains, then stops)
  gateway keys create|list|revoke|rotate|update -config FILE|-keys FILE ...
                (API keys; "gateway keys" shows each subcommand's flags)
  gateway dev [-listen ADDR] [-tls-listen ADDR] [-admin-listen ADDR] [-data DIR]   (AWS emulated in-process)
  gateway report --ledger FILE... [--group-by user,team,tenant,cost_center,model,day,operation]
                [--since DATE] [--until DATE] [--format table|csv|json]   (spend from the usage ledger)
  gateway reconcile --cur FILE... --ledger FILE... [--format table|json]
                (the CUR 2.0 bill against the ledger: exit 0 reconciled, 1 findings, 2 bad input)
  gateway prices [--config FILE] [--region R] [--model PATTERN] [--format table|json]
                (the price catalogue requests are costed with)
  gateway version`

// exitCode is the exit status of a command that reports its own outcome
// (report, reconcile): main exits with it and prints nothing more.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// exit turns a command's exit status into run's result.
func exit(code int) error {
	if code == 0 {
		return nil
	}
	return exitCode(code)
}

// process is what run takes from the process it runs in. main sets the
// environment and output streams and leaves the rest nil; tests set the
// rest too.
type process struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	// awsCredentials is the gateway's own AWS identity for calling STS;
	// nil means the SDK's standard credential chain.
	awsCredentials aws.CredentialsProvider
	// listening, if set, is told each listener's address once it accepts
	// connections: "data", "data-tls" (dev) or "admin".
	listening func(name string, addr net.Addr)
}

func (p process) listen(name, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	if p.listening != nil {
		p.listening(name, ln.Addr())
	}
	return ln, nil
}

// run is the whole program; main only supplies the process's context,
// arguments and process, so tests can call it directly.
func run(ctx context.Context, args []string, p process) error {
	if len(args) == 0 {
		fmt.Fprintln(p.stderr, usageText)
		return errors.New("missing command")
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], p)
	case "keys":
		return cmdKeys(args[1:], p)
	case "dev":
		return cmdDev(ctx, args[1:], p)
	case "report":
		return exit(report.Run(args[1:], p.stdout, p.stderr))
	case "reconcile":
		return exit(reconcile.Run(args[1:], p.stdout, p.stderr))
	case "prices":
		return exit(pricing.Run(args[1:], p.stdout, p.stderr, func(file string) (pricing.Config, error) {
			cfg, err := gateway.Load(file, p.getenv)
			if err != nil {
				return pricing.Config{}, err
			}
			return cfg.Pricing, nil
		}))
	case "version":
		fmt.Fprintln(p.stdout, version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(p.stdout, usageText)
		return nil
	default:
		fmt.Fprintln(p.stderr, usageText)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
