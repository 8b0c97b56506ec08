package sessioncache

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// fakeSTS implements STS. By default it answers at once with credentials
// numbered by call (AKID1, AKID2, ...) that expire lifetime after now().
type fakeSTS struct {
	now      func() time.Time // default time.Now
	lifetime time.Duration    // default 1h
	// block, if non-nil, holds every call until it is closed or the call's
	// context ends (then the call returns the context error, as the SDK does).
	block chan struct{}
	// respond, if non-nil, replaces the default answer.
	respond func(ctx context.Context, n int, in *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error)

	mu     sync.Mutex
	calls  int
	inputs []*sts.AssumeRoleInput
	ctxs   []context.Context
}

func (f *fakeSTS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, _ ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.inputs = append(f.inputs, in)
	f.ctxs = append(f.ctxs, ctx)
	f.mu.Unlock()

	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.respond != nil {
		return f.respond(ctx, n, in)
	}
	return f.output(n), nil
}

func (f *fakeSTS) output(n int) *sts.AssumeRoleOutput {
	now, lifetime := time.Now, time.Hour
	if f.now != nil {
		now = f.now
	}
	if f.lifetime != 0 {
		lifetime = f.lifetime
	}
	return &sts.AssumeRoleOutput{Credentials: &types.Credentials{
		AccessKeyId:     aws.String(fmt.Sprintf("AKID%d", n)),
		SecretAccessKey: aws.String(fmt.Sprintf("SECRET%d", n)),
		SessionToken:    aws.String(fmt.Sprintf("TOKEN%d", n)),
		Expiration:      aws.Time(now().Add(lifetime)),
	}}
}

func (f *fakeSTS) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeSTS) Input(i int) *sts.AssumeRoleInput {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inputs[i]
}

func (f *fakeSTS) Ctx(i int) context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctxs[i]
}

// testSpec returns a valid spec for user name.
func testSpec(name string) tenancy.SessionSpec {
	return tenancy.SessionSpec{
		RoleARN:     "arn:aws:iam::123456789012:role/BedrockUser",
		SessionName: name,
		Tags: []tenancy.Tag{
			{Key: "cost-center", Value: "cc-42"},
			{Key: "team", Value: "ml"},
			{Key: "tenant", Value: "acme"},
		},
		Duration: time.Hour,
	}
}
