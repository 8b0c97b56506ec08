package fakeaws

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestAssumeRoleAndGetCallerIdentity(t *testing.T) {
	e := newEnv(t, Options{})
	root := e.fake.RootCredentials(gatewayRoleARN)
	client := e.stsClient(t, root)
	ctx := context.Background()

	id, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity(root) error = %v", err)
	}
	if got := aws.ToString(id.Arn); got != gatewayRoleARN {
		t.Errorf("GetCallerIdentity(root).Arn = %q, want %q", got, gatewayRoleARN)
	}
	if got := aws.ToString(id.Account); got != testAccount {
		t.Errorf("GetCallerIdentity(root).Account = %q, want %q", got, testAccount)
	}

	out, err := client.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn:         aws.String(invokeRoleARN),
		RoleSessionName: aws.String("alice@acme.org"),
		SourceIdentity:  aws.String("alice@acme.org"),
		DurationSeconds: aws.Int32(3600),
		Tags: []ststypes.Tag{
			{Key: aws.String("team"), Value: aws.String("data science")},
			{Key: aws.String("tenant"), Value: aws.String("acme")},
			{Key: aws.String("cost-center"), Value: aws.String("")},
		},
		TransitiveTagKeys: []string{"team"},
	})
	if err != nil {
		t.Fatalf("AssumeRole error = %v", err)
	}
	creds := out.Credentials
	if got := aws.ToString(creds.AccessKeyId); !regexp.MustCompile(`^ASIA[A-Z0-9]{16}$`).MatchString(got) {
		t.Errorf("AccessKeyId = %q, want ASIA + 16 upper-case alphanumerics", got)
	}
	if aws.ToString(creds.SecretAccessKey) == "" || aws.ToString(creds.SessionToken) == "" {
		t.Errorf("AssumeRole returned an empty secret or session token")
	}
	const wantARN = "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice@acme.org"
	if got := aws.ToString(out.AssumedRoleUser.Arn); got != wantARN {
		t.Errorf("AssumedRoleUser.Arn = %q, want %q", got, wantARN)
	}
	roleID := aws.ToString(out.AssumedRoleUser.AssumedRoleId)
	if !regexp.MustCompile(`^AROA[A-Z0-9]{17}:alice@acme\.org$`).MatchString(roleID) {
		t.Errorf("AssumedRoleId = %q, want AROA<17>:alice@acme.org", roleID)
	}
	if got := aws.ToString(out.SourceIdentity); got != "alice@acme.org" {
		t.Errorf("SourceIdentity = %q, want %q", got, "alice@acme.org")
	}

	calls := e.fake.AssumeRoleCalls()
	if len(calls) != 1 {
		t.Fatalf("AssumeRoleCalls() has %d calls, want 1", len(calls))
	}
	wantExp := calls[0].Time.Add(time.Hour).UTC().Truncate(time.Second)
	if got := aws.ToTime(creds.Expiration); !got.Equal(wantExp) {
		t.Errorf("Expiration = %v, want %v", got, wantExp)
	}
	want := AssumeRoleCall{
		CallerARN:         gatewayRoleARN,
		RoleARN:           invokeRoleARN,
		SessionName:       "alice@acme.org",
		SourceIdentity:    "alice@acme.org",
		Tags:              map[string]string{"team": "data science", "tenant": "acme", "cost-center": ""},
		TransitiveTagKeys: []string{"team"},
		DurationSeconds:   3600,
		AccessKeyID:       aws.ToString(creds.AccessKeyId),
	}
	if diff := cmp.Diff(want, calls[0], cmpopts.IgnoreFields(AssumeRoleCall{}, "Time")); diff != "" {
		t.Errorf("AssumeRoleCalls()[0] mismatch (-want +got):\n%s", diff)
	}

	// The issued session identifies itself as the assumed role.
	sessionClient := e.stsClient(t, aws.Credentials{
		AccessKeyID:     aws.ToString(creds.AccessKeyId),
		SecretAccessKey: aws.ToString(creds.SecretAccessKey),
		SessionToken:    aws.ToString(creds.SessionToken),
	})
	id, err = sessionClient.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity(session) error = %v", err)
	}
	if got := aws.ToString(id.Arn); got != wantARN {
		t.Errorf("GetCallerIdentity(session).Arn = %q, want %q", got, wantARN)
	}
	if got := aws.ToString(id.UserId); got != roleID {
		t.Errorf("GetCallerIdentity(session).UserId = %q, want %q", got, roleID)
	}
}

