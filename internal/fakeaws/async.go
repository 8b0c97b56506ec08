package fakeaws

// Asynchronous invocation: StartAsyncInvoke, GetAsyncInvoke,
// ListAsyncInvokes. The fake runs no model and writes nothing to S3: a job
// is InProgress for Options.AsyncInvokeDuration after its submission (by
// Options.Now), then Completed (Failed for ModelAsyncFailure). Jobs are
// visible to every principal of the account that submitted them.
//
// Limits and patterns are those of the Bedrock Runtime service model
// (aws/aws-sdk-net generator/ServiceModels/bedrock-runtime/
// bedrock-runtime-2023-09-30.api.json: AsyncInvokeIdentifier,
// AsyncInvokeIdempotencyToken, S3Uri, KmsKeyId, AccountId, TagList, TagKey,
// TagValue, InvocationArn, MaxResults, PaginationToken).

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// defaultAsyncInvokeDuration is how long a job stays InProgress when
	// Options.AsyncInvokeDuration is zero.
	defaultAsyncInvokeDuration = time.Minute
	// maxAsyncModelIDLen bounds AsyncInvokeIdentifier.
	maxAsyncModelIDLen = 256
	// maxIdempotencyTokenLen bounds AsyncInvokeIdempotencyToken.
	maxIdempotencyTokenLen = 256
	// maxS3URILen bounds S3Uri; maxKMSKeyIDLen bounds KmsKeyId;
	// maxInvocationARNLen bounds InvocationArn; maxPaginationTokenLen
	// bounds PaginationToken.
	maxS3URILen           = 1024
	maxKMSKeyIDLen        = 2048
	maxInvocationARNLen   = 2048
	maxPaginationTokenLen = 2048
	// maxAsyncTags, maxAsyncTagKeyLen and maxAsyncTagValueLen bound
	// TagList, TagKey and TagValue.
	maxAsyncTags        = 200
	maxAsyncTagKeyLen   = 128
	maxAsyncTagValueLen = 256
	// maxListResults is MaxResults' maximum. The service's default page
	// size is not documented; the fake uses the maximum.
	maxListResults = 1000

	asyncTimeFormat = "2006-01-02T15:04:05.000Z"
	asyncIDAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// Patterns of the Bedrock Runtime service model, anchored.
var (
	asyncModelIDPattern  = regexp.MustCompile(`^[a-zA-Z_.\-/0-9:]+$`)
	s3URIPattern         = regexp.MustCompile(`^s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?$`)
	kmsKeyIDPattern      = regexp.MustCompile(`^arn:aws(-[^:]+)?:kms:[a-zA-Z0-9-]*:[0-9]{12}:((key/[a-zA-Z0-9-]{36})|(alias/[a-zA-Z0-9-_/]+))$`)
	accountIDPattern     = regexp.MustCompile(`^[0-9]{12}$`)
	tagPattern           = regexp.MustCompile(`^[a-zA-Z0-9\s._:/=+@-]*$`)
	invocationARNPattern = regexp.MustCompile(`^arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:async-invoke/[a-z0-9]{12}$`)
)

// asyncJob is one submitted asynchronous invocation.
type asyncJob struct {
	seq       int64 // submission order, unique
	arn       string
	account   string
	modelID   string
	modelARN  string
	token     string
	submitted time.Time
	output    asyncOutputDataConfig
	// params fingerprints the request without its token, to tell a retry
	// from a conflicting reuse of the token.
	params string
	fails  bool
}

type asyncOutputDataConfig struct {
	S3OutputDataConfig *s3OutputDataConfig `json:"s3OutputDataConfig,omitempty"`
}

type s3OutputDataConfig struct {
	S3URI       string `json:"s3Uri"`
	KMSKeyID    string `json:"kmsKeyId,omitempty"`
	BucketOwner string `json:"bucketOwner,omitempty"`
}

