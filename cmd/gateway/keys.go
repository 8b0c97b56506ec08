package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bedrock-gateway/gateway/internal/gateway"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

const keysUsage = `usage:
  gateway keys create STORE --user U [--team T] [--tenant X] [--cost-center C]
                      [--expires DURATION|RFC3339] [--platform-tenants A,B]
                      [--platform-tenant-pattern RE] [--platform-allow-user]
  gateway keys list   STORE
  gateway keys revoke STORE --id ID
  gateway keys rotate STORE --id ID [--grace DURATION]
  gateway keys update STORE --id ID [--team T] [--tenant X] [--cost-center C]
                      [--expires DURATION|RFC3339|never]
STORE is -config FILE (the config's auth.api_keys_file; create and update refuse
an identity its session rules cannot make an STS session of) or -keys FILE (the
key store itself: no config needed, no such check).
DURATION is a Go duration ("720h") or a number of days ("90d").`

// cmdKeys manages gateway API keys in a key store: the one the config
// names, or one given by path. A running gateway picks up every change
// within its reload interval.
func cmdKeys(args []string, p process) error {
	return keysCommand(args, p, time.Now)
}

// keysCommand is cmdKeys with an injected clock.
func keysCommand(args []string, p process, now func() time.Time) error {
	if len(args) == 0 {
		fmt.Fprintln(p.stderr, keysUsage)
		return errors.New("keys: missing subcommand")
	}
	k := &keysCmd{process: p, now: now}
	switch args[0] {
	case "create":
		return k.create(args[1:])
	case "list":
		return k.list(args[1:])
	case "revoke":
		return k.revoke(args[1:])
	case "rotate":
		return k.rotate(args[1:])
	case "update":
		return k.update(args[1:])
	default:
		fmt.Fprintln(p.stderr, keysUsage)
		return fmt.Errorf("keys: unknown subcommand %q", args[0])
	}
}

type keysCmd struct {
	process
	now func() time.Time
}

// storeFlags are the flags that name the key store: one of them is
// required.
type storeFlags struct{ config, keys string }

// flags returns a flag set for subcommand name with -config and -keys
// already defined.
func (k *keysCmd) flags(name string) (*flag.FlagSet, *storeFlags) {
	fs := flag.NewFlagSet("keys "+name, flag.ContinueOnError)
	fs.SetOutput(k.stderr)
	var sf storeFlags
	fs.StringVar(&sf.config, "config", "", "config file: its auth.api_keys_file is the key store, and identities are checked against its session rules")
	fs.StringVar(&sf.keys, "keys", "", "key store file, instead of -config (no config is read, identities are not checked)")
	return fs, &sf
}

// keyStore is the key store a command works on.
type keyStore struct {
	path string
	// cfg, with -config, is the config whose session rules identities
	// must satisfy; nil with -keys.
	cfg *gateway.Config
}

// checkIdentity refuses an identity that could never become an STS
// session under the config's rules; with -keys there are none to check.
func (s keyStore) checkIdentity(id auth.Identity) error {
	if s.cfg == nil {
		return nil
	}
	return s.cfg.CheckIdentity(id)
}

// parse parses args, refuses positional arguments and anything but one of
// -config and -keys, and finds the key store.
func (k *keysCmd) parse(fs *flag.FlagSet, sf *storeFlags, args []string) (keyStore, error) {
	if err := fs.Parse(args); err != nil {
		return keyStore{}, err
	}
	if fs.NArg() > 0 {
		return keyStore{}, fmt.Errorf("%s: unexpected arguments: %q", fs.Name(), fs.Args())
	}
	switch {
	case sf.config != "" && sf.keys != "":
		return keyStore{}, fmt.Errorf("%s: give -config or -keys, not both", fs.Name())
	case sf.keys != "":
		return keyStore{path: sf.keys}, nil
	case sf.config == "":
		return keyStore{}, fmt.Errorf("%s: -config or -keys is required", fs.Name())
	}
	cfg, err := gateway.Load(sf.config, k.getenv)
	if err != nil {
		return keyStore{}, err
	}
	return keyStore{path: cfg.Path(cfg.Auth.APIKeysFile), cfg: cfg}, nil
}

