// Package fakeaws is an in-process emulation of the two AWS services the
// gateway talks to: STS (AssumeRole, GetCallerIdentity; Query protocol) and
// Bedrock Runtime (Converse, ConverseStream, InvokeModel,
// InvokeModelWithResponseStream, CountTokens, ApplyGuardrail,
// StartAsyncInvoke, GetAsyncInvoke, ListAsyncInvokes; REST-JSON and
// event-stream). InvokeModelWithBidirectionalStream, which needs HTTP/2
// and a signed input event stream, is answered like an unknown path (404
// UnknownOperationException).
//
// It is the test double for the whole repository and it powers
// `gateway dev`, so it is faithful on the wire: the real aws-sdk-go-v2
// clients talk to it unchanged, every request must carry a SigV4 signature
// made with credentials this fake issued (verified independently of the SDK
// signer, from the SigV4 specification, query string included), and errors
// have the codes, HTTP statuses and body shapes AWS uses. Inputs are
// validated against the lengths, patterns and enums of the Bedrock Runtime
// service model.
//
// What it records is what a test asserts on: every AssumeRole received
// (AssumeRoleCalls), every Bedrock call accepted (Invocations, with the
// signing principal, the request metadata and, per operation, the model,
// guardrail or async invocation ARN), and the CUR 2.0-like billing rows
// those calls produce (BillingRows), attributed to the IAM principal whose
// credentials signed the call. That is how tests prove the gateway signs
// each Bedrock call with the caller's own session and never with its own
// identity.
//
// A Server is safe for concurrent use and starts no goroutines.
//
// # Determinism
//
// Bedrock answers every inference request with ReplyText. Token counts
// are deterministic: input tokens are the whitespace-separated words of
// all text in the request (messages and system prompt; for a
// non-Anthropic InvokeModel body, every JSON string), at least 1; output
// tokens are the words of the reply. Special model IDs (ModelThrottle,
// ModelStreamException and the other Model* constants) make Bedrock fail
// on purpose.
//
// Prompt caching: a Converse "cachePoint" block, or "cache_control" on an
// Anthropic InvokeModel block, is a checkpoint. The first request with a
// given prefix (same account, model and content before the checkpoint, in
// the order tools, system, messages; cache markers themselves excluded)
// writes the words before the checkpoint to the cache; a later request
// whose prompt starts with that prefix, within its TTL (5 minutes, or
// "1h"; refreshed on use; measured with Options.Now), reads them if the
// prefix ends at one of its checkpoints or at most 20 blocks before one,
// as Anthropic's lookback does. With several checkpoints the longest
// cached prefix is read and the rest written. Input tokens are then the
// words after the last checkpoint. Converse reports cacheReadInputTokens,
// cacheWriteInputTokens and cacheDetails (totalTokens includes them);
// Anthropic bodies report cache_read_input_tokens and
// cache_creation_input_tokens (always present, 0 without checkpoints);
// InvokeModel adds the X-Amzn-Bedrock-Cache-{Read,Write}-Input-Token-Count
// headers, and streams add cacheRead/WriteInputTokenCount to
// amazon-bedrock-invocationMetrics, when the request has a checkpoint.
// Unlike Claude, the fake caches prefixes of any length (no 1,024-token
// minimum). CountTokens ignores the cache.
//
// ApplyGuardrail applies one emulated guardrail (see GuardrailBlockedWord)
// and reports one content and one word policy unit per started 1,000
// characters of each text block. StartAsyncInvoke runs nothing: a job is
// InProgress for Options.AsyncInvokeDuration, then Completed.
//
// Secrets never leave the fake except inside the STS response that issues
// them: error bodies do not echo signatures, keys, tokens or request
// metadata, and recorded request headers have the Authorization signature
// and the session token redacted.
package fakeaws

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// AccountID is the account the fake's roles and sessions live in.
	// Default "123456789012".
	AccountID string
	// Region is the only region accepted in SigV4 credential scopes and the
	// source of the billing usage-type prefix. Default "us-east-1".
	Region string
	// Now is the clock used to issue expirations, check expiry, check
	// X-Amz-Date skew, age prompt-cache entries and advance async
	// invocations. Default time.Now. Tests that need to expire
	// credentials should pass a clock that is time.Now plus an adjustable
	// offset: the SDK signs with the real clock, and the fake refuses
	// signatures more than 5 minutes away from Now.
	Now func() time.Time
	// Roles lists the role ARNs that may be assumed, e.g.
	// "arn:aws:iam::123456789012:role/BedrockInvocationRole". AssumeRole on
	// any other role fails with 403 AccessDenied. Every role has the IAM
	// default MaxSessionDuration of one hour.
	Roles []string
	// BeforeEvent, if set, is called before the fake Bedrock writes stream
	// event i (0-based, counting exception frames too) of a streaming
	// response, after event i-1 has been written and flushed. op is the
	// operation name ("ConverseStream" or "InvokeModelWithResponseStream").
	// Tests use it to hold event 2 until the client has decoded event 1.
	// ctx is the request's context; a hook that blocks should also watch
	// ctx.Done().
	BeforeEvent func(ctx context.Context, op string, i int)
	// SessionLifetime, if set, caps the lifetime of issued session
	// credentials below the requested DurationSeconds: STS may return an
	// Expiration sooner than asked for, and callers must honour it.
	SessionLifetime time.Duration
	// RecordLimit, if positive, bounds the memory a long-running fake
	// (`gateway dev`) spends on records: AssumeRoleCalls and Invocations
	// keep only the most recent RecordLimit entries, and only the most
	// recent RecordLimit async invocations are kept. BillingRows always
	// covers every call. Zero keeps everything, which tests want.
	RecordLimit int
	// AsyncInvokeDuration is how long, by Now, an async invocation stays
	// InProgress before it is Completed. Default one minute, which a
	// test can pass by advancing its clock without leaving the 5-minute
	// signature window.
	AsyncInvokeDuration time.Duration
}

