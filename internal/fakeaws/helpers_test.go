package fakeaws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"github.com/bedrock-gateway/gateway/internal/memnet"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/goleak"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testAccount     = "123456789012"
	gatewayRoleARN  = "arn:aws:iam::123456789012:role/GatewayRole"
	invokeRoleARN   = "arn:aws:iam::123456789012:role/BedrockInvocationRole"
	testUserARN     = "arn:aws:iam::123456789012:user/alice"
	claudeProfileID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
)

// env is a fake AWS account served over httptest.
type env struct {
	fake  *Server
	clock *fakeclock.Clock
	sts   *httptest.Server
	br    *httptest.Server
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	e := &env{clock: fakeclock.Following()}
	if opts.Now == nil {
		opts.Now = e.clock.Now
	}
	if opts.Roles == nil {
		opts.Roles = []string{invokeRoleARN}
	}
	e.fake = New(opts)
	e.sts = httptest.NewServer(e.fake.STSHandler())
	e.br = httptest.NewServer(e.fake.BedrockHandler())
	t.Cleanup(func() {
		e.sts.Close()
		e.br.Close()
	})
	return e
}

func staticCreds(c aws.Credentials) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
}

// stsClient returns the real SDK STS client pointed at the fake, without
// retries (a retried failure would hide the first answer).
func (e *env) stsClient(t *testing.T, c aws.Credentials) *sts.Client {
	t.Helper()
	hc := e.sts.Client()
	t.Cleanup(hc.CloseIdleConnections)
	return sts.New(sts.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(e.sts.URL),
		Credentials:  staticCreds(c),
		HTTPClient:   hc,
		Retryer:      aws.NopRetryer{},
	})
}

// The client reaches the fake over internal/memnet, not loopback TCP: on
// loopback under -race the SDK's event-stream reader was seen to lose its
// connection before a stream's last event (about 1 run in 100; not
// understood), which is not what these tests are about.
func (e *env) bedrockClient(t *testing.T, c aws.Credentials, optFns ...func(*bedrockruntime.Options)) *bedrockruntime.Client {
	t.Helper()
	l := memnet.Listen()
	stop := memnet.Serve(l, e.fake.BedrockHandler())
	tr := l.Transport()
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		stop()
	})
	hc := &http.Client{Transport: tr}
	o := bedrockruntime.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(e.br.URL),
		Credentials:  staticCreds(c),
		HTTPClient:   hc,
		Retryer:      aws.NopRetryer{},
	}
	for _, f := range optFns {
		f(&o)
	}
	return bedrockruntime.New(o)
}

// session assumes invokeRoleARN from the gateway role with the given
// session name and tags and returns the issued credentials.
func (e *env) session(t *testing.T, name string, tags map[string]string) aws.Credentials {
	t.Helper()
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(invokeRoleARN),
		RoleSessionName: aws.String(name),
		DurationSeconds: aws.Int32(3600),
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		in.Tags = append(in.Tags, ststypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	out, err := e.stsClient(t, e.fake.RootCredentials(gatewayRoleARN)).AssumeRole(context.Background(), in)
	if err != nil {
		t.Fatalf("AssumeRole(%q) error = %v", name, err)
	}
	c := out.Credentials
	return aws.Credentials{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		CanExpire:       true,
		Expires:         aws.ToTime(c.Expiration),
	}
}

// apiError returns the smithy API error code and the HTTP status of err.
func apiError(t *testing.T, err error) (code string, status int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not a smithy.APIError", err, err)
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return ae.ErrorCode(), status
}

// signedRequest builds a raw request to url signed by the SDK's SigV4
// signer for service, for wire-level tests.
func signedRequest(t *testing.T, method, url string, body []byte, c aws.Credentials, service, region string, at time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), c, req, hex.EncodeToString(sum[:]), service, region, at); err != nil {
		t.Fatal(err)
	}
	return req
}

// do sends req and returns the response with its body read.
func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return resp, b
}

// otherSecret returns secret with its first character changed, so a
// signature made with it never verifies. (Replacing the first character
// with a fixed one leaves 1 secret in 64 unchanged.)
func otherSecret(secret string) string {
	if secret[0] == 'x' {
		return "y" + secret[1:]
	}
	return "x" + secret[1:]
}
