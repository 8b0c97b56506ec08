package auth

import (
	"errors"
	"fmt"
	"time"
)

// Config is the auth block of the gateway's configuration. It is decoded
// directly from YAML, so its yaml tags (and those of OIDCConfig,
// OIDCIssuer and TrustedHeaders) are the schema. A zero field takes its
// default; DefaultConfig spells the defaults out.
type Config struct {
	// APIKeysFile is the key store written by `gateway keys`. Required.
	// Whoever loads the config resolves a relative path.
	APIKeysFile string `yaml:"api_keys_file"`
	// KeysReload is how often the key store is checked for changes (the
	// KeyWatcher interval), so a revocation takes effect on every replica
	// within about this long. Default DefaultKeyWatchInterval.
	KeysReload time.Duration `yaml:"keys_reload"`
	// OIDC accepts identity-provider tokens as bearer tokens. Optional:
	// without issuers only gateway keys are accepted, and the rest of the
	// block is not used (nor validated).
	OIDC OIDCConfig `yaml:"oidc"`
	// TrustedHeaders names the headers platform keys assert the tenant and
	// user they act for with.
	TrustedHeaders TrustedHeaders `yaml:"trusted_headers"`
}

// DefaultConfig returns the configuration a zero Config amounts to, with
// every default filled in, for showing (or decoding over) the defaults.
// APIKeysFile has no default.
func DefaultConfig() Config {
	return Config{
		KeysReload: DefaultKeyWatchInterval,
		OIDC: OIDCConfig{
			Leeway:              DefaultOIDCLeeway,
			JWKSRefreshInterval: DefaultJWKSRefreshInterval,
		},
		TrustedHeaders: TrustedHeaders{
			TenantHeader: DefaultTenantHeader,
			UserHeader:   DefaultUserHeader,
			MaxLen:       DefaultTrustedHeaderMaxLen,
		},
	}
}

// Validate reports every problem in c at once, each message starting with
// the YAML path of its field relative to the auth block: api_keys_file,
// keys_reload, oidc.… (see OIDCConfig.Validate) and trusted_headers.…
// (see TrustedHeaders.Validate). The result joins the problems in one flat
// list (errors.Join of single errors), so a caller can prefix each with
// the block's own path. It has no side effects.
func (c Config) Validate() error {
	var errs []error
	if c.APIKeysFile == "" {
		errs = append(errs, errors.New("api_keys_file: required"))
	}
	if c.KeysReload < 0 {
		errs = append(errs, fmt.Errorf("keys_reload: must not be negative (0 means %v), got %v", DefaultKeyWatchInterval, c.KeysReload))
	}
	// OIDCConfig.Validate requires an issuer, and its messages already
	// start with "oidc.".
	if len(c.OIDC.Issuers) > 0 {
		errs = append(errs, flatten("", c.OIDC.Validate())...)
	}
	errs = append(errs, flatten("trusted_headers.", c.TrustedHeaders.Validate())...)
	return errors.Join(errs...)
}

// flatten returns the problems err joins (the errors.Join result of a
// Validate), each prefixed with prefix. It unwraps one level only: a
// single problem may itself wrap several errors.
func flatten(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	var problems []error
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		problems = joined.Unwrap()
	} else {
		problems = []error{err}
	}
	out := make([]error, len(problems))
	for i, e := range problems {
		out[i] = fmt.Errorf("%s%w", prefix, e)
	}
	return out
}
