package fakeaws

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/google/go-cmp/cmp"
)

const novaReel = "amazon.nova-reel-v1:1"

func startInput(model, token, prompt string) *bedrockruntime.StartAsyncInvokeInput {
	in := &bedrockruntime.StartAsyncInvokeInput{
		ModelId:    aws.String(model),
		ModelInput: document.NewLazyDocument(map[string]any{"taskType": "TEXT_VIDEO", "textToVideoParams": map[string]any{"text": prompt}}),
		OutputDataConfig: &types.AsyncInvokeOutputDataConfigMemberS3OutputDataConfig{Value: types.AsyncInvokeS3OutputDataConfig{
			S3Uri: aws.String("s3://my-bucket/videos/"),
		}},
		Tags: []types.Tag{{Key: aws.String("project"), Value: aws.String("demo")}},
	}
	if token != "" {
		in.ClientRequestToken = aws.String(token)
	}
	return in
}

var invocationARNRE = regexp.MustCompile(`^arn:aws:bedrock:us-east-1:123456789012:async-invoke/[a-z0-9]{12}$`)

func TestAsyncInvoke(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice", map[string]string{"team": "ml"})
	client := e.bedrockClient(t, creds)
	ctx := context.Background()

	start, err := client.StartAsyncInvoke(ctx, startInput(novaReel, "token-1", "a cat"))
	if err != nil {
		t.Fatalf("StartAsyncInvoke error = %v", err)
	}
	arn := aws.ToString(start.InvocationArn)
	if !invocationARNRE.MatchString(arn) {
		t.Fatalf("StartAsyncInvoke ARN = %q, want %s", arn, invocationARNRE)
	}

	t.Run("retry with the same token returns the same job", func(t *testing.T) {
		again, err := client.StartAsyncInvoke(ctx, startInput(novaReel, "token-1", "a cat"))
		if err != nil {
			t.Fatalf("StartAsyncInvoke(retry) error = %v", err)
		}
		if got := aws.ToString(again.InvocationArn); got != arn {
			t.Errorf("StartAsyncInvoke(retry) ARN = %q, want %q", got, arn)
		}
	})
	t.Run("same token, other parameters", func(t *testing.T) {
		_, err := client.StartAsyncInvoke(ctx, startInput(novaReel, "token-1", "a dog"))
		var ce *types.ConflictException
		if !errors.As(err, &ce) {
			t.Fatalf("StartAsyncInvoke(conflict) error = %v (%T), want *types.ConflictException", err, err)
		}
		if code, status := apiError(t, err); status != 400 {
			t.Errorf("StartAsyncInvoke(conflict) = %s (HTTP %d), want HTTP 400", code, status)
		}
	})

	t.Run("GetAsyncInvoke in progress, then completed", func(t *testing.T) {
		got, err := client.GetAsyncInvoke(ctx, &bedrockruntime.GetAsyncInvokeInput{InvocationArn: aws.String(arn)})
		if err != nil {
			t.Fatalf("GetAsyncInvoke error = %v", err)
		}
		if got.Status != types.AsyncInvokeStatusInProgress || got.EndTime != nil {
			t.Errorf("GetAsyncInvoke status = %q, end %v; want InProgress, no end", got.Status, got.EndTime)
		}
		if aws.ToString(got.InvocationArn) != arn || aws.ToString(got.ModelArn) != "arn:aws:bedrock:us-east-1::foundation-model/"+novaReel ||
			aws.ToString(got.ClientRequestToken) != "token-1" {
			t.Errorf("GetAsyncInvoke = {%q %q %q}, want {%q, the foundation-model ARN, token-1}", aws.ToString(got.InvocationArn), aws.ToString(got.ModelArn), aws.ToString(got.ClientRequestToken), arn)
		}
		s3, ok := got.OutputDataConfig.(*types.AsyncInvokeOutputDataConfigMemberS3OutputDataConfig)
		if !ok || aws.ToString(s3.Value.S3Uri) != "s3://my-bucket/videos/" {
			t.Errorf("GetAsyncInvoke outputDataConfig = %#v, want s3://my-bucket/videos/", got.OutputDataConfig)
		}
		submitted := aws.ToTime(got.SubmitTime)
		if d := time.Since(submitted); d < 0 || d > time.Minute {
			t.Errorf("GetAsyncInvoke submitTime = %v, want about now", submitted)
		}

		e.clock.Advance(time.Minute)
		defer e.clock.Advance(-time.Minute)
		got, err = client.GetAsyncInvoke(ctx, &bedrockruntime.GetAsyncInvokeInput{InvocationArn: aws.String(arn)})
		if err != nil {
			t.Fatalf("GetAsyncInvoke error = %v", err)
		}
		wantEnd := submitted.Add(time.Minute)
		if got.Status != types.AsyncInvokeStatusCompleted || !aws.ToTime(got.EndTime).Equal(wantEnd) || !aws.ToTime(got.LastModifiedTime).Equal(wantEnd) {
			t.Errorf("GetAsyncInvoke after 1m = %q, end %v, modified %v; want Completed at %v", got.Status, got.EndTime, got.LastModifiedTime, wantEnd)
		}
	})

	t.Run("failure model", func(t *testing.T) {
		out, err := client.StartAsyncInvoke(ctx, startInput(ModelAsyncFailure, "", "x"))
		if err != nil {
			t.Fatalf("StartAsyncInvoke error = %v", err)
		}
		e.clock.Advance(time.Minute)
		defer e.clock.Advance(-time.Minute)
		got, err := client.GetAsyncInvoke(ctx, &bedrockruntime.GetAsyncInvokeInput{InvocationArn: out.InvocationArn})
		if err != nil {
			t.Fatalf("GetAsyncInvoke error = %v", err)
		}
		if got.Status != types.AsyncInvokeStatusFailed || aws.ToString(got.FailureMessage) == "" {
			t.Errorf("GetAsyncInvoke = %q, message %q; want Failed with a message", got.Status, aws.ToString(got.FailureMessage))
		}
	})

	t.Run("GetAsyncInvoke errors", func(t *testing.T) {
		other := e.bedrockClient(t, e.fake.RootCredentials("arn:aws:iam::210987654321:user/bob"))
		for _, tt := range []struct {
			name   string
			client *bedrockruntime.Client
			arn    string
			code   string
			status int
		}{
			{"unknown job", client, "arn:aws:bedrock:us-east-1:123456789012:async-invoke/000000000000", "ResourceNotFoundException", 404},
			{"another account's job", other, arn, "ResourceNotFoundException", 404},
			{"not an ARN", client, "not-an-arn", "ValidationException", 400},
			{"model ARN", client, "arn:aws:bedrock:us-east-1::foundation-model/" + novaReel, "ValidationException", 400},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := tt.client.GetAsyncInvoke(ctx, &bedrockruntime.GetAsyncInvokeInput{InvocationArn: aws.String(tt.arn)})
				if err == nil {
					t.Fatalf("GetAsyncInvoke(%q) succeeded, want %s", tt.arn, tt.code)
				}
				if code, status := apiError(t, err); code != tt.code || status != tt.status {
					t.Errorf("GetAsyncInvoke(%q) error = %s (HTTP %d), want %s (HTTP %d)", tt.arn, code, status, tt.code, tt.status)
				}
			})
		}
	})

	invs := e.fake.Invocations()
	type summary struct{ Op, Model, ARN string }
	var got []summary
	for _, inv := range invs[:4] {
		got = append(got, summary{inv.Operation, inv.ModelID, inv.InvocationARN})
		if inv.SessionName != "alice" || inv.Tags["team"] != "ml" {
			t.Errorf("%s recorded session %q tags %v, want alice's", inv.Operation, inv.SessionName, inv.Tags)
		}
	}
	want := []summary{
		{"StartAsyncInvoke", novaReel, arn},
		{"StartAsyncInvoke", novaReel, arn},
		{"StartAsyncInvoke", novaReel, ""},
		{"GetAsyncInvoke", "", arn},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Invocations() mismatch (-want +got):\n%s", diff)
	}
	// The SDK escapes the ARN label: ':' and '/' arrive as %3A and %2F.
	if uri, want := invs[3].RequestURI, "/async-invoke/"+strings.NewReplacer(":", "%3A", "/", "%2F").Replace(arn); uri != want {
		t.Errorf("GetAsyncInvoke RequestURI = %q, want %q", uri, want)
	}
	if rows := e.fake.BillingRows(); len(rows) != 0 {
		t.Errorf("BillingRows() = %v, want none for async calls", rows)
	}
}

