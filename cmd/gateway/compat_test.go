package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// The compatibility suite runs real clients (npm packages pinned by
// compat/package-lock.json, installed by `npm ci --prefix compat`) against
// a gateway in front of the fake AWS, and checks through the fake that
// every call they made was billed to the caller's own session, and that
// the usage ledger agrees with the fake's bill.

// compatDir is the npm project holding the client scripts.
var compatDir = filepath.Join("..", "..", "compat")

// compatTimeout bounds one client run; Claude Code starts in about a
// second, the Node SDKs in less.
const compatTimeout = 90 * time.Second

// needCompat skips (outside CI) or fails (in CI) when the clients are not
// installed.
func needCompat(t *testing.T, bin string) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node on PATH")
	}
	if _, err := os.Stat(filepath.Join(compatDir, "node_modules", bin)); err != nil {
		missing = append(missing, filepath.Join("compat/node_modules", bin)+" (run `npm ci --prefix compat`)")
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("compatibility clients not installed: %s", strings.Join(missing, ", "))
	}
	t.Fatalf("compatibility clients not installed: %s", strings.Join(missing, ", "))
}

// clientEnv is the whole environment of a client process: nothing is
// inherited but PATH, so no AWS credential, profile or proxy setting of
// the machine (or the gateway's own credentials, which startEnv puts in
// this process's environment) reaches the client.
func clientEnv(t *testing.T, e *env, key string, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	u, err := url.Parse(e.baseURL)
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TMPDIR=" + home,
		"NODE_EXTRA_CA_CERTS=" + filepath.Join(e.dir, "cert.pem"),
		"AWS_REGION=" + testRegion,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "no-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"GW_URL=" + e.baseURL,
		"GW_HOST=" + u.Host,
		"GW_KEY=" + key,
	}, extra...)
}

// runClient runs argv in compat/ with env and returns its stdout; it fails
// the test, with stderr, if the client fails or overruns compatTimeout.
func runClient(t *testing.T, env []string, argv ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), compatTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = compatDir
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s ran in %v", strings.Join(argv, " "), time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("%s: not done within %v\nstdout:\n%s\nstderr:\n%s", argv[0], compatTimeout, stdout.Bytes(), stderr.Bytes())
	}
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

const (
	compatModel      = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
	compatCountModel = "anthropic.claude-3-5-haiku-20241022-v1:0"
	// compatNativeModel is served by Bedrock's own Chat Completions API.
	compatNativeModel = "openai.gpt-oss-20b-1:0"
	// compatEmbedModel is an embedding model, reached through InvokeModel.
	compatEmbedModel = "amazon.titan-embed-text-v2:0"
)

// runAWSSDK runs compat/aws-sdk.mjs: the AWS SDK for JavaScript v3 with
// its default configuration, endpoint and key from the environment.
func runAWSSDK(t *testing.T, e *env, key string) []byte {
	t.Helper()
	return runClient(t, clientEnv(t, e, key,
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME="+e.baseURL,
		"AWS_BEARER_TOKEN_BEDROCK="+key,
		"GW_MODEL="+compatModel,
		"GW_COUNT_MODEL="+compatCountModel,
	), "node", "aws-sdk.mjs")
}