// asyncInvokeSummary is both GetAsyncInvoke's response and an entry of
// ListAsyncInvokes' asyncInvokeSummaries.
type asyncInvokeSummary struct {
	InvocationARN      string                `json:"invocationArn"`
	ModelARN           string                `json:"modelArn"`
	ClientRequestToken string                `json:"clientRequestToken,omitempty"`
	Status             string                `json:"status"`
	FailureMessage     string                `json:"failureMessage,omitempty"`
	SubmitTime         string                `json:"submitTime"`
	LastModifiedTime   string                `json:"lastModifiedTime"`
	EndTime            string                `json:"endTime,omitempty"`
	OutputDataConfig   asyncOutputDataConfig `json:"outputDataConfig"`
}

// asyncStatus returns the job's status, its last change and its end
// (zero while in progress) at now.
func (s *Server) asyncStatus(j *asyncJob, now time.Time) (status string, changed, ended time.Time) {
	end := j.submitted.Add(s.opts.AsyncInvokeDuration)
	switch {
	case now.Before(end):
		return "InProgress", j.submitted, time.Time{}
	case j.fails:
		return "Failed", end, end
	default:
		return "Completed", end, end
	}
}

func (s *Server) asyncSummary(j *asyncJob, now time.Time) asyncInvokeSummary {
	status, changed, ended := s.asyncStatus(j, now)
	v := asyncInvokeSummary{
		InvocationARN:      j.arn,
		ModelARN:           j.modelARN,
		ClientRequestToken: j.token,
		Status:             status,
		SubmitTime:         j.submitted.UTC().Format(asyncTimeFormat),
		LastModifiedTime:   changed.UTC().Format(asyncTimeFormat),
		OutputDataConfig:   j.output,
	}
	if !ended.IsZero() {
		v.EndTime = ended.UTC().Format(asyncTimeFormat)
	}
	if status == "Failed" {
		v.FailureMessage = "The model failed to process the input (injected by fakeaws)."
	}
	return v
}

type startAsyncInvokeRequest struct {
	ClientRequestToken *string                `json:"clientRequestToken"`
	ModelID            *string                `json:"modelId"`
	ModelInput         json.RawMessage        `json:"modelInput"`
	OutputDataConfig   *asyncOutputDataConfig `json:"outputDataConfig"`
	Tags               []struct {
		Key   *string `json:"key"`
		Value *string `json:"value"`
	} `json:"tags"`
}