func TestAssumeRoleDefaultDuration(t *testing.T) {
	e := newEnv(t, Options{})
	out, err := e.stsClient(t, e.fake.RootCredentials(testUserARN)).AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn:         aws.String(invokeRoleARN),
		RoleSessionName: aws.String("bob"),
	})
	if err != nil {
		t.Fatalf("AssumeRole error = %v", err)
	}
	call := e.fake.AssumeRoleCalls()[0]
	if call.DurationSeconds != 0 {
		t.Errorf("recorded DurationSeconds = %d, want 0 (absent)", call.DurationSeconds)
	}
	if got, want := aws.ToTime(out.Credentials.Expiration), call.Time.Add(time.Hour).UTC().Truncate(time.Second); !got.Equal(want) {
		t.Errorf("Expiration = %v, want %v", got, want)
	}
	if aws.ToString(out.AssumedRoleUser.AssumedRoleId) == "" || out.PackedPolicySize != nil {
		t.Errorf("AssumeRole without tags: AssumedRoleId = %q, PackedPolicySize = %v; want an ID and no PackedPolicySize",
			aws.ToString(out.AssumedRoleUser.AssumedRoleId), out.PackedPolicySize)
	}
}

func tags(n int) []ststypes.Tag {
	out := make([]ststypes.Tag, n)
	for i := range out {
		out[i] = ststypes.Tag{Key: aws.String(fmt.Sprintf("k%d", i)), Value: aws.String("v")}
	}
	return out
}