// checkAWSSDK checks aws-sdk.mjs's output and calls.
func checkAWSSDK(t *testing.T, out []byte, invs []fakeaws.Invocation) {
	t.Helper()
	var got struct {
		Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream struct{ Text string }
		RequestHandler                                                       string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	// The default handler of client-bedrock-runtime speaks
	// HTTP/2 (h2 over TLS, h2c with prior knowledge over http).
	if got.RequestHandler != "NodeHttp2Handler" {
		t.Errorf("SDK request handler = %q, want NodeHttp2Handler (its default)", got.RequestHandler)
	}
	for op, text := range map[string]string{"Converse": got.Converse.Text, "ConverseStream": got.ConverseStream.Text, "InvokeModel": got.InvokeModel.Text, "InvokeModelWithResponseStream": got.InvokeModelWithResponseStream.Text} {
		if !strings.HasPrefix(strings.TrimSpace(text), fakeaws.ReplyText) {
			t.Errorf("%s text = %q, want %q…", op, text, fakeaws.ReplyText)
		}
	}
	// The model ID's ':' arrives escaped (smithy's
	// extendedEncodeURIComponent) and reaches Bedrock intact.
	for _, inv := range invs {
		if inv.Operation != "CountTokens" && inv.ModelID != compatModel {
			t.Errorf("%s model at Bedrock = %q, want %q", inv.Operation, inv.ModelID, compatModel)
		}
	}
}

func TestCompatClients(t *testing.T) {
	tests := []struct {
		name string
		// bin is the path under compat/node_modules whose presence says
		// the client is installed.
		bin  string
		user devUser
		// run runs the client against e as user and returns its output.
		run func(t *testing.T, e *env, key string) []byte
		// wantOps are the Bedrock operations the client must make, in
		// order; nil: check checks them.
		wantOps []string
		// check, if set, checks the client's output and the calls.
		check func(t *testing.T, out []byte, invs []fakeaws.Invocation)
		// plain serves the gateway over plain HTTP (h2c) instead of TLS.
		plain bool
		// config is added to the gateway's configuration.
		config string
		// ignore marks the client's ledger records that are not Bedrock
		// calls (see assertAttributed).
		ignore func(usage.Record) bool
		// probes is how many control-plane probes the client may make
		// besides its model calls (each answered 404 by the gateway).
		probes int
	}{
		{
			name:    "aws-sdk-js-v3",
			bin:     "@aws-sdk/client-bedrock-runtime",
			user:    alice,
			run:     runAWSSDK,
			wantOps: []string{"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream", "CountTokens"},
			check:   checkAWSSDK,
		},
		{
			name: "aws-sdk-js-v3-h2c",
			// Over plain HTTP the SDK's default handler (NodeHttp2Handler)
			// speaks h2c with prior knowledge.
			plain:   true,
			bin:     "@aws-sdk/client-bedrock-runtime",
			user:    carol,
			run:     runAWSSDK,
			wantOps: []string{"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream", "CountTokens"},
			check:   checkAWSSDK,
		},
		{
			name: "anthropic-bedrock-sdk",
			bin:  "@anthropic-ai/bedrock-sdk",
			user: bob,
			run: func(t *testing.T, e *env, key string) []byte {
				return runClient(t, clientEnv(t, e, key,
					"AWS_BEARER_TOKEN_BEDROCK="+key,
					"GW_MODEL="+compatModel,
				), "node", "anthropic-bedrock.mjs")
			},
			wantOps: []string{"InvokeModel", "InvokeModelWithResponseStream"},
			check: func(t *testing.T, out []byte, invs []fakeaws.Invocation) {
				var got struct{ Create, Stream struct{ Text string } }
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("client output %q: %v", out, err)
				}
				for op, text := range map[string]string{"create": got.Create.Text, "stream": got.Stream.Text} {
					if !strings.HasPrefix(strings.TrimSpace(text), fakeaws.ReplyText) {
						t.Errorf("%s text = %q, want %q…", op, text, fakeaws.ReplyText)
					}
				}
				// This SDK leaves ':' unescaped in the path.
				for _, inv := range invs {
					if inv.ModelID != compatModel {
						t.Errorf("%s model at Bedrock = %q, want %q", inv.Operation, inv.ModelID, compatModel)
					}
				}
			},
		},
		{
			name: "claude-code",
			bin:  "@anthropic-ai/claude-code/bin/claude.exe",
			user: carol,
			run: func(t *testing.T, e *env, key string) []byte {
				return runClient(t, clientEnv(t, e, key,
					"CLAUDE_CODE_USE_BEDROCK=1",
					"ANTHROPIC_BEDROCK_BASE_URL="+e.baseURL,
					"CLAUDE_CODE_SKIP_BEDROCK_AUTH=1",
					"ANTHROPIC_AUTH_TOKEN="+key,
					"ANTHROPIC_MODEL="+compatModel,
					"ANTHROPIC_DEFAULT_HAIKU_MODEL="+compatCountModel,
					"DISABLE_TELEMETRY=1",
					"DISABLE_ERROR_REPORTING=1",
					"DISABLE_AUTOUPDATER=1",
					"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
				), filepath.Join("node_modules", ".bin", "claude"), "-p", "say hi", "--output-format", "json", "--max-turns", "1")
			},
			// At startup Claude Code's embedded AWS SDK sends a best-effort
			// GET /inference-profiles?type=SYSTEM_DEFINED (a control-plane
			// call) without any Authorization header, even with
			// ANTHROPIC_AUTH_TOKEN set; the gateway answers it with a clean
			// 404 (no identity needed, never reaches AWS) and Claude Code
			// carries on.
			probes: 1,
			check: func(t *testing.T, out []byte, invs []fakeaws.Invocation) {
				var got struct {
					Subtype string `json:"subtype"`
					IsError bool   `json:"is_error"`
					Result  string `json:"result"`
				}
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("claude output %q: %v", out, err)
				}
				if got.IsError || !strings.Contains(got.Result, fakeaws.ReplyText) {
					t.Errorf("claude result = {subtype %q is_error %v result %q}, want success with %q", got.Subtype, got.IsError, got.Result, fakeaws.ReplyText)
				}
				// Claude Code uses the Invoke API only.
				var sawModelCall bool
				for _, inv := range invs {
					t.Logf("claude: %s %s", inv.Operation, inv.ModelID)
					switch inv.Operation {
					case "InvokeModel", "InvokeModelWithResponseStream":
						sawModelCall = true
					case "CountTokens":
					default:
						t.Errorf("claude made a %q call", inv.Operation)
					}
				}
				if !sawModelCall {
					t.Error("claude made no InvokeModel call")
				}
			},
		},
		{
			name: "openai-node",
			bin:  "openai",
			user: alice,
			// An alias, so the OpenAI model name differs from the ID.
			config: "openai: {aliases: {sonnet: " + compatModel + "}, models: [sonnet, " + compatNativeModel + "]}",
			run: func(t *testing.T, e *env, key string) []byte {
				return runClient(t, clientEnv(t, e, key,
					"GW_BASE="+e.baseURL,
					"GW_KEY="+key,
					"GW_MODEL=sonnet",
					"GW_NATIVE_MODEL="+compatNativeModel,
					"GW_EMBED_MODEL="+compatEmbedModel,
				), "node", "openai.mjs")
			},
			// Titan embeds one text per call: two texts, two calls.
			wantOps: []string{"Converse", "ConverseStream", "Converse", "Converse", "ConverseStream", "ChatCompletions", "InvokeModel", "InvokeModel"},
			ignore:  openAINotBilled,
			check:   checkOpenAI,
		},
		{
			name:   "langchain-openai",
			bin:    "@langchain/openai",
			user:   bob,
			config: "openai: {aliases: {sonnet: " + compatModel + "}}",
			run: func(t *testing.T, e *env, key string) []byte {
				return runClient(t, clientEnv(t, e, key, "GW_BASE="+e.baseURL, "GW_KEY="+key, "GW_MODEL=sonnet"), "node", "langchain-openai.mjs")
			},
			wantOps: []string{"Converse", "ConverseStream", "Converse"},
			check: func(t *testing.T, out []byte, invs []fakeaws.Invocation) {
				var got struct {
					Invoke struct {
						Text  string
						Usage struct {
							Input  int64 `json:"input_tokens"`
							Output int64 `json:"output_tokens"`
						}
					}
					Stream struct {
						Text  string
						Usage *struct {
							Output int64 `json:"output_tokens"`
						}
					}
					Tool struct {
						Calls []struct {
							Name string
							Args map[string]string
						}
					}
				}
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("client output %q: %v", out, err)
				}
				if !strings.HasPrefix(got.Invoke.Text, fakeaws.ReplyText) || got.Invoke.Usage.Output == 0 {
					t.Errorf("invoke = %+v", got.Invoke)
				}
				if !strings.HasPrefix(got.Stream.Text, fakeaws.ReplyText) || got.Stream.Usage == nil || got.Stream.Usage.Output == 0 {
					t.Errorf("stream = %+v", got.Stream)
				}
				if len(got.Tool.Calls) != 1 || got.Tool.Calls[0].Name != "get_weather" || got.Tool.Calls[0].Args["city"] != "fake" {
					t.Errorf("tool calls = %+v", got.Tool.Calls)
				}
			},
		},
		{
			name: "langchain-aws",
			bin:  "@langchain/aws",
			user: bob,
			run: func(t *testing.T, e *env, key string) []byte {
				return runClient(t, clientEnv(t, e, key,
					"AWS_BEARER_TOKEN_BEDROCK="+key,
					"GW_MODEL="+compatModel,
				), "node", "langchain.mjs")
			},
			wantOps: []string{"Converse", "ConverseStream"},
			check: func(t *testing.T, out []byte, invs []fakeaws.Invocation) {
				var got struct {
					Invoke struct {
						Text  string
						Usage struct {
							InputTokens int64 `json:"input_tokens"`
						}
					}
					Stream struct{ Text string }
				}
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("client output %q: %v", out, err)
				}
				for op, text := range map[string]string{"invoke": got.Invoke.Text, "stream": got.Stream.Text} {
					if !strings.HasPrefix(strings.TrimSpace(text), fakeaws.ReplyText) {
						t.Errorf("%s text = %q, want %q…", op, text, fakeaws.ReplyText)
					}
				}
				if got.Invoke.Usage.InputTokens == 0 {
					t.Errorf("invoke usage_metadata.input_tokens = 0, want > 0")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			needCompat(t, tt.bin)
			// Two users hold keys; only tt.user calls.
			other := alice
			if tt.user == alice {
				other = bob
			}
			e := startEnvWith(t, extraConfig{plain: tt.plain, top: tt.config}, tt.user, other)
			out := tt.run(t, e, e.keys[tt.user.user])
			e.stop() // flushes the ledger

			invs := e.fake.Invocations()
			if len(invs) == 0 {
				t.Fatal("the client made no Bedrock call")
			}
			if tt.wantOps != nil {
				var ops []string
				for _, inv := range invs {
					ops = append(ops, inv.Operation)
				}
				if diff := cmp.Diff(tt.wantOps, ops); diff != "" {
					t.Errorf("Bedrock operations (-want +got):\n%s", diff)
				}
			}
			var ignore []func(usage.Record) bool
			if tt.ignore != nil {
				ignore = append(ignore, tt.ignore)
			}
			assertAttributed(t, e, tt.user, invs, tt.probes, ignore...)
			if tt.check != nil {
				tt.check(t, out, invs)
			}
			// No gateway key reached Bedrock, in any header.
			for _, inv := range invs {
				for h, vs := range inv.Headers {
					for _, v := range vs {
						if strings.Contains(v, e.keys[tt.user.user]) {
							t.Errorf("%s: header %s carried the gateway key to Bedrock", inv.Operation, h)
						}
					}
				}
			}
		})
	}
}