// isIdempotencyToken: [!-~]*, 1-256 characters.
func isIdempotencyToken(s string) bool {
	if len(s) < 1 || len(s) > maxIdempotencyTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// validateStartAsyncInvoke checks req against the service model.
func validateStartAsyncInvoke(req *startAsyncInvokeRequest) *bedrockError {
	notNull := func(field string) *bedrockError {
		return validationError("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", field)
	}
	pattern := func(field, value, p string) *bedrockError {
		return validationError("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: %s", clip(value), field, p)
	}
	if t := req.ClientRequestToken; t != nil && !isIdempotencyToken(*t) {
		return validationError("1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must have length between 1 and %d and satisfy regular expression pattern: [!-~]*", maxIdempotencyTokenLen)
	}
	switch {
	case req.ModelID == nil:
		return notNull("modelId")
	case len(*req.ModelID) < 1 || len(*req.ModelID) > maxAsyncModelIDLen || !asyncModelIDPattern.MatchString(*req.ModelID):
		return pattern("modelId", *req.ModelID, `[a-zA-Z_\.\-/0-9:]+`)
	case !isPresent(req.ModelInput):
		return notNull("modelInput")
	case req.OutputDataConfig == nil:
		return notNull("outputDataConfig")
	case req.OutputDataConfig.S3OutputDataConfig == nil:
		return validationError("outputDataConfig must set s3OutputDataConfig.")
	}
	s3 := req.OutputDataConfig.S3OutputDataConfig
	switch {
	case len(s3.S3URI) > maxS3URILen || !s3URIPattern.MatchString(s3.S3URI):
		return pattern("outputDataConfig.s3OutputDataConfig.s3Uri", s3.S3URI, `s3://[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9](/.*)?`)
	case s3.KMSKeyID != "" && (len(s3.KMSKeyID) > maxKMSKeyIDLen || !kmsKeyIDPattern.MatchString(s3.KMSKeyID)):
		return pattern("outputDataConfig.s3OutputDataConfig.kmsKeyId", s3.KMSKeyID, `arn:aws(-[^:]+)?:kms:[a-zA-Z0-9-]*:[0-9]{12}:((key/[a-zA-Z0-9-]{36})|(alias/[a-zA-Z0-9-_/]+))`)
	case s3.BucketOwner != "" && !accountIDPattern.MatchString(s3.BucketOwner):
		return pattern("outputDataConfig.s3OutputDataConfig.bucketOwner", s3.BucketOwner, `[0-9]{12}`)
	case len(req.Tags) > maxAsyncTags:
		return validationError("1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to %d", maxAsyncTags)
	}
	for i, t := range req.Tags {
		switch {
		case t.Key == nil:
			return notNull(fmt.Sprintf("tags.%d.member.key", i+1))
		case t.Value == nil:
			return notNull(fmt.Sprintf("tags.%d.member.value", i+1))
		case len(*t.Key) < 1 || len(*t.Key) > maxAsyncTagKeyLen || !tagPattern.MatchString(*t.Key):
			return pattern(fmt.Sprintf("tags.%d.member.key", i+1), *t.Key, `[a-zA-Z0-9\s._:/=+@-]*`)
		case len(*t.Value) > maxAsyncTagValueLen || !tagPattern.MatchString(*t.Value):
			return pattern(fmt.Sprintf("tags.%d.member.value", i+1), *t.Value, `[a-zA-Z0-9\s._:/=+@-]*`)
		}
	}
	return nil
}

func (s *Server) startAsyncInvoke(c *call) {
	var req startAsyncInvokeRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.fail(validationError("Malformed input request, please reformat your input and try again."))
		return
	}
	if req.ModelID != nil {
		c.inv.ModelID = *req.ModelID
		if f, ok := faultModels[*req.ModelID]; ok {
			c.fail(&f)
			return
		}
	}
	if e := validateStartAsyncInvoke(&req); e != nil {
		c.fail(e)
		return
	}
	// Fingerprint everything but the token.
	token := ""
	if req.ClientRequestToken != nil {
		token = *req.ClientRequestToken
	}
	req.ClientRequestToken = nil
	req.ModelInput = canonicalJSON(req.ModelInput)
	params := string(mustJSON(req))

	modelARN := *req.ModelID
	if !strings.HasPrefix(modelARN, "arn:") {
		modelARN = "arn:aws:bedrock:" + s.opts.Region + "::foundation-model/" + modelARN
	}
	j := &asyncJob{
		account:  c.cred.account,
		modelID:  *req.ModelID,
		modelARN: modelARN,
		token:    token,
		// Bedrock reports times to the millisecond; keep no more, so a
		// reported submitTime used as a list bound means that job.
		submitted: s.opts.Now().Truncate(time.Millisecond),
		output:    *req.OutputDataConfig,
		params:    params,
		fails:     *req.ModelID == ModelAsyncFailure,
	}
	arn, e := s.submitAsyncJob(j)
	if e != nil {
		c.fail(e)
		return
	}
	c.inv.InvocationARN = arn
	c.record(outcome{status: http.StatusOK})
	writeJSON(c.w, map[string]string{"invocationArn": arn}, nil)
}

