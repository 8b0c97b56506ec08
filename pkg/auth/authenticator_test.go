package auth

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAuthenticatorDispatch(t *testing.T) {
	path, platformKey, platformRec, bob := lifecycleStore2(t)
	ks, err := LoadKeyStore(path)
	ksMust(t, err)
	bobRec := ks.Records()[1]
	oidc, err := NewOIDCVerifier(context.Background(), OIDCConfig{Issuers: []OIDCIssuer{{Issuer: "https://idp.example.com", Audiences: []string{"gw"}}}})
	ksMust(t, err)
	// A JWT-shaped token ({"alg":"RS256"}.{"iss":"x"}.sig) from an issuer
	// that is not configured.
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"

	tests := []struct {
		name    string
		a       *Authenticator
		headers []string
		want    Identity
		wantErr error
		errText string // substring of the error, telling which path refused
	}{
		{name: "api key", a: &Authenticator{Keys: NewKeyVerifier(ks)}, headers: []string{"X-Api-Key", bob},
			want: Identity{User: "bob", Method: MethodAPIKey, KeyID: bobRec.ID}},
		{name: "platform key asserting a tenant", a: &Authenticator{Keys: NewKeyVerifier(ks)},
			headers: []string{"Authorization", "Bearer " + platformKey, "X-Gateway-Tenant", "t1"},
			want: Identity{User: "alice@acme.org/t1", Label: "tenant-t1", Team: "ml", Tenant: "t1", CostCenter: "cc-42",
				Method: MethodTrustedHeader, KeyID: platformRec.ID, Platform: "alice@acme.org"}},
		{name: "configured header names", a: &Authenticator{Keys: NewKeyVerifier(ks), Headers: TrustedHeaders{TenantHeader: "X-Org"}},
			headers: []string{"X-Api-Key", platformKey, "X-Org", "t1"},
			want: Identity{User: "alice@acme.org/t1", Label: "tenant-t1", Team: "ml", Tenant: "t1", CostCenter: "cc-42",
				Method: MethodTrustedHeader, KeyID: platformRec.ID, Platform: "alice@acme.org"}},
		{name: "ordinary key asserting a tenant", a: &Authenticator{Keys: NewKeyVerifier(ks)},
			headers: []string{"X-Api-Key", bob, "X-Gateway-Tenant", "t1"}, wantErr: ErrBadRequest},
		{name: "no credentials", a: &Authenticator{Keys: NewKeyVerifier(ks)}, wantErr: ErrNoCredentials},
		{name: "token without OIDC", a: &Authenticator{Keys: NewKeyVerifier(ks)}, headers: []string{"Authorization", "Bearer " + jwt},
			wantErr: ErrInvalidCredentials, errText: "neither a gateway key"},
		{name: "token goes to OIDC", a: &Authenticator{Keys: NewKeyVerifier(ks), OIDC: oidc}, headers: []string{"Authorization", "Bearer " + jwt},
			wantErr: ErrInvalidCredentials, errText: "oidc: issuer not trusted"},
		{name: "opaque credential", a: &Authenticator{Keys: NewKeyVerifier(ks), OIDC: oidc}, headers: []string{"X-Api-Key", "opaque"},
			wantErr: ErrInvalidCredentials, errText: "neither a gateway key"},
		{name: "invalid header configuration fails closed", a: &Authenticator{Keys: NewKeyVerifier(ks), Headers: TrustedHeaders{MaxLen: -1}},
			headers: []string{"X-Api-Key", bob}, errText: "trusted headers: max_len"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.a.Authenticate(requestWith(t, tt.headers...))
			if tt.wantErr == nil && tt.errText == "" {
				if err != nil {
					t.Fatalf("Authenticate() error = %v, want nil", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Authenticate() identity (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("Authenticate() = %+v, want an error", got)
			}
			for _, sentinel := range []error{ErrNoCredentials, ErrInvalidCredentials, ErrBadRequest, ErrForbidden} {
				if is, want := errors.Is(err, sentinel), sentinel == tt.wantErr; is != want {
					t.Errorf("errors.Is(Authenticate() error %q, %v) = %v, want %v", err, sentinel, is, want)
				}
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("Authenticate() error = %q, want it to contain %q", err, tt.errText)
			}
			if got != (Identity{}) {
				t.Errorf("Authenticate() identity = %+v with an error, want the zero Identity", got)
			}
		})
	}
}
