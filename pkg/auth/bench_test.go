package auth

import (
	"path/filepath"
	"testing"
)

// benchAuthenticator returns an Authenticator over a store holding one
// ordinary key and one platform key whose grant is a tenant pattern.
func benchAuthenticator(b *testing.B) (a *Authenticator, plain, platform string) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "keys.json")
	platform, _, err := IssueKey(path, KeyRecord{User: "saas", Team: "ml",
		Platform: &PlatformGrant{TenantPattern: `t-[0-9]+|acme-[a-z]+`, AllowUser: true}}, testNow)
	if err != nil {
		b.Fatal(err)
	}
	plain, _, err = CreateKey(path, "bob", "", "", "", testNow)
	if err != nil {
		b.Fatal(err)
	}
	ks, err := LoadKeyStore(path)
	if err != nil {
		b.Fatal(err)
	}
	return &Authenticator{Keys: NewKeyVerifier(ks)}, plain, platform
}

// BenchmarkAuthenticate: one request's authentication, with the headers
// an SDK sends, for an ordinary key and for a platform key asserting a
// tenant its pattern allows.
func BenchmarkAuthenticate(b *testing.B) {
	a, plain, platform := benchAuthenticator(b)
	sdkHeaders := []string{"Content-Type", "application/json", "Accept", "application/json",
		"User-Agent", "aws-sdk-go-v2/1.36.3 os/linux lang/go#1.24 api/bedrockruntime#1.23.0",
		"Amz-Sdk-Invocation-Id", "6f1c7c6e-4a4e-4b8e-9b3f-1f2e3d4c5b6a", "Amz-Sdk-Request", "attempt=1; max=3"}
	for _, bc := range []struct {
		name    string
		headers []string
	}{
		{"key", append([]string{"Authorization", "Bearer " + plain}, sdkHeaders...)},
		{"platform_pattern", append([]string{"Authorization", "Bearer " + platform, "X-Gateway-Tenant", "t-42"}, sdkHeaders...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := requestWith(b, bc.headers...)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