// submitAsyncJob stores j and returns its ARN, or, if j repeats an earlier
// request of the account with the same client request token, the earlier
// job's ARN. Reusing a token with different parameters is a conflict.
func (s *Server) submitAsyncJob(j *asyncJob) (string, *bedrockError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tokenKey := j.account + "\x00" + j.token
	if j.token != "" {
		if prev := s.asyncJobs[s.asyncTokens[tokenKey]]; prev != nil {
			if prev.params != j.params {
				return "", &bedrockError{http.StatusBadRequest, "ConflictException", "The client request token was already used for a request with different parameters."}
			}
			return prev.arn, nil
		}
	}
	for {
		j.arn = "arn:aws:bedrock:" + s.opts.Region + ":" + j.account + ":async-invoke/" + randomString(12, asyncIDAlphabet)
		if s.asyncJobs[j.arn] == nil {
			break
		}
	}
	s.asyncSeq++
	j.seq = s.asyncSeq
	s.asyncJobs[j.arn] = j
	if j.token != "" {
		s.asyncTokens[tokenKey] = j.arn
	}
	s.asyncOrder = append(s.asyncOrder, j)
	if limit := s.opts.RecordLimit; limit > 0 && len(s.asyncOrder) > limit {
		for _, old := range s.asyncOrder[:len(s.asyncOrder)-limit] {
			delete(s.asyncJobs, old.arn)
			if old.token != "" {
				delete(s.asyncTokens, old.account+"\x00"+old.token)
			}
		}
		s.asyncOrder = slices.Delete(s.asyncOrder, 0, len(s.asyncOrder)-limit)
	}
	return j.arn, nil
}

func (s *Server) getAsyncInvoke(c *call, arn string) {
	c.inv.InvocationARN = arn
	if len(arn) > maxInvocationARNLen || !invocationARNPattern.MatchString(arn) {
		c.fail(validationError("1 validation error detected: Value '%s' at 'invocationArn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:async-invoke/[a-z0-9]{12}", clip(arn)))
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	j := s.asyncJobs[arn]
	var v asyncInvokeSummary
	if j != nil && j.account == c.cred.account {
		v = s.asyncSummary(j, now)
	}
	s.mu.Unlock()
	if v.InvocationARN == "" {
		c.fail(&bedrockError{http.StatusNotFound, "ResourceNotFoundException", "The specified async invocation does not exist."})
		return
	}
	c.record(outcome{status: http.StatusOK})
	writeJSON(c.w, v, nil)
}

// listQuery is a validated ListAsyncInvokes query.
type listQuery struct {
	after, before time.Time // zero: no bound
	status        string    // "": any
	maxResults    int
	descending    bool
	// from is the position after which the page starts, from nextToken.
	from    listKey
	hasFrom bool
}

// listKey orders jobs: by submission time, then submission order.
type listKey struct {
	submitted int64 // Unix nanoseconds
	seq       int64
}

func (k listKey) compare(o listKey) int {
	if k.submitted != o.submitted {
		return cmpInt(k.submitted, o.submitted)
	}
	return cmpInt(k.seq, o.seq)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// digest binds a page token to the query and account it was issued for.
func (q listQuery) digest(account string) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%d|%d|%s|%v", account, q.after.UnixNano(), q.before.UnixNano(), q.status, q.descending)))
	return hex.EncodeToString(sum[:8])
}

// pageToken is the opaque nextToken for a page that ends at k.
func (q listQuery) pageToken(account string, k listKey) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%d.%s", k.submitted, k.seq, q.digest(account)))
}

