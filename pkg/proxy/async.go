package proxy

// Ownership of asynchronous invocations. Every caller's session is an
// assumed role of the same account, and Bedrock shows every job of the
// account to anyone who may call GetAsyncInvoke or ListAsyncInvokes. So
// the gateway remembers who started each job and shows a caller only its
// own:
//
//   - StartAsyncInvoke: once Bedrock answers 200, its invocationArn is
//     recorded with the caller as owner, before the answer is relayed, so
//     that a Get sent the moment the client has the ARN finds it. The
//     answer itself is relayed unchanged.
//   - GetAsyncInvoke: an invocation the caller does not own (another
//     caller's, or one that does not exist) is answered 404 before any STS
//     or Bedrock call, with one answer for both, so that it tells nothing
//     about other callers' jobs.
//   - ListAsyncInvokes: Bedrock's page is filtered to the caller's own
//     jobs; nextToken is kept, so a page may hold fewer jobs than
//     maxResults, or none, while there are more.
//
// The owner is the caller's session as AWS knows it: role ARN and
// RoleSessionName, which together name the assumed-role principal Bedrock
// bills for the job. Session names are unique per caller by construction
// (pkg/tenancy), so two callers never share an owner, and a caller keeps
// its jobs across team changes, key rotations and restarts; a caller whose
// role changes (a per-team or per-tenant role) no longer sees the jobs it
// started under the old one.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// AsyncOwners remembers which session started each asynchronous
// invocation (pkg/asyncjobs is the implementation). Entries may expire:
// an invocation whose record has gone is treated as not the caller's.
type AsyncOwners interface {
	// Owner returns the owner recorded for arn; ok is false if there is
	// none. An error means the store could not be asked.
	Owner(ctx context.Context, arn string) (owner string, ok bool, err error)
	// Record notes that owner started arn. The first owner recorded
	// keeps an invocation: recording another one is an error.
	Record(ctx context.Context, arn, owner string) error
}

const (
	// maxStartAsyncAnswer bounds the StartAsyncInvoke answer read to
	// record its ARN ({"invocationArn": ...}, an ARN of at most 2048
	// characters); a larger one is relayed unread.
	maxStartAsyncAnswer = 64 << 10
	// maxListAsyncAnswer bounds the ListAsyncInvokes page the gateway
	// filters: at most 1000 summaries (MaxResults), each a few KiB at
	// most (ARNs of 2048, a failure message of 2048, an S3 URI of 1024
	// and a KMS key of 2048 characters). A larger page is refused, never
	// relayed unfiltered.
	maxListAsyncAnswer = 16 << 20
	// asyncRecordTimeout bounds recording a started job's owner. The
	// record is made even if the client has gone: the job runs anyway.
	asyncRecordTimeout = 5 * time.Second
)

// asyncOwner is the owner of the asynchronous invocations a session
// starts: role ARN and session name, joined by a space, which neither
// contains (IAM role ARNs and RoleSessionName allow no spaces).
func asyncOwner(spec *tenancy.SessionSpec) string {
	return spec.RoleARN + " " + spec.SessionName
}

func isAsyncOp(op string) bool {
	return op == opStartAsyncInvoke || op == opGetAsyncInvoke || op == opListAsyncInvokes
}

// checkAsyncOwner is prepare's step for the async operations, after the
// caller's session is known and before any credential is fetched: they
// are refused when no ownership store is configured, and a
// GetAsyncInvoke of an invocation the caller does not own is answered
// here, as one that does not exist.
func (p *Proxy) checkAsyncOwner(ctx context.Context, op string, t target, spec *tenancy.SessionSpec) *Error {
	if !isAsyncOp(op) {
		return nil
	}
	if p.cfg.AsyncOwners == nil {
		return errAsyncDisabled()
	}
	if op != opGetAsyncInvoke {
		return nil
	}
	owner, ok, err := p.cfg.AsyncOwners.Owner(ctx, t.invocationARN)
	if err != nil {
		p.cfg.Metrics.asyncOwnershipError(op)
		return errAsyncOwnersUnavailable(err)
	}
	if !ok || owner != asyncOwner(spec) {
		return errAsyncNotFound()
	}
	return nil
}

