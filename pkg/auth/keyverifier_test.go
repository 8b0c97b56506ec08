package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func requestWith(t testing.TB, kv ...string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/model/m/converse", nil)
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

// testStore creates a key store with two keys and returns its
// KeyVerifier and the keys.
func testStore(t testing.TB) (a *KeyVerifier, alice, bob string, aliceRec KeyRecord) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.json")
	alice, aliceRec, err := CreateKey(path, "alice@acme.org", "ml", "acme", "cc-42", testNow)
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err = CreateKey(path, "bob", "", "", "", testNow)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := LoadKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return NewKeyVerifier(ks), alice, bob, aliceRec
}

const sigV4 = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, " +
	"SignedHeaders=host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"

func TestAuthenticateHeaders(t *testing.T) {
	a, alice, bob, rec := testStore(t)
	wantAlice := Identity{
		User: "alice@acme.org", Team: "ml", Tenant: "acme", CostCenter: "cc-42",
		Method: "api-key", KeyID: rec.ID,
	}
	tests := []struct {
		name    string
		headers []string
		want    Identity
		wantErr error
	}{
		{"no headers", nil, Identity{}, ErrNoCredentials},
		{"unrelated headers", []string{"Content-Type", "application/json"}, Identity{}, ErrNoCredentials},
		{"empty authorization", []string{"Authorization", ""}, Identity{}, ErrNoCredentials},
		{"empty x-api-key", []string{"X-Api-Key", ""}, Identity{}, ErrNoCredentials},
		{"both empty", []string{"Authorization", "", "X-Api-Key", " "}, Identity{}, ErrNoCredentials},
		{"bearer", []string{"Authorization", "Bearer " + alice}, wantAlice, nil},
		{"bearer lowercase scheme", []string{"Authorization", "bearer " + alice}, wantAlice, nil},
		{"bearer uppercase scheme", []string{"Authorization", "BEARER " + alice}, wantAlice, nil},
		{"bearer extra spaces", []string{"Authorization", "Bearer   " + alice}, wantAlice, nil},
		{"x-api-key", []string{"X-Api-Key", alice}, wantAlice, nil},
		{"x-api-key lowercase name", []string{"x-api-key", alice}, wantAlice, nil},
		// Two credentials are refused even when equal: the gateway never
		// guesses which one a request means.
		{"both same", []string{"Authorization", "Bearer " + alice, "X-Api-Key", alice}, Identity{}, ErrBadRequest},
		{"bearer and empty x-api-key", []string{"Authorization", "Bearer " + alice, "X-Api-Key", ""}, wantAlice, nil},
		{"x-api-key and empty authorization", []string{"Authorization", "", "X-Api-Key", alice}, wantAlice, nil},
		{"both different", []string{"Authorization", "Bearer " + alice, "X-Api-Key", bob}, Identity{}, ErrBadRequest},
		{"both different, one malformed", []string{"Authorization", "Bearer " + alice, "X-Api-Key", "nope"}, Identity{}, ErrBadRequest},
		{"two authorization headers", []string{"Authorization", "Bearer " + alice, "Authorization", "Bearer " + alice}, Identity{}, ErrBadRequest},
		{"two authorization headers one empty", []string{"Authorization", "Bearer " + alice, "Authorization", ""}, Identity{}, ErrBadRequest},
		{"two x-api-key headers", []string{"X-Api-Key", alice, "X-Api-Key", alice}, Identity{}, ErrBadRequest},
		{"two x-api-key headers one empty", []string{"X-Api-Key", alice, "X-Api-Key", ""}, Identity{}, ErrBadRequest},
		{"two x-api-key headers both empty", []string{"X-Api-Key", "", "X-Api-Key", ""}, Identity{}, ErrBadRequest},
		{"bearer without token", []string{"Authorization", "Bearer"}, Identity{}, ErrInvalidCredentials},
		{"bearer with blank token", []string{"Authorization", "Bearer  "}, Identity{}, ErrInvalidCredentials},
		{"basic scheme", []string{"Authorization", "Basic " + alice}, Identity{}, ErrInvalidCredentials},
		{"key without scheme", []string{"Authorization", alice}, Identity{}, ErrInvalidCredentials},
		{"sigv4", []string{"Authorization", sigV4}, Identity{}, ErrInvalidCredentials},
		{"sigv4 with valid x-api-key", []string{"Authorization", sigV4, "X-Api-Key", alice}, Identity{}, ErrBadRequest},
		{"bearer inside x-api-key", []string{"X-Api-Key", "Bearer " + alice}, Identity{}, ErrInvalidCredentials},
		{"comma-joined bearer", []string{"Authorization", "Bearer " + alice + ", Bearer " + alice}, Identity{}, ErrInvalidCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Authenticate(requestWith(t, tt.headers...))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Authenticate(%q) error = %v, want %v", tt.name, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Authenticate(%q) identity mismatch (-want +got):\n%s", tt.name, diff)
			}
			assertNoLeak(t, err, alice, bob, sigV4[len("AWS4-HMAC-SHA256 "):])
		})
	}
}

func TestAuthenticateSigV4Hint(t *testing.T) {
	a, _, _, _ := testStore(t)
	_, err := a.Authenticate(requestWith(t, "Authorization", sigV4))
	if !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("Authenticate(sigv4) error = %v, want %v", err, ErrInvalidCredentials)
	}
	if !strings.Contains(err.Error(), "AWS_BEARER_TOKEN_BEDROCK") {
		t.Errorf("Authenticate(sigv4) error = %q, want a hint naming AWS_BEARER_TOKEN_BEDROCK", err)
	}
	for _, secretish := range []string{"AKIDEXAMPLE", "5d672d79c15b"} {
		if strings.Contains(err.Error(), secretish) {
			t.Errorf("Authenticate(sigv4) error = %q, contains %q from the header", err, secretish)
		}
	}
}