// Fault is a failure injected into STS by a hook installed with
// FailAssumeRole.
type Fault struct {
	// Code is the STS error code, e.g. "Throttling".
	Code string
	// Status is the HTTP status, e.g. 400. Zero means 400.
	Status int
	// Message is the error message. Empty means a default for well-known
	// codes ("Rate exceeded" for Throttling) or the code itself.
	Message string
}

// Server is the emulated AWS account. Create it with New.
type Server struct {
	opts  Options
	roles map[string]bool

	mu           sync.Mutex
	creds        map[string]*credential // by access key ID
	assumeCalls  []AssumeRoleCall
	invocations  []Invocation
	billing      map[billingKey]*BillingRow
	daily        map[dailyKey]*BillLine
	assumeFailer func(context.Context, AssumeRoleCall) *Fault
	// promptCache holds the cached prompt prefixes by key.
	promptCache map[string]cacheEntry
	// asyncJobs holds async invocations by ARN; asyncOrder in submission
	// order; asyncTokens maps account+"\x00"+clientRequestToken to an ARN.
	asyncJobs   map[string]*asyncJob
	asyncOrder  []*asyncJob
	asyncTokens map[string]string
	asyncSeq    int64
}

// credential is what the fake knows about an access key it issued.
type credential struct {
	accessKeyID  string
	secret       string
	sessionToken string    // "" for long-term (root) credentials
	expires      time.Time // zero for long-term credentials

	// principalARN is what GetCallerIdentity and billing report:
	// arn:aws:sts::ACCT:assumed-role/ROLE/SESSION for sessions.
	principalARN string
	userID       string
	account      string
	roleARN      string // the assumed role; "" for root credentials
	sessionName  string
	tags         map[string]string
	// chained reports whether an AssumeRole made with these credentials is
	// role chaining (capped at one hour).
	chained bool
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	if opts.AccountID == "" {
		opts.AccountID = "123456789012"
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AsyncInvokeDuration <= 0 {
		opts.AsyncInvokeDuration = defaultAsyncInvokeDuration
	}
	s := &Server{
		opts:        opts,
		roles:       make(map[string]bool, len(opts.Roles)),
		creds:       make(map[string]*credential),
		billing:     make(map[billingKey]*BillingRow),
		daily:       make(map[dailyKey]*BillLine),
		promptCache: make(map[string]cacheEntry),
		asyncJobs:   make(map[string]*asyncJob),
		asyncTokens: make(map[string]string),
	}
	for _, r := range opts.Roles {
		s.roles[r] = true
	}
	return s
}

// RootCredentials creates long-term credentials (an "AKIA" access key, no
// session token, no expiry) for an IAM principal such as
// "arn:aws:iam::123456789012:role/GatewayRole" or an IAM user. They may
// call STS. Bedrock calls signed with them are accepted but recorded as
// billed to principalARN, so tests can assert the gateway never used its
// own identity for Bedrock. A principal whose ARN contains ":role/" or
// ":assumed-role/" is treated as a role session, so AssumeRole from it is
// role chaining.
func (s *Server) RootCredentials(principalARN string) aws.Credentials {
	c := &credential{
		secret:       randomSecret(),
		principalARN: principalARN,
		account:      arnAccount(principalARN, s.opts.AccountID),
		chained:      strings.Contains(principalARN, ":role/") || strings.Contains(principalARN, ":assumed-role/"),
	}
	if c.chained {
		c.userID = stableID("AROA", principalARN)
	} else {
		c.userID = stableID("AIDA", principalARN)
	}
	s.mu.Lock()
	c.accessKeyID = s.newAccessKeyIDLocked("AKIA")
	s.creds[c.accessKeyID] = c
	s.mu.Unlock()
	return aws.Credentials{
		AccessKeyID:     c.accessKeyID,
		SecretAccessKey: c.secret,
		Source:          "fakeaws.RootCredentials",
	}
}

// FailAssumeRole installs f, which is called for every AssumeRole whose
// signature verified, before the request is validated. If f returns a
// non-nil Fault, STS answers with it and the call is recorded with that
// error code. f may block (to emulate a slow STS) and should then watch
// ctx, the request's context. Pass nil to remove the hook.
func (s *Server) FailAssumeRole(f func(ctx context.Context, call AssumeRoleCall) *Fault) {
	s.mu.Lock()
	s.assumeFailer = f
	s.mu.Unlock()
}

// Handler serves both services on one listener, as `gateway dev` needs:
// requests to "/" go to STS, everything else to Bedrock Runtime.
func (s *Server) Handler() http.Handler {
	sts, br := s.STSHandler(), s.BedrockHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" || r.URL.Path == "" {
			sts.ServeHTTP(w, r)
			return
		}
		br.ServeHTTP(w, r)
	})
}