func TestStartAsyncInvokeValidation(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice", nil)
	client := e.bedrockClient(t, creds)
	ctx := context.Background()
	mod := func(f func(*bedrockruntime.StartAsyncInvokeInput)) *bedrockruntime.StartAsyncInvokeInput {
		in := startInput(novaReel, "", "x")
		f(in)
		return in
	}
	for _, tt := range []struct {
		name   string
		in     *bedrockruntime.StartAsyncInvokeInput
		code   string
		status int
	}{
		{"model ID with space", mod(func(in *bedrockruntime.StartAsyncInvokeInput) { in.ModelId = aws.String("amazon nova") }), "ValidationException", 400},
		{"model ID too long", mod(func(in *bedrockruntime.StartAsyncInvokeInput) { in.ModelId = aws.String(strings.Repeat("a", 257)) }), "ValidationException", 400},
		{"bad S3 URI", mod(func(in *bedrockruntime.StartAsyncInvokeInput) {
			in.OutputDataConfig = &types.AsyncInvokeOutputDataConfigMemberS3OutputDataConfig{Value: types.AsyncInvokeS3OutputDataConfig{S3Uri: aws.String("https://bucket/x")}}
		}), "ValidationException", 400},
		{"bad bucket owner", mod(func(in *bedrockruntime.StartAsyncInvokeInput) {
			in.OutputDataConfig = &types.AsyncInvokeOutputDataConfigMemberS3OutputDataConfig{Value: types.AsyncInvokeS3OutputDataConfig{S3Uri: aws.String("s3://bucket/x"), BucketOwner: aws.String("123")}}
		}), "ValidationException", 400},
		{"bad KMS key", mod(func(in *bedrockruntime.StartAsyncInvokeInput) {
			in.OutputDataConfig = &types.AsyncInvokeOutputDataConfigMemberS3OutputDataConfig{Value: types.AsyncInvokeS3OutputDataConfig{S3Uri: aws.String("s3://bucket/x"), KmsKeyId: aws.String("key")}}
		}), "ValidationException", 400},
		{"bad tag key", mod(func(in *bedrockruntime.StartAsyncInvokeInput) {
			in.Tags = []types.Tag{{Key: aws.String("a!"), Value: aws.String("v")}}
		}), "ValidationException", 400},
		{"token with space", mod(func(in *bedrockruntime.StartAsyncInvokeInput) { in.ClientRequestToken = aws.String("a b") }), "ValidationException", 400},
		{"fault model", mod(func(in *bedrockruntime.StartAsyncInvokeInput) { in.ModelId = aws.String(ModelQuota) }), "ServiceQuotaExceededException", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.StartAsyncInvoke(ctx, tt.in)
			if err == nil {
				t.Fatalf("StartAsyncInvoke succeeded, want %s", tt.code)
			}
			if code, status := apiError(t, err); code != tt.code || status != tt.status {
				t.Errorf("StartAsyncInvoke error = %s (HTTP %d), want %s (HTTP %d)", code, status, tt.code, tt.status)
			}
		})
	}
	for _, tt := range []struct{ name, body string }{
		{"no model input", `{"modelId":"m","outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://bucket/x"}}}`},
		{"null model input", `{"modelId":"m","modelInput":null,"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://bucket/x"}}}`},
		{"no output config", `{"modelId":"m","modelInput":{}}`},
		{"empty output config", `{"modelId":"m","modelInput":{},"outputDataConfig":{}}`},
		{"no model", `{"modelInput":{},"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://bucket/x"}}}`},
		{"empty token", `{"clientRequestToken":"","modelId":"m","modelInput":{},"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://bucket/x"}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, signedRequest(t, "POST", e.br.URL+"/async-invoke", []byte(tt.body), creds, "bedrock", "us-east-1", time.Now()))
			if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("X-Amzn-Errortype"), "ValidationException:") {
				t.Errorf("StartAsyncInvoke(%s) = %d %q %s, want 400 ValidationException", tt.body, resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), body)
			}
		})
	}
}

// listAll pages through ListAsyncInvokes with the SDK paginator and
// returns the invocation ARNs page by page.
func listAll(t *testing.T, client *bedrockruntime.Client, in *bedrockruntime.ListAsyncInvokesInput) [][]string {
	t.Helper()
	var pages [][]string
	p := bedrockruntime.NewListAsyncInvokesPaginator(client, in)
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("ListAsyncInvokes error = %v", err)
		}
		var page []string
		for _, s := range out.AsyncInvokeSummaries {
			page = append(page, aws.ToString(s.InvocationArn))
		}
		pages = append(pages, page)
	}
	return pages
}

func TestListAsyncInvokes(t *testing.T) {
	e := newEnv(t, Options{})
	client := e.bedrockClient(t, e.session(t, "alice", nil))
	ctx := context.Background()

	// Five jobs a second apart, and a minute between jobs 1 and 2: 0 and
	// 1 are completed, 2-4 in progress.
	var arns []string
	var submitted []time.Time
	for i := range 5 {
		e.clock.Advance(time.Second)
		defer e.clock.Advance(-time.Second)
		if i == 2 {
			e.clock.Advance(time.Minute)
			defer e.clock.Advance(-time.Minute)
		}
		out, err := client.StartAsyncInvoke(ctx, startInput(novaReel, "", "job"))
		if err != nil {
			t.Fatalf("StartAsyncInvoke error = %v", err)
		}
		arns = append(arns, aws.ToString(out.InvocationArn))
		got, err := client.GetAsyncInvoke(ctx, &bedrockruntime.GetAsyncInvokeInput{InvocationArn: out.InvocationArn})
		if err != nil {
			t.Fatalf("GetAsyncInvoke error = %v", err)
		}
		submitted = append(submitted, aws.ToTime(got.SubmitTime))
	}
	// Another account's job is never listed.
	other := e.bedrockClient(t, e.fake.RootCredentials("arn:aws:iam::210987654321:user/bob"))
	if _, err := other.StartAsyncInvoke(ctx, startInput(novaReel, "", "job")); err != nil {
		t.Fatalf("StartAsyncInvoke(other account) error = %v", err)
	}

	tests := []struct {
		name string
		in   bedrockruntime.ListAsyncInvokesInput
		want [][]string
	}{
		{"default: newest first, one page", bedrockruntime.ListAsyncInvokesInput{},
			[][]string{{arns[4], arns[3], arns[2], arns[1], arns[0]}}},
		{"pages of 2", bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(2)},
			[][]string{{arns[4], arns[3]}, {arns[2], arns[1]}, {arns[0]}}},
		{"ascending pages of 2", bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(2), SortOrder: types.SortOrderAscending, SortBy: types.SortAsyncInvocationBySubmissionTime},
			[][]string{{arns[0], arns[1]}, {arns[2], arns[3]}, {arns[4]}}},
		{"exact pages", bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(5)},
			[][]string{{arns[4], arns[3], arns[2], arns[1], arns[0]}}},
		{"completed", bedrockruntime.ListAsyncInvokesInput{StatusEquals: types.AsyncInvokeStatusCompleted},
			[][]string{{arns[1], arns[0]}}},
		{"in progress, pages of 1", bedrockruntime.ListAsyncInvokesInput{StatusEquals: types.AsyncInvokeStatusInProgress, MaxResults: aws.Int32(1)},
			[][]string{{arns[4]}, {arns[3]}, {arns[2]}}},
		{"failed", bedrockruntime.ListAsyncInvokesInput{StatusEquals: types.AsyncInvokeStatusFailed},
			[][]string{nil}},
		{"submitted strictly between", bedrockruntime.ListAsyncInvokesInput{SubmitTimeAfter: aws.Time(submitted[1]), SubmitTimeBefore: aws.Time(submitted[4])},
			[][]string{{arns[3], arns[2]}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if diff := cmp.Diff(tt.want, listAll(t, client, &in)); diff != "" {
				t.Errorf("ListAsyncInvokes pages mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a job started between pages appears on no later page", func(t *testing.T) {
		first, err := client.ListAsyncInvokes(ctx, &bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(2)})
		if err != nil {
			t.Fatalf("ListAsyncInvokes error = %v", err)
		}
		newJob, err := client.StartAsyncInvoke(ctx, startInput(novaReel, "", "late"))
		if err != nil {
			t.Fatalf("StartAsyncInvoke error = %v", err)
		}
		rest := listAll(t, client, &bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(2), NextToken: first.NextToken})
		want := [][]string{{arns[2], arns[1]}, {arns[0]}}
		if diff := cmp.Diff(want, rest); diff != "" {
			t.Errorf("pages after the first mismatch (-want +got), new job %s:\n%s", aws.ToString(newJob.InvocationArn), diff)
		}
	})

	t.Run("invalid queries", func(t *testing.T) {
		first, err := client.ListAsyncInvokes(ctx, &bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(1)})
		if err != nil {
			t.Fatalf("ListAsyncInvokes error = %v", err)
		}
		for _, tt := range []struct {
			name string
			in   bedrockruntime.ListAsyncInvokesInput
		}{
			{"maxResults 0", bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(0)}},
			{"maxResults 1001", bedrockruntime.ListAsyncInvokesInput{MaxResults: aws.Int32(1001)}},
			{"bad status", bedrockruntime.ListAsyncInvokesInput{StatusEquals: "Done"}},
			{"bad sortBy", bedrockruntime.ListAsyncInvokesInput{SortBy: "Model"}},
			{"bad sortOrder", bedrockruntime.ListAsyncInvokesInput{SortOrder: "Up"}},
			{"forged token", bedrockruntime.ListAsyncInvokesInput{NextToken: aws.String("MTIzLjQuYWJj")}},
			{"token for another sort order", bedrockruntime.ListAsyncInvokesInput{NextToken: first.NextToken, SortOrder: types.SortOrderAscending}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				in := tt.in
				_, err := client.ListAsyncInvokes(ctx, &in)
				if err == nil {
					t.Fatalf("ListAsyncInvokes succeeded, want ValidationException")
				}
				if code, status := apiError(t, err); code != "ValidationException" || status != 400 {
					t.Errorf("ListAsyncInvokes error = %s (HTTP %d), want ValidationException (HTTP 400)", code, status)
				}
			})
		}
		t.Run("another account's token", func(t *testing.T) {
			_, err := other.ListAsyncInvokes(ctx, &bedrockruntime.ListAsyncInvokesInput{NextToken: first.NextToken, MaxResults: aws.Int32(1)})
			if code, _ := apiError(t, err); code != "ValidationException" {
				t.Errorf("ListAsyncInvokes(other account) error = %v, want ValidationException", err)
			}
		})
	})

	var lists int
	for _, inv := range e.fake.Invocations() {
		if inv.Operation == "ListAsyncInvokes" {
			lists++
			if !strings.HasPrefix(inv.RequestURI, "/async-invoke") {
				t.Errorf("ListAsyncInvokes RequestURI = %q, want /async-invoke...", inv.RequestURI)
			}
		}
	}
	if lists == 0 {
		t.Errorf("no ListAsyncInvokes recorded")
	}
}

func TestAsyncRecordLimit(t *testing.T) {
	e := newEnv(t, Options{RecordLimit: 2})
	client := e.bedrockClient(t, e.fake.RootCredentials(testUserARN))
	ctx := context.Background()
	var arns []string
	for i := range 3 {
		out, err := client.StartAsyncInvoke(ctx, startInput(novaReel, "t"+string(rune('0'+i)), "x"))
		if err != nil {
			t.Fatalf("StartAsyncInvoke error = %v", err)
		}
		arns = append(arns, aws.ToString(out.InvocationArn))
	}
	if diff := cmp.Diff([][]string{{arns[2], arns[1]}}, listAll(t, client, &bedrockruntime.ListAsyncInvokesInput{})); diff != "" {
		t.Errorf("ListAsyncInvokes with RecordLimit 2 mismatch (-want +got):\n%s", diff)
	}
	// The dropped job's token is forgotten: reusing it starts a new job.
	out, err := client.StartAsyncInvoke(ctx, startInput(novaReel, "t0", "x"))
	if err != nil {
		t.Fatalf("StartAsyncInvoke error = %v", err)
	}
	if got := aws.ToString(out.InvocationArn); got == arns[0] {
		t.Errorf("StartAsyncInvoke(t0) = %q, the dropped job; want a new one", got)
	}
}