func TestAuthenticateRejects(t *testing.T) {
	a, alice, _, rec := testStore(t)
	unknown, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	// The right id with another secret.
	wrongSecret := fixedKey(rec.ID, 0x5a)
	// The right secret under another id.
	swapped := keyPrefix + "0000000000000000" + alice[len(keyPrefix)+keyIDLen:]

	type tc struct {
		name string
		key  string
	}
	tests := []tc{
		{"wrong secret right id", wrongSecret},
		{"unknown id", unknown},
		{"right secret other id", swapped},
		{"truncated secret", alice[:len(alice)-1]},
		{"key plus suffix", alice + "x"},
		{"uppercased", strings.ToUpper(alice)},
	}
	for _, m := range malformedKeys {
		tests = append(tests, tc{"malformed " + m.name, m.key})
	}
	for _, tt := range tests {
		for _, header := range []string{"Authorization", "X-Api-Key"} {
			t.Run(tt.name+"/"+header, func(t *testing.T) {
				v := tt.key
				if header == "Authorization" {
					v = "Bearer " + v
				}
				got, err := a.Authenticate(requestWith(t, header, v))
				wantErr := ErrInvalidCredentials
				if strings.TrimSpace(tt.key) == "" {
					wantErr = ErrNoCredentials // "x-api-key: " counts as absent
					if header == "Authorization" {
						wantErr = ErrInvalidCredentials // "Bearer " without a token
					}
				}
				if !errors.Is(err, wantErr) {
					t.Fatalf("Authenticate(%s: %.40q) = %+v, %v; want error %v", header, v, got, err, wantErr)
				}
				if diff := cmp.Diff(Identity{}, got); diff != "" {
					t.Errorf("Authenticate(%s) returned an identity with an error (-want +got):\n%s", header, diff)
				}
				assertNoLeak(t, err, tt.key, alice)
			})
		}
	}
}

// TestAuthenticateWrongSecretNamesOnlyStoredID checks the one piece of
// key material an error may carry: the id, and only when it is a stored
// record's id.
func TestAuthenticateErrorIDs(t *testing.T) {
	a, _, _, rec := testStore(t)
	unknownID := "00000000000000aa"
	_, err := a.Authenticate(requestWith(t, "X-Api-Key", fixedKey(unknownID, 1)))
	if !errors.Is(err, ErrInvalidCredentials) || strings.Contains(err.Error(), unknownID) {
		t.Errorf("Authenticate(unknown id) error = %v, want %v not naming the presented id", err, ErrInvalidCredentials)
	}
	_, err = a.Authenticate(requestWith(t, "X-Api-Key", fixedKey(rec.ID, 1)))
	if !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(err.Error(), rec.ID) {
		t.Errorf("Authenticate(wrong secret) error = %v, want %v naming stored id %s", err, ErrInvalidCredentials, rec.ID)
	}
}

func TestNewKeyVerifierNil(t *testing.T) {
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewKeyVerifier(nil).Authenticate(requestWith(t, "X-Api-Key", key))
	if !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("NewKeyVerifier(nil).Authenticate() error = %v, want %v", err, ErrInvalidCredentials)
	}
}

func FuzzAuthenticate(f *testing.F) {
	a, alice, _, rec := testStore(f)
	f.Add("", "")
	f.Add("Bearer "+alice, "")
	f.Add("", alice)
	f.Add("bearer "+alice, alice)
	f.Add(sigV4, "")
	f.Add("Basic abc", "")
	f.Add("Bearer "+fixedKey(rec.ID, 7), "")
	for _, m := range malformedKeys {
		f.Add("Bearer "+m.key, m.key)
	}
	f.Fuzz(func(t *testing.T, authz, xkey string) {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header["Authorization"] = []string{authz}
		r.Header["X-Api-Key"] = []string{xkey}
		got, err := a.Authenticate(r)
		if err == nil {
			if got.KeyID != rec.ID || got.User != "alice@acme.org" {
				t.Fatalf("Authenticate(%q, %q) = %+v, want alice or an error", authz, xkey, got)
			}
			return
		}
		if !errors.Is(err, ErrNoCredentials) && !errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrBadRequest) {
			t.Fatalf("Authenticate(%q, %q) error = %v, want a sentinel", authz, xkey, err)
		}
		// Every error text is one of a fixed set, apart from a stored id,
		// so no input can appear in it.
		msg := strings.ReplaceAll(err.Error(), rec.ID, "<id>")
		if !authenticateMessages[msg] && !parseKeyMessages[msg] {
			t.Fatalf("Authenticate(%q, %q) error = %q, want one of the fixed messages", authz, xkey, err)
		}
	})
}

// authenticateMessages are every error text Authenticate returns besides
// those of parseKey, with a stored id written as <id>.
var authenticateMessages = map[string]bool{
	"no credentials": true,
	"more than one authorization header: bad request":           true,
	"more than one x-api-key header: bad request":               true,
	"both authorization and x-api-key present: bad request":     true,
	"authorization scheme is not Bearer: invalid credentials":   true,
	"authorization: bearer token is empty: invalid credentials": true,
	"api key: unknown key id: invalid credentials":              true,
	"api key <id>: wrong secret: invalid credentials":           true,
	"authorization is an AWS SigV4 signature, not a gateway key; set AWS_BEARER_TOKEN_BEDROCK " +
		"to your gateway key so the SDK sends it as a bearer token: invalid credentials": true,
}