// modifyResponse runs on Bedrock's response before it is relayed: the tap
// first, so that the idle timer guards the reads below, then the async
// operations' ownership steps on a successful answer. An *Error it
// returns is the client's answer (see proxyError).
func (p *Proxy) modifyResponse(resp *http.Response) error {
	if err := p.tapResponse(resp); err != nil {
		return err
	}
	st := stateFrom(resp.Request.Context())
	if st == nil || st.out == nil || st.spec == nil || resp.StatusCode != http.StatusOK || p.cfg.AsyncOwners == nil {
		return nil
	}
	switch st.op {
	case opStartAsyncInvoke:
		return p.recordAsyncStart(resp, st)
	case opListAsyncInvokes:
		return p.filterAsyncList(resp, st)
	}
	return nil
}

// proxyError maps an error of the upstream exchange to the client's
// answer: an *Error from modifyResponse as it is, anything else by
// upstreamError.
func proxyError(ctx context.Context, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return upstreamError(ctx, err)
}

// recordAsyncStart records the invocation Bedrock started as the
// caller's, then relays Bedrock's answer byte for byte. Bedrock has
// started (and bills) the job whatever happens here, so a record that
// fails does not fail the answer: it is logged as an error and counted,
// and the job's owner cannot see it.
func (p *Proxy) recordAsyncStart(resp *http.Response, st *reqState) error {
	body, complete, err := readAtMost(resp.Body, maxStartAsyncAnswer)
	if err != nil { // forward closes resp.Body
		p.unrecordedAsync(resp.Request.Context(), st, "", fmt.Errorf("read StartAsyncInvoke answer: %w", err))
		return err
	}
	if !complete {
		resp.Body = &replayBody{r: io.MultiReader(bytes.NewReader(body), resp.Body), orig: resp.Body}
		p.unrecordedAsync(resp.Request.Context(), st, "", fmt.Errorf("StartAsyncInvoke answer larger than %d bytes", maxStartAsyncAnswer))
		return nil
	}
	resp.Body = &replayBody{r: bytes.NewReader(body), orig: resp.Body}
	var started struct {
		InvocationARN string `json:"invocationArn"`
	}
	if err := json.Unmarshal(body, &started); err != nil || !asyncArnPattern.MatchString(started.InvocationARN) {
		p.unrecordedAsync(resp.Request.Context(), st, "", errors.New("StartAsyncInvoke answer holds no valid invocationArn"))
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(resp.Request.Context()), asyncRecordTimeout)
	defer cancel()
	if err := p.cfg.AsyncOwners.Record(ctx, started.InvocationARN, asyncOwner(st.spec)); err != nil {
		p.unrecordedAsync(resp.Request.Context(), st, started.InvocationARN, err)
	}
	return nil
}

// unrecordedAsync reports a started job whose owner was not recorded.
func (p *Proxy) unrecordedAsync(ctx context.Context, st *reqState, arn string, err error) {
	p.cfg.Metrics.asyncOwnershipError(opStartAsyncInvoke)
	p.log.LogAttrs(ctx, slog.LevelError, "asynchronous invocation started, but its owner was not recorded: the caller cannot see it",
		slog.String("request_id", st.id), slog.String("session_name", st.spec.SessionName),
		slog.String("invocation_arn", arn), slog.String("error", err.Error()))
}

