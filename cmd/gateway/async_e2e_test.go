package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	brtypes "github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
)

// startVideo starts an asynchronous invocation with c and returns its ARN.
func startVideo(t *testing.T, c *bedrockruntime.Client) string {
	t.Helper()
	out, err := c.StartAsyncInvoke(context.Background(), &bedrockruntime.StartAsyncInvokeInput{
		ModelId:          aws.String("amazon.nova-reel-v1:0"),
		ModelInput:       document.NewLazyDocument(map[string]any{"taskType": "TEXT_VIDEO", "textToVideoParams": map[string]any{"text": "a cat"}}),
		OutputDataConfig: &brtypes.AsyncInvokeOutputDataConfigMemberS3OutputDataConfig{Value: brtypes.AsyncInvokeS3OutputDataConfig{S3Uri: aws.String("s3://bucket/out/")}},
	})
	if err != nil {
		t.Fatalf("StartAsyncInvoke: %v", err)
	}
	return aws.ToString(out.InvocationArn)
}

// listAllJobs pages through ListAsyncInvokes with the SDK's paginator, one
// job per page, and returns every ARN it was shown.
func listAllJobs(t *testing.T, c *bedrockruntime.Client) []string {
	t.Helper()
	arns := []string{}
	p := bedrockruntime.NewListAsyncInvokesPaginator(c, &bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(1)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("ListAsyncInvokes: %v", err)
		}
		for _, s := range page.AsyncInvokeSummaries {
			arns = append(arns, aws.ToString(s.InvocationArn))
		}
	}
	return arns
}

// notFound gets arn with c and returns the ResourceNotFoundException's
// message, failing the test on any other outcome.
func notFound(t *testing.T, c *bedrockruntime.Client, arn string) string {
	t.Helper()
	_, err := c.GetAsyncInvoke(context.Background(), &bedrockruntime.GetAsyncInvokeInput{InvocationArn: aws.String(arn)})
	var nf *brtypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("GetAsyncInvoke(%s) error = %v, want ResourceNotFoundException", arn, err)
	}
	return nf.ErrorMessage()
}

// TestEndToEndAsyncOwnership: through the real SDK, each caller sees only
// the asynchronous invocations it started: bob's Get of alice's job is the
// same ResourceNotFoundException as a Get of a job that does not exist,
// made without an STS or Bedrock call; the paginator walks filtered (even
// empty) pages to each caller's own jobs; and all of it holds after the
// gateway restarts with async.ownership_file.
func TestEndToEndAsyncOwnership(t *testing.T) {
	e := startEnvWith(t, extraConfig{top: "async:\n  ownership_file: owners.jsonl"}, alice, bob)
	ctx := context.Background()
	aliceJob := startVideo(t, e.sdk(t, alice.user))

	bobSDK := e.sdk(t, bob.user)
	assumes, calls := len(e.fake.AssumeRoleCalls()), len(e.fake.Invocations())
	others := notFound(t, bobSDK, aliceJob)
	unknown := notFound(t, bobSDK, "arn:aws:bedrock:us-east-1:123456789012:async-invoke/zzzzzzzzzzzz")
	if others != unknown {
		t.Errorf("bob's Get of alice's job says %q, of a made-up job %q: they must not differ", others, unknown)
	}
	if n := len(e.fake.AssumeRoleCalls()) - assumes; n != 0 {
		t.Errorf("bob's refused Gets made %d AssumeRole calls, want 0", n)
	}
	if n := len(e.fake.Invocations()) - calls; n != 0 {
		t.Errorf("bob's refused Gets reached Bedrock %d times, want 0", n)
	}
	bobJob := startVideo(t, bobSDK)

	check := func(when string) {
		t.Helper()
		aliceSDK, bobSDK := e.sdk(t, alice.user), e.sdk(t, bob.user)
		got, err := aliceSDK.GetAsyncInvoke(ctx, &bedrockruntime.GetAsyncInvokeInput{InvocationArn: aws.String(aliceJob)})
		if err != nil || aws.ToString(got.InvocationArn) != aliceJob {
			t.Errorf("%s: alice's Get of her job = %v", when, err)
		}
		notFound(t, bobSDK, aliceJob)
		notFound(t, aliceSDK, bobJob)
		for _, tc := range []struct {
			who  string
			c    *bedrockruntime.Client
			want []string
		}{{alice.user, aliceSDK, []string{aliceJob}}, {bob.user, bobSDK, []string{bobJob}}} {
			if got := listAllJobs(t, tc.c); !slices.Equal(got, tc.want) {
				t.Errorf("%s: %s's jobs = %v, want %v", when, tc.who, got, tc.want)
			}
		}
	}
	check("before the restart")
	e.restart()
	check("after the restart")

	owners, err := os.ReadFile(filepath.Join(e.dir, "owners.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{aliceJob, bobJob} {
		if strings.Count(string(owners), job) != 1 {
			t.Errorf("owners.jsonl does not hold %s once:\n%s", job, owners)
		}
	}
	if logs := e.logs.String(); strings.Contains(logs, "async.ownership_file is not set") {
		t.Errorf("the gateway warned that async.ownership_file is not set, though it is")
	}
}

// TestEndToEndAsyncOwnershipInMemory: without async.ownership_file the
// gateway says at start that a restart forgets who started what.
func TestEndToEndAsyncOwnershipInMemory(t *testing.T) {
	e := startEnv(t, alice)
	// Log lines reach their writer within logwriter.FlushInterval.
	eventually(t, "a start-up warning about async.ownership_file in the logs", func() bool {
		return strings.Contains(e.logs.String(), "async.ownership_file is not set")
	})
}