func TestAssumeRoleErrors(t *testing.T) {
	base := func(mod func(*sts.AssumeRoleInput)) *sts.AssumeRoleInput {
		in := &sts.AssumeRoleInput{
			RoleArn:         aws.String(invokeRoleARN),
			RoleSessionName: aws.String("alice"),
			DurationSeconds: aws.Int32(3600),
		}
		mod(in)
		return in
	}
	tests := []struct {
		name       string
		caller     string
		in         *sts.AssumeRoleInput
		wantCode   string
		wantStatus int
		wantMsg    string // substring
	}{
		{"session name with space", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) { in.RoleSessionName = aws.String("alice smith") }),
			"ValidationError", 400, "at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern"},
		{"session name too short", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) { in.RoleSessionName = aws.String("a") }),
			"ValidationError", 400, "Member must have length greater than or equal to 2"},
		{"session name too long", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) { in.RoleSessionName = aws.String(strings.Repeat("a", 65)) }),
			"ValidationError", 400, "Member must have length less than or equal to 64"},
		{"51 tags", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) { in.Tags = tags(51) }),
			"ValidationError", 400, "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50"},
		{"aws: tag key", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) {
			in.Tags = []ststypes.Tag{{Key: aws.String("aws:team"), Value: aws.String("x")}}
		}), "ValidationError", 400, "reserved prefix 'aws:'"},
		{"AWS: tag value", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) {
			in.Tags = []ststypes.Tag{{Key: aws.String("team"), Value: aws.String("AWS:x")}}
		}), "ValidationError", 400, "reserved prefix 'aws:'"},
		{"duplicate tag keys differing in case", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) {
			in.Tags = []ststypes.Tag{{Key: aws.String("Team"), Value: aws.String("a")}, {Key: aws.String("team"), Value: aws.String("b")}}
		}), "ValidationError", 400, "Duplicate tag keys found"},
		{"tag value with bad character", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) {
			in.Tags = []ststypes.Tag{{Key: aws.String("team"), Value: aws.String("a;b")}}
		}), "ValidationError", 400, "at 'tags.1.member.value'"},
		{"tag key too long", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) {
			in.Tags = []ststypes.Tag{{Key: aws.String(strings.Repeat("k", 129)), Value: aws.String("v")}}
		}), "ValidationError", 400, "at 'tags.1.member.key' failed to satisfy constraint: Member must have length less than or equal to 128"},
		{"tag value too long", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) {
			in.Tags = []ststypes.Tag{{Key: aws.String("k"), Value: aws.String(strings.Repeat("v", 257))}}
		}), "ValidationError", 400, "Member must have length less than or equal to 256"},
		{"two problems reported together", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) {
			in.RoleSessionName = aws.String("a b")
			in.DurationSeconds = aws.Int32(100)
		}), "ValidationError", 400, "2 validation errors detected"},
		{"duration below minimum", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) { in.DurationSeconds = aws.Int32(899) }),
			"ValidationError", 400, "Member must have value greater than or equal to 900"},
		{"duration above maximum", testUserARN, base(func(in *sts.AssumeRoleInput) { in.DurationSeconds = aws.Int32(43201) }),
			"ValidationError", 400, "Member must have value less than or equal to 43200"},
		{"7200s chained from a role", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) { in.DurationSeconds = aws.Int32(7200) }),
			"ValidationError", 400, "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."},
		{"7200s from a user exceeds MaxSessionDuration", testUserARN, base(func(in *sts.AssumeRoleInput) { in.DurationSeconds = aws.Int32(7200) }),
			"ValidationError", 400, "exceeds the MaxSessionDuration set for this role"},
		{"source identity with aws: prefix", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) { in.SourceIdentity = aws.String("aws:alice") }),
			"ValidationError", 400, "at 'sourceIdentity' failed to satisfy constraint: Member must satisfy regular expression pattern"},
		{"source identity too short", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) { in.SourceIdentity = aws.String("a") }),
			"ValidationError", 400, "at 'sourceIdentity'"},
		{"unknown role", gatewayRoleARN, base(func(in *sts.AssumeRoleInput) { in.RoleArn = aws.String("arn:aws:iam::123456789012:role/Other") }),
			"AccessDenied", 403, "User: arn:aws:iam::123456789012:role/GatewayRole is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/Other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			_, err := e.stsClient(t, e.fake.RootCredentials(tt.caller)).AssumeRole(context.Background(), tt.in)
			if err == nil {
				t.Fatalf("AssumeRole succeeded, want %s", tt.wantCode)
			}
			code, status := apiError(t, err)
			if code != tt.wantCode || status != tt.wantStatus {
				t.Errorf("AssumeRole error = %s (HTTP %d), want %s (HTTP %d)", code, status, tt.wantCode, tt.wantStatus)
			}
			var ae interface{ ErrorMessage() string }
			if errors.As(err, &ae) && !strings.Contains(ae.ErrorMessage(), tt.wantMsg) {
				t.Errorf("AssumeRole error message = %q, want it to contain %q", ae.ErrorMessage(), tt.wantMsg)
			}
			calls := e.fake.AssumeRoleCalls()
			if len(calls) != 1 || calls[0].Err != tt.wantCode || calls[0].AccessKeyID != "" {
				t.Errorf("AssumeRoleCalls() = %+v, want one call with Err %q and no access key", calls, tt.wantCode)
			}
		})
	}
}

func TestFailAssumeRole(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.stsClient(t, e.fake.RootCredentials(gatewayRoleARN))
	in := &sts.AssumeRoleInput{RoleArn: aws.String(invokeRoleARN), RoleSessionName: aws.String("alice")}
	ctx := context.Background()

	t.Run("throttling", func(t *testing.T) {
		var seen AssumeRoleCall
		e.fake.FailAssumeRole(func(_ context.Context, c AssumeRoleCall) *Fault {
			seen = c
			return &Fault{Code: "Throttling"}
		})
		defer e.fake.FailAssumeRole(nil)
		_, err := client.AssumeRole(ctx, in)
		if code, status := apiError(t, err); code != "Throttling" || status != 400 {
			t.Errorf("AssumeRole error = %s (HTTP %d), want Throttling (HTTP 400)", code, status)
		}
		if !strings.Contains(err.Error(), "Rate exceeded") {
			t.Errorf("AssumeRole error = %q, want it to contain %q", err, "Rate exceeded")
		}
		if seen.SessionName != "alice" || seen.CallerARN != gatewayRoleARN {
			t.Errorf("hook saw %+v, want session alice from %s", seen, gatewayRoleARN)
		}
	})

	t.Run("slow STS observes the caller giving up", func(t *testing.T) {
		entered := make(chan struct{})
		returned := make(chan struct{})
		e.fake.FailAssumeRole(func(ctx context.Context, _ AssumeRoleCall) *Fault {
			defer close(returned)
			close(entered)
			<-ctx.Done()
			return &Fault{Code: "InternalFailure", Status: 500}
		})
		defer e.fake.FailAssumeRole(nil)
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			<-entered
			cancel()
		}()
		_, err := client.AssumeRole(cctx, in)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("AssumeRole error = %v, want context.Canceled", err)
		}
		<-returned
		// The server records the call after the hook returns, which can be
		// after the cancelled client has given up.
		for deadline := time.Now().Add(5 * time.Second); len(e.fake.AssumeRoleCalls()) < 2 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	})

	t.Run("hook removed", func(t *testing.T) {
		if _, err := client.AssumeRole(ctx, in); err != nil {
			t.Errorf("AssumeRole after FailAssumeRole(nil) error = %v", err)
		}
	})

	var codes []string
	for _, c := range e.fake.AssumeRoleCalls() {
		codes = append(codes, c.Err)
	}
	if diff := cmp.Diff([]string{"Throttling", "InternalFailure", ""}, codes); diff != "" {
		t.Errorf("recorded error codes mismatch (-want +got):\n%s", diff)
	}
}