// filterAsyncList rewrites a ListAsyncInvokes page to hold only the
// caller's own invocations. Everything else in the page (nextToken
// included) is kept; a summary whose ARN cannot be read is dropped.
func (p *Proxy) filterAsyncList(resp *http.Response, st *reqState) error {
	// On an error forward closes resp.Body; on success the
	// replayBody does.
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return errAsyncListUnreadable(fmt.Errorf("page with Content-Encoding %q", ce))
	}
	body, complete, err := readAtMost(resp.Body, maxListAsyncAnswer)
	if err != nil {
		return err
	}
	if !complete {
		return errAsyncListUnreadable(fmt.Errorf("page larger than %d bytes", maxListAsyncAnswer))
	}
	out, err := ownAsyncPage(resp.Request.Context(), body, p.cfg.AsyncOwners, asyncOwner(st.spec))
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusServiceUnavailable {
			p.cfg.Metrics.asyncOwnershipError(opListAsyncInvokes)
		}
		return err
	}
	resp.Body = &replayBody{r: bytes.NewReader(out), orig: resp.Body}
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}

// ownAsyncPage returns the ListAsyncInvokes page with only owner's
// invocations in asyncInvokeSummaries. The page is written anew from
// what was parsed, so a key given twice (which parsers resolve
// differently) appears once, with the value the owner was checked on.
func ownAsyncPage(ctx context.Context, page []byte, owners AsyncOwners, owner string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(page, &fields); err != nil || fields == nil {
		return nil, errAsyncListUnreadable(fmt.Errorf("page is not a JSON object: %w", err))
	}
	var summaries []json.RawMessage
	if raw, ok := fields["asyncInvokeSummaries"]; ok {
		if err := json.Unmarshal(raw, &summaries); err != nil {
			return nil, errAsyncListUnreadable(fmt.Errorf("asyncInvokeSummaries is not a list: %w", err))
		}
	}
	own := make([]map[string]json.RawMessage, 0, len(summaries))
	for _, s := range summaries {
		var sum map[string]json.RawMessage
		var arn string
		if json.Unmarshal(s, &sum) != nil || json.Unmarshal(sum["invocationArn"], &arn) != nil || arn == "" {
			continue // whose it is cannot be told: not shown
		}
		o, ok, err := owners.Owner(ctx, arn)
		if err != nil {
			return nil, errAsyncOwnersUnavailable(err)
		}
		if ok && o == owner {
			own = append(own, sum)
		}
	}
	out := make(map[string]any, len(fields))
	for k, v := range fields {
		out[k] = v
	}
	out["asyncInvokeSummaries"] = own
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, errAsyncListUnreadable(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// readAtMost reads r to its end if it holds at most limit bytes; complete
// is false (and b holds what was read) if it holds more.
func readAtMost(r io.Reader, limit int64) (b []byte, complete bool, err error) {
	b, err = io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return b, false, err
	}
	if int64(len(b)) > limit {
		return b, false, nil
	}
	return b, true, nil
}

// replayBody is relayed in place of orig, whose bytes were read (and
// kept, or rewritten); closing it closes orig.
type replayBody struct {
	r    io.Reader
	orig io.Closer
}

func (b *replayBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *replayBody) Close() error               { return b.orig.Close() }

func (m *Metrics) asyncOwnershipError(op string) {
	if m != nil {
		m.asyncOwners.WithLabelValues(op).Inc()
	}
}

// Answers of the async ownership rule.

// errAsyncNotFound is the one answer for an invocation that does not
// exist and one another caller started, so that it reveals nothing.
func errAsyncNotFound() *Error {
	return &Error{Status: http.StatusNotFound, Type: typeNotFound, Msg: "no asynchronous invocation with this ARN was started by you"}
}

func errAsyncOwnersUnavailable(err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable,
		Msg: "the gateway could not check which asynchronous invocations are yours; retry later", Err: err}
}

func errAsyncListUnreadable(err error) *Error {
	return &Error{Status: http.StatusBadGateway, Type: typeUnavailable,
		Msg: "the gateway could not read Bedrock's list of asynchronous invocations", Err: err}
}

func errAsyncDisabled() *Error {
	return &Error{Status: http.StatusNotImplemented, Type: typeValidation,
		Msg: "asynchronous invocation is not enabled on this gateway"}
}
