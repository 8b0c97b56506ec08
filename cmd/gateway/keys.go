package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// cmdKeys manages gateway API keys in the key store the config names.
func cmdKeys(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: gateway keys create -config FILE --user U [--team T] [--tenant X] [--cost-center C]")
	}
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (required)")
	user := fs.String("user", "", "user ID the key authenticates as (required), e.g. alice@acme.org")
	team := fs.String("team", "", "team, sent as a session tag")
	tenant := fs.String("tenant", "", "tenant, sent as a session tag")
	costCenter := fs.String("cost-center", "", "cost center, sent as a session tag")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *configPath == "" || *user == "" {
		return errors.New("keys create: -config and --user are required")
	}
	cfg, err := loadConfig(*configPath, getenv)
	if err != nil {
		return err
	}
	// Refuse a key whose identity could never become an STS session, now
	// rather than at the user's first call.
	id := auth.Identity{User: *user, Team: *team, Tenant: *tenant, CostCenter: *costCenter, Method: "api-key"}
	if err := checkIdentity(cfg, id); err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	key, rec, err := auth.CreateKey(cfg.path(cfg.Auth.APIKeysFile), *user, *team, *tenant, *costCenter, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", key)
	fmt.Fprintf(stderr, "created key %s for user %q; it is shown once and stored only as a hash.\n"+
		"Use it as AWS_BEARER_TOKEN_BEDROCK, or send it as \"Authorization: Bearer <key>\" or \"x-api-key\".\n", rec.ID, rec.User)
	return nil
}