func TestSTSAuthErrors(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	root := e.fake.RootCredentials(gatewayRoleARN)
	session := e.session(t, "alice", nil)

	wrongSecret := root
	wrongSecret.SecretAccessKey = otherSecret(root.SecretAccessKey)
	unknown := aws.Credentials{AccessKeyID: "AKIAAAAAAAAAAAAAAAAA", SecretAccessKey: root.SecretAccessKey}
	noToken := session
	noToken.SessionToken = ""
	badToken := session
	badToken.SessionToken = session.SessionToken + "x"
	tokenOnRoot := root
	tokenOnRoot.SessionToken = session.SessionToken

	tests := []struct {
		name       string
		creds      aws.Credentials
		wantCode   string
		wantStatus int
	}{
		{"wrong secret", wrongSecret, "SignatureDoesNotMatch", 403},
		{"unknown access key", unknown, "InvalidClientTokenId", 403},
		{"session key without token", noToken, "InvalidClientTokenId", 403},
		{"session key with wrong token", badToken, "InvalidClientTokenId", 403},
		{"root key with a token", tokenOnRoot, "InvalidClientTokenId", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.stsClient(t, tt.creds).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			if err == nil {
				t.Fatalf("GetCallerIdentity succeeded, want %s", tt.wantCode)
			}
			if code, status := apiError(t, err); code != tt.wantCode || status != tt.wantStatus {
				t.Errorf("GetCallerIdentity error = %s (HTTP %d), want %s (HTTP %d)", code, status, tt.wantCode, tt.wantStatus)
			}
		})
	}

	t.Run("expired session", func(t *testing.T) {
		e.clock.Advance(time.Hour)
		defer e.clock.Advance(-time.Hour)
		_, err := e.stsClient(t, session).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if code, status := apiError(t, err); code != "ExpiredToken" || status != 403 {
			t.Errorf("GetCallerIdentity error = %s (HTTP %d), want ExpiredToken (HTTP 403)", code, status)
		}
	})

	t.Run("failed signature on AssumeRole is recorded", func(t *testing.T) {
		_, err := e.stsClient(t, wrongSecret).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(invokeRoleARN), RoleSessionName: aws.String("mallory")})
		if code, _ := apiError(t, err); code != "SignatureDoesNotMatch" {
			t.Errorf("AssumeRole error = %s, want SignatureDoesNotMatch", code)
		}
		calls := e.fake.AssumeRoleCalls()
		last := calls[len(calls)-1]
		if last.SessionName != "mallory" || last.Err != "SignatureDoesNotMatch" || last.CallerARN != "" || last.AccessKeyID != "" {
			t.Errorf("last AssumeRoleCall = %+v, want mallory refused with SignatureDoesNotMatch and no caller", last)
		}
	})
}