// parseListQuery validates ListAsyncInvokes' query parameters. Unknown
// parameters are ignored; a repeated one counts once, first value first.
func parseListQuery(raw string, account string) (listQuery, *bedrockError) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return listQuery{}, validationError("The query string is malformed.")
	}
	q := listQuery{maxResults: maxListResults, descending: true}
	has := func(k string) (string, bool) {
		v, ok := vals[k]
		if !ok || len(v) == 0 {
			return "", false
		}
		return v[0], true
	}
	if v, ok := has("maxResults"); ok {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			return listQuery{}, validationError("1 validation error detected: Value '%s' at 'maxResults' failed to satisfy constraint: Member must be an integer", clip(v))
		case n < 1:
			return listQuery{}, validationError("1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1", n)
		case n > maxListResults:
			return listQuery{}, validationError("1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to %d", n, maxListResults)
		}
		q.maxResults = n
	}
	if v, ok := has("statusEquals"); ok {
		if v != "InProgress" && v != "Completed" && v != "Failed" {
			return listQuery{}, validationError("1 validation error detected: Value '%s' at 'statusEquals' failed to satisfy constraint: Member must satisfy enum value set: [InProgress, Completed, Failed]", clip(v))
		}
		q.status = v
	}
	if v, ok := has("sortBy"); ok && v != "SubmissionTime" {
		return listQuery{}, validationError("1 validation error detected: Value '%s' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: [SubmissionTime]", clip(v))
	}
	if v, ok := has("sortOrder"); ok {
		switch v {
		case "Ascending":
			q.descending = false
		case "Descending":
		default:
			return listQuery{}, validationError("1 validation error detected: Value '%s' at 'sortOrder' failed to satisfy constraint: Member must satisfy enum value set: [Ascending, Descending]", clip(v))
		}
	}
	for _, b := range []struct {
		name string
		dst  *time.Time
	}{{"submitTimeAfter", &q.after}, {"submitTimeBefore", &q.before}} {
		if v, ok := has(b.name); ok {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return listQuery{}, validationError("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must be an ISO 8601 date-time", clip(v), b.name)
			}
			*b.dst = t
		}
	}
	if v, ok := has("nextToken"); ok {
		k, valid := q.parsePageToken(v, account)
		if !valid {
			return listQuery{}, validationError("The provided pagination token is invalid.")
		}
		q.from, q.hasFrom = k, true
	}
	return q, nil
}

// parsePageToken decodes a token pageToken issued for the same query and
// account.
func (q listQuery) parsePageToken(tok, account string) (listKey, bool) {
	if len(tok) < 1 || len(tok) > maxPaginationTokenLen {
		return listKey{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return listKey{}, false
	}
	parts := strings.Split(string(b), ".")
	if len(parts) != 3 || parts[2] != q.digest(account) {
		return listKey{}, false
	}
	sub, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return listKey{}, false
	}
	return listKey{sub, seq}, true
}

func (s *Server) listAsyncInvokes(c *call) {
	q, e := parseListQuery(c.r.URL.RawQuery, c.cred.account)
	if e != nil {
		c.fail(e)
		return
	}
	now := s.opts.Now()
	type entry struct {
		key listKey
		sum asyncInvokeSummary
	}
	var matched []entry
	s.mu.Lock()
	for _, j := range s.asyncOrder {
		if j.account != c.cred.account ||
			(!q.after.IsZero() && !j.submitted.After(q.after)) ||
			(!q.before.IsZero() && !j.submitted.Before(q.before)) {
			continue
		}
		if status, _, _ := s.asyncStatus(j, now); q.status != "" && status != q.status {
			continue
		}
		matched = append(matched, entry{listKey{j.submitted.UnixNano(), j.seq}, s.asyncSummary(j, now)})
	}
	s.mu.Unlock()

	slices.SortFunc(matched, func(a, b entry) int {
		if q.descending {
			return b.key.compare(a.key)
		}
		return a.key.compare(b.key)
	})
	if q.hasFrom {
		// Skip to the first entry after the previous page's last.
		i, _ := slices.BinarySearchFunc(matched, q.from, func(e entry, k listKey) int {
			if q.descending {
				return k.compare(e.key)
			}
			return e.key.compare(k)
		})
		if i < len(matched) && matched[i].key == q.from {
			i++
		}
		matched = matched[i:]
	}
	resp := struct {
		Summaries []asyncInvokeSummary `json:"asyncInvokeSummaries"`
		NextToken string               `json:"nextToken,omitempty"`
	}{Summaries: []asyncInvokeSummary{}}
	for i, m := range matched {
		if i == q.maxResults {
			resp.NextToken = q.pageToken(c.cred.account, matched[i-1].key)
			break
		}
		resp.Summaries = append(resp.Summaries, m.sum)
	}
	c.record(outcome{status: http.StatusOK})
	writeJSON(c.w, resp, nil)
}