// assertAttributed checks that every call reached Bedrock signed with u's
// own session, with u's tags, and that the usage ledger's token totals
// for u's session equal the fake's bill for it.
// Up to probes ledger records may be control-plane probes (404
// InferenceProfiles, no user, no tokens).
// Records ignore reports true for (calls that never reach Bedrock, such
// as the OpenAI models list or a refused key) are not counted.
func assertAttributed(t *testing.T, e *env, u devUser, invs []fakeaws.Invocation, probes int, ignore ...func(usage.Record) bool) {
	t.Helper()
	calls := e.fake.AssumeRoleCalls()
	if len(calls) != 1 {
		t.Fatalf("AssumeRole calls = %d, want 1", len(calls))
	}
	session := calls[0].SessionName
	if u.user != carol.user && session != u.user {
		t.Errorf("session name = %q, want %q", session, u.user)
	}
	if u.user == carol.user && !strings.HasPrefix(session, "carol_with_spaces=") {
		t.Errorf("session name = %q, want carol_with_spaces=<hash>", session)
	}
	for i, inv := range invs {
		if inv.PrincipalARN != sessionARN(session) || inv.SessionName != session {
			t.Errorf("call %d (%s): billed to %q session %q, want %q", i, inv.Operation, inv.PrincipalARN, inv.SessionName, sessionARN(session))
		}
		if diff := cmp.Diff(wantTags(u), inv.Tags); diff != "" {
			t.Errorf("call %d (%s): session tags (-want +got):\n%s", i, inv.Operation, diff)
		}
		if inv.Status != http.StatusOK || inv.StreamError != "" {
			t.Errorf("call %d (%s): status %d stream error %q, want 200", i, inv.Operation, inv.Status, inv.StreamError)
		}
	}

	// The ledger's tokens for the session equal the bill's.
	billed := billedTokens(e.fake.BillingRows())
	for principal := range billed {
		if principal != sessionARN(session) {
			t.Errorf("tokens billed to another principal: %s %+v", principal, billed[principal])
		}
	}
	bill := billed[sessionARN(session)]
	// Claude Code marks its prompt for caching: its input is billed as
	// cache writes.
	if bill.Input+bill.CacheRead+bill.CacheWrite == 0 || bill.Output == 0 {
		t.Errorf("bill for %s = %+v, want input and output tokens", session, bill)
	}
	var ledger usage.Tokens
	unauthenticated, records, embeddingRecords := 0, 0, 0
	for _, r := range readLedger(t, e.ledger) {
		if r.User == "" && r.Operation == "InferenceProfiles" && r.Status == http.StatusNotFound && r.Tokens == (usage.Tokens{}) && unauthenticated < probes {
			unauthenticated++
			continue
		}
		if slices.ContainsFunc(ignore, func(f func(usage.Record) bool) bool { return f(r) }) {
			continue
		}
		if r.SessionName != session || r.User != u.user {
			t.Errorf("ledger record %s (%s, status %d): user %q session %q, want %q %q", r.RequestID, r.Operation, r.Status, r.User, r.SessionName, u.user, session)
		}
		records++
		if r.Operation == "Embeddings" {
			embeddingRecords++
		}
		if r.Operation == "CountTokens" {
			continue // never billed
		}
		ledger = ledger.Add(r.Tokens)
	}
	// One record per Bedrock call, but one per OpenAI embeddings request,
	// which makes an InvokeModel call per Titan text.
	want := len(invs)
	if embeddingRecords > 0 {
		want += embeddingRecords
		for _, inv := range invs {
			if inv.Operation == "InvokeModel" && inv.ModelID == compatEmbedModel {
				want--
			}
		}
	}
	if records != want {
		t.Errorf("ledger has %d records for %s, want one per Bedrock call (%d calls, %d embeddings requests)", records, session, len(invs), embeddingRecords)
	}
	if ledger != bill {
		t.Errorf("ledger tokens for %s = %+v, want the bill's %+v", session, ledger, bill)
	}
}