// TestSTSWire checks the raw XML and headers, which the SDK would
// tolerate variations of.
func TestSTSWire(t *testing.T) {
	e := newEnv(t, Options{})
	root := e.fake.RootCredentials(gatewayRoleARN)
	form := url.Values{
		"Action":          {"AssumeRole"},
		"Version":         {"2011-06-15"},
		"RoleArn":         {invokeRoleARN},
		"RoleSessionName": {"alice"},
	}.Encode()

	tests := []struct {
		name       string
		req        func() *http.Request
		wantStatus int
		wantBody   *regexp.Regexp
	}{
		{
			name: "AssumeRole success",
			req: func() *http.Request {
				return signedRequest(t, "POST", e.sts.URL+"/", []byte(form), root, "sts", "us-east-1", time.Now())
			},
			wantStatus: 200,
			wantBody: regexp.MustCompile(`^<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>` +
				`<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice</Arn><AssumedRoleId>AROA[A-Z0-9]{17}:alice</AssumedRoleId></AssumedRoleUser>` +
				`<Credentials><AccessKeyId>ASIA[A-Z0-9]{16}</AccessKeyId><SecretAccessKey>[A-Za-z0-9+/]{40}</SecretAccessKey><SessionToken>[^<]+</SessionToken><Expiration>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ</Expiration></Credentials>` +
				`</AssumeRoleResult><ResponseMetadata><RequestId>[0-9a-f-]{36}</RequestId></ResponseMetadata></AssumeRoleResponse>$`),
		},
		{
			name: "missing authentication",
			req: func() *http.Request {
				r, _ := http.NewRequest("POST", e.sts.URL+"/", strings.NewReader(form))
				return r
			},
			wantStatus: 403,
			wantBody: regexp.MustCompile(`^<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>` +
				`<Code>MissingAuthenticationToken</Code><Message>Request is missing Authentication Token</Message></Error><RequestId>[0-9a-f-]{36}</RequestId></ErrorResponse>$`),
		},
		{
			name: "scoped to the wrong service",
			req: func() *http.Request {
				return signedRequest(t, "POST", e.sts.URL+"/", []byte(form), root, "bedrock", "us-east-1", time.Now())
			},
			wantStatus: 403,
			wantBody:   regexp.MustCompile(`<Code>SignatureDoesNotMatch</Code><Message>Credential should be scoped to correct service: &#39;sts&#39;. </Message>`),
		},
		{
			name: "scoped to the wrong region",
			req: func() *http.Request {
				return signedRequest(t, "POST", e.sts.URL+"/", []byte(form), root, "sts", "eu-west-1", time.Now())
			},
			wantStatus: 403,
			wantBody:   regexp.MustCompile(`<Code>SignatureDoesNotMatch</Code><Message>Credential should be scoped to a valid region. </Message>`),
		},
		{
			name: "signed 10 minutes ago",
			req: func() *http.Request {
				return signedRequest(t, "POST", e.sts.URL+"/", []byte(form), root, "sts", "us-east-1", time.Now().Add(-10*time.Minute))
			},
			wantStatus: 403,
			wantBody:   regexp.MustCompile(`<Code>SignatureDoesNotMatch</Code><Message>Signature expired: \d{8}T\d{6}Z is now earlier than`),
		},
		{
			name: "malformed authorization",
			req: func() *http.Request {
				r := signedRequest(t, "POST", e.sts.URL+"/", []byte(form), root, "sts", "us-east-1", time.Now())
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=", "Headers=", 1))
				return r
			},
			wantStatus: 400,
			wantBody:   regexp.MustCompile(`<Code>IncompleteSignature</Code>`),
		},
		{
			name: "unknown action",
			req: func() *http.Request {
				return signedRequest(t, "POST", e.sts.URL+"/", []byte("Action=GetSessionToken&Version=2011-06-15"), root, "sts", "us-east-1", time.Now())
			},
			wantStatus: 400,
			wantBody:   regexp.MustCompile(`<Code>InvalidAction</Code><Message>Could not find operation GetSessionToken for version 2011-06-15</Message>`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.req())
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("Content-Type"); got != "text/xml" {
				t.Errorf("Content-Type = %q, want text/xml", got)
			}
			if got := resp.Header.Get("X-Amzn-RequestId"); len(got) != 36 {
				t.Errorf("x-amzn-RequestId = %q, want a UUID", got)
			}
			if !tt.wantBody.Match(body) {
				t.Errorf("body = %s, want match for %s", body, tt.wantBody)
			}
			if strings.Contains(string(body), root.SecretAccessKey) {
				t.Errorf("body contains the caller's secret key")
			}
		})
	}
}