// lookup returns a copy of the credential for accessKeyID, or nil.
func (s *Server) lookup(accessKeyID string) *credential {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.creds[accessKeyID]
	if c == nil {
		return nil
	}
	cp := *c
	return &cp
}

// newAccessKeyIDLocked returns an unused access key ID: prefix plus 16
// upper-case alphanumerics (20 characters, like AWS).
func (s *Server) newAccessKeyIDLocked(prefix string) string {
	for {
		id := prefix + randomString(16, upperAlnum)
		if _, dup := s.creds[id]; !dup {
			return id
		}
	}
}

const (
	upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	secretAlph = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// randomString returns n characters drawn uniformly from alphabet, whose
// length must divide 256 evenly or be small enough that the bias does not
// matter for a test double.
func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error.
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// randomSecret returns a 40-character secret access key, like AWS.
func randomSecret() string { return randomString(40, secretAlph) }

// randomSessionToken returns an opaque session token of AWS-like length.
func randomSessionToken() string {
	b := make([]byte, 300)
	_, _ = rand.Read(b)
	return "FwoGZXIvYXdzEFAKE" + base64.StdEncoding.EncodeToString(b)
}

// newRequestID returns a random UUID (version 4), the shape of AWS request IDs.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0x0f])
	}
	return string(out)
}

// stableID derives a deterministic unique ID (prefix + 17 upper-case
// characters, 21 in all like AWS role and user IDs) from key.
func stableID(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	return prefix + base32.StdEncoding.EncodeToString(sum[:])[:17]
}

// arnAccount returns the account field of an ARN, or def if there is none.
func arnAccount(arn, def string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) == 6 && parts[4] != "" {
		return parts[4]
	}
	return def
}