// openAINotBilled are the OpenAI clients' calls that never reach Bedrock:
// the models list, /gateway/whoami and the call with a bad key.
func openAINotBilled(r usage.Record) bool {
	return r.Tokens == (usage.Tokens{}) && ((r.Operation == "ListModels" || r.Operation == "WhoAmI") && r.Status == http.StatusOK ||
		r.User == "" && r.Status == http.StatusUnauthorized)
}

// checkOpenAI checks the OpenAI SDK's view of its calls.
func checkOpenAI(t *testing.T, out []byte, invs []fakeaws.Invocation) {
	t.Helper()
	type usageJSON struct {
		Prompt     int64 `json:"prompt_tokens"`
		Completion int64 `json:"completion_tokens"`
	}
	var got struct {
		Chat struct {
			Text   string
			Usage  usageJSON
			Finish string
		}
		Stream struct {
			Text  string
			Usage *usageJSON
		}
		Tools struct {
			Finish, Name, Answer, AnswerFinish string
			Arguments                          map[string]string
		}
		ToolsStream struct {
			Name, Finish string
			Arguments    map[string]string
		}
		Native struct {
			Text  string
			Usage usageJSON
		}
		Embeddings struct {
			Count int
			Dims  []int
			Usage usageJSON
		}
		Models []string
		BadKey string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if !strings.HasPrefix(got.Chat.Text, fakeaws.ReplyText) || got.Chat.Finish != "stop" || got.Chat.Usage.Completion == 0 {
		t.Errorf("chat = %+v", got.Chat)
	}
	if !strings.HasPrefix(got.Stream.Text, fakeaws.ReplyText) || got.Stream.Usage == nil || got.Stream.Usage.Completion == 0 {
		t.Errorf("stream = %+v", got.Stream)
	}
	if got.Tools.Finish != "tool_calls" || got.Tools.Name != "get_weather" || got.Tools.Arguments["city"] != "fake" ||
		got.Tools.AnswerFinish != "stop" || got.Tools.Answer == "" {
		t.Errorf("tool round trip = %+v", got.Tools)
	}
	if got.ToolsStream.Finish != "tool_calls" || got.ToolsStream.Name != "get_weather" || got.ToolsStream.Arguments["city"] != "fake" {
		t.Errorf("streamed tool call = %+v", got.ToolsStream)
	}
	if got.Native.Text == "" || got.Native.Usage.Completion == 0 {
		t.Errorf("native = %+v", got.Native)
	}
	if !slices.Equal(got.Models, []string{compatNativeModel, "sonnet"}) {
		t.Errorf("models = %v, want %v", got.Models, []string{compatNativeModel, "sonnet"})
	}
	if got.Embeddings.Count != 2 || len(got.Embeddings.Dims) != 2 || got.Embeddings.Dims[0] == 0 || got.Embeddings.Usage.Prompt == 0 {
		t.Errorf("embeddings = %+v", got.Embeddings)
	}
	if got.BadKey != "AuthenticationError" {
		t.Errorf("bad key raised %q, want the SDK's AuthenticationError", got.BadKey)
	}
	for _, inv := range invs {
		want := compatModel
		switch inv.Operation {
		case "ChatCompletions":
			want = compatNativeModel
		case "InvokeModel":
			want = compatEmbedModel
		}
		if inv.ModelID != want {
			t.Errorf("%s reached Bedrock for model %q, want %q", inv.Operation, inv.ModelID, want)
		}
	}
}