func (k *keysCmd) create(args []string) error {
	fs, sf := k.flags("create")
	user := fs.String("user", "", "user ID the key authenticates as (required), e.g. alice@acme.org")
	team := fs.String("team", "", "team, sent as a session tag")
	tenant := fs.String("tenant", "", "tenant, sent as a session tag")
	costCenter := fs.String("cost-center", "", "cost center, sent as a session tag")
	expires := fs.String("expires", "", "when the key stops working: a duration from now (720h, 90d) or an RFC 3339 time")
	pTenants := fs.String("platform-tenants", "", "make this a platform key that may assert these tenants (comma-separated)")
	pPattern := fs.String("platform-tenant-pattern", "", "make this a platform key that may assert tenants matching this RE2 pattern (whole ID)")
	pUser := fs.Bool("platform-allow-user", false, "let the platform key also assert an end user")
	store, err := k.parse(fs, sf, args)
	if err != nil {
		return err
	}
	if *user == "" {
		return errors.New("keys create: --user is required")
	}
	now := k.now()
	rec := auth.KeyRecord{User: *user, Team: *team, Tenant: *tenant, CostCenter: *costCenter}
	if rec.ExpiresAt, err = auth.ParseExpiry(*expires, now, false); err != nil {
		return fmt.Errorf("keys create: --expires: %w", err)
	}
	if *pTenants != "" || *pPattern != "" || *pUser {
		rec.Platform = &auth.PlatformGrant{TenantPattern: *pPattern, AllowUser: *pUser}
		if *pTenants != "" {
			rec.Platform.Tenants = strings.Split(*pTenants, ",")
		}
	}
	// Refuse a key whose identity could never become an STS session, now
	// rather than at the user's first call.
	if err := store.checkIdentity(rec.Identity()); err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	key, rec, err := auth.IssueKey(store.path, rec, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(k.stdout, "%s\n", key)
	fmt.Fprintf(k.stderr, "created key %s for user %q; it is shown once and stored only as a hash.\n"+
		"Use it as AWS_BEARER_TOKEN_BEDROCK, or send it as \"Authorization: Bearer <key>\" or \"x-api-key\".\n", rec.ID, rec.User)
	return nil
}

func (k *keysCmd) list(args []string) error {
	fs, sf := k.flags("list")
	store, err := k.parse(fs, sf, args)
	if err != nil {
		return err
	}
	ks, err := auth.LoadKeyStore(store.path)
	if err != nil {
		return err
	}
	now := k.now()
	tw := tabwriter.NewWriter(k.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tTEAM\tTENANT\tCOST CENTER\tCREATED\tEXPIRES\tREVOKED\tSTATUS\tPLATFORM")
	// Only non-secret fields: never the hash.
	for _, r := range ks.Records() {
		status := "active"
		switch {
		case r.Revoked():
			status = "revoked"
		case r.Expired(now):
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.ID, cell(r.User), cell(r.Team), cell(r.Tenant), cell(r.CostCenter),
			r.CreatedAt.UTC().Format(time.RFC3339), timeCell(r.ExpiresAt), timeCell(r.RevokedAt),
			status, platformCell(r.Platform))
	}
	return tw.Flush()
}

func (k *keysCmd) revoke(args []string) error {
	fs, sf := k.flags("revoke")
	id := fs.String("id", "", "id of the key to revoke (required)")
	store, err := k.parse(fs, sf, args)
	if err != nil {
		return err
	}
	if *id == "" {
		return errors.New("keys revoke: --id is required")
	}
	if err := auth.RevokeKey(store.path, *id, k.now()); err != nil {
		return err
	}
	fmt.Fprintf(k.stderr, "revoked key %s; running gateways refuse it from their next reload.\n", *id)
	return nil
}

func (k *keysCmd) rotate(args []string) error {
	fs, sf := k.flags("rotate")
	id := fs.String("id", "", "id of the key to replace (required)")
	grace := fs.String("grace", "", "keep the old key working this long (720h, 1d); default: revoke it now")
	store, err := k.parse(fs, sf, args)
	if err != nil {
		return err
	}
	if *id == "" {
		return errors.New("keys rotate: --id is required")
	}
	var g time.Duration
	if *grace != "" {
		if g, err = auth.ParseDuration(*grace); err != nil || g <= 0 {
			return fmt.Errorf("keys rotate: --grace: want a positive duration, got %q", *grace)
		}
	}
	key, rec, err := auth.RotateKey(store.path, *id, k.now(), g)
	if err != nil {
		return err
	}
	fmt.Fprintf(k.stdout, "%s\n", key)
	old := "it is revoked"
	if g > 0 {
		old = "it stops working at " + rec.CreatedAt.Add(g).Format(time.RFC3339) + " or at its own expiry, if sooner"
	}
	fmt.Fprintf(k.stderr, "replaced key %s with key %s for user %q; the new key is shown once. The old key: %s.\n",
		*id, rec.ID, rec.User, old)
	return nil
}

func (k *keysCmd) update(args []string) error {
	fs, sf := k.flags("update")
	id := fs.String("id", "", "id of the key to change (required)")
	var team, tenant, costCenter, expires optString
	fs.Var(&team, "team", "new team (\"\" removes it)")
	fs.Var(&tenant, "tenant", "new tenant (\"\" removes it)")
	fs.Var(&costCenter, "cost-center", "new cost center (\"\" removes it)")
	fs.Var(&expires, "expires", "new expiry: a duration from now, an RFC 3339 time, or never")
	store, err := k.parse(fs, sf, args)
	if err != nil {
		return err
	}
	if *id == "" {
		return errors.New("keys update: --id is required")
	}
	if !team.set && !tenant.set && !costCenter.set && !expires.set {
		return errors.New("keys update: nothing to change; give --team, --tenant, --cost-center or --expires")
	}
	var expiry *time.Time
	if expires.set {
		if expiry, err = auth.ParseExpiry(expires.v, k.now(), true); err != nil {
			return fmt.Errorf("keys update: --expires: %w", err)
		}
	}
	err = auth.UpdateKey(store.path, *id, func(r *auth.KeyRecord) error {
		team.apply(&r.Team)
		tenant.apply(&r.Tenant)
		costCenter.apply(&r.CostCenter)
		if expires.set {
			r.ExpiresAt = expiry
		}
		// The changed key must still be expressible as an STS session.
		return store.checkIdentity(r.Identity())
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(k.stderr, "updated key %s; its next request after the gateway reloads gets a session with the new tags.\n", *id)
	return nil
}

// optString is a string flag that remembers whether it was given, so that
// --team "" (remove the team) differs from no --team (keep it).
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string     { return o.v }
func (o *optString) Set(s string) error { o.v, o.set = s, true; return nil }
func (o *optString) apply(dst *string) {
	if o.set {
		*dst = o.v
	}
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	// Keep the table a table whatever a field holds.
	return strconv.Quote(s)[1 : len(strconv.Quote(s))-1]
}

func timeCell(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func platformCell(g *auth.PlatformGrant) string {
	if g == nil {
		return "-"
	}
	var parts []string
	if len(g.Tenants) > 0 {
		parts = append(parts, "tenants="+cell(strings.Join(g.Tenants, ",")))
	}
	if g.TenantPattern != "" {
		parts = append(parts, "pattern="+cell(g.TenantPattern))
	}
	if g.AllowUser {
		parts = append(parts, "user")
	}
	return strings.Join(parts, " ")
}
