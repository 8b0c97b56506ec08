package fakeaws

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// stsNamespace is the XML namespace of every STS response.
const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

// maxSTSBody bounds the form body the fake STS reads. The largest real
// AssumeRole input (a 2048-byte policy, 10 policy ARNs, 50 tags) is far
// smaller.
const maxSTSBody = 1 << 20

// STS limits (STS API reference, AssumeRole; IAM User Guide, tagging
// rules).
const (
	minDuration     = 900   // DurationSeconds minimum
	maxDuration     = 43200 // DurationSeconds maximum
	chainedDuration = 3600  // role chaining caps a session at one hour
	defaultDuration = 3600  // DurationSeconds default
	maxRoleSession  = 3600  // IAM default MaxSessionDuration of a role
	maxTags         = 50    // session tags per AssumeRole
	maxTransitive   = 50    // TransitiveTagKeys per AssumeRole
	maxTagKeyLen    = 128
	maxTagValueLen  = 256
	minArnLen       = 20
	maxArnLen       = 2048
)

var (
	// RoleSessionName and SourceIdentity: 2-64 characters of [\w+=,.@-].
	sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]*$`)
	// Tag keys and values: letters, spaces, numbers and _ . : / = + - @.
	tagKeyRE   = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$`)
	tagValueRE = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
)

// stsError is an STS error answer.
type stsError struct {
	status  int
	code    string
	message string
}

func (e *stsError) Error() string { return e.code + ": " + e.message }

// STSHandler serves the STS Query protocol at POST / (GET with a query
// string also works): AssumeRole and GetCallerIdentity.
func (s *Server) STSHandler() http.Handler {
	return http.HandlerFunc(s.serveSTS)
}

func (s *Server) serveSTS(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	w.Header().Set("X-Amzn-Requestid", reqID)

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSTSBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeSTSError(w, reqID, &stsError{http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "Request body is too large."})
			return
		}
		writeSTSError(w, reqID, &stsError{http.StatusBadRequest, "MalformedInput", "Could not read the request body."})
		return
	}
	params, err := stsParams(r, body)
	if err != nil {
		writeSTSError(w, reqID, &stsError{http.StatusBadRequest, "MalformedQueryString", "The query string or form body is malformed."})
		return
	}

	caller, aerr := s.authenticate(r, body, "sts")
	if aerr != nil {
		e := stsAuthError(aerr)
		if params.Get("Action") == "AssumeRole" {
			call, _ := parseAssumeRole(params) // best effort, for the record
			call.Time = s.opts.Now()
			call.Err = e.code
			s.recordAssumeRole(call)
		}
		writeSTSError(w, reqID, e)
		return
	}

	switch action := params.Get("Action"); action {
	case "AssumeRole":
		s.assumeRole(w, r, reqID, caller, params)
	case "GetCallerIdentity":
		writeXML(w, http.StatusOK, getCallerIdentityResponse{
			Result: callerIdentity{Arn: caller.principalARN, UserID: caller.userID, Account: caller.account},
			Meta:   responseMetadata{RequestID: reqID},
		})
	default:
		writeSTSError(w, reqID, &stsError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s", clip(action), "2011-06-15")})
	}
}

// stsParams merges the query string and, for a form POST, the body.
func stsParams(r *http.Request, body []byte) (url.Values, error) {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	if r.Method == http.MethodPost && len(body) > 0 {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		for k, vs := range form {
			params[k] = append(params[k], vs...)
		}
	}
	return params, nil
}

// stsAuthError maps an authentication failure to the STS error.
func stsAuthError(e *authError) *stsError {
	switch e.kind {
	case authMissing:
		return &stsError{http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token"}
	case authBearer, authUnknownKey:
		return &stsError{http.StatusForbidden, "InvalidClientTokenId", msgInvalidToken}
	case authIncomplete:
		return &stsError{http.StatusBadRequest, "IncompleteSignature", e.msg}
	case authExpired:
		return &stsError{http.StatusForbidden, "ExpiredToken", msgExpiredToken}
	default:
		return &stsError{http.StatusForbidden, "SignatureDoesNotMatch", e.msg}
	}
}

func (s *Server) assumeRole(w http.ResponseWriter, r *http.Request, reqID string, caller *credential, params url.Values) {
	call, verr := parseAssumeRole(params)
	call.Time = s.opts.Now()
	call.CallerARN = caller.principalARN

	fail := func(e *stsError) {
		call.Err = e.code
		s.recordAssumeRole(call)
		writeSTSError(w, reqID, e)
	}

	s.mu.Lock()
	hook := s.assumeFailer
	s.mu.Unlock()
	if hook != nil {
		hc := call
		hc.Tags = maps.Clone(call.Tags)
		if f := hook(r.Context(), hc); f != nil {
			e := &stsError{f.Status, f.Code, f.Message}
			if e.status == 0 {
				e.status = http.StatusBadRequest
			}
			if e.message == "" {
				e.message = defaultFaultMessage(f.Code)
			}
			fail(e)
			return
		}
	}
	if verr != nil {
		fail(verr)
		return
	}
	if !s.roles[call.RoleARN] {
		fail(&stsError{http.StatusForbidden, "AccessDenied", fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller.principalARN, call.RoleARN)})
		return
	}
	duration := int64(call.DurationSeconds)
	if duration == 0 {
		duration = defaultDuration
	}
	if caller.chained && duration > chainedDuration {
		fail(&stsError{http.StatusBadRequest, "ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."})
		return
	}
	if duration > maxRoleSession {
		fail(&stsError{http.StatusBadRequest, "ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."})
		return
	}

	roleName := call.RoleARN[strings.LastIndex(call.RoleARN, "/")+1:]
	account := arnAccount(call.RoleARN, s.opts.AccountID)
	roleID := stableID("AROA", call.RoleARN)
	issued := &credential{
		secret:       randomSecret(),
		sessionToken: randomSessionToken(),
		expires:      call.Time.Add(s.lifetime(duration)).UTC().Truncate(time.Second),
		principalARN: "arn:aws:sts::" + account + ":assumed-role/" + roleName + "/" + call.SessionName,
		userID:       roleID + ":" + call.SessionName,
		account:      account,
		roleARN:      call.RoleARN,
		sessionName:  call.SessionName,
		tags:         maps.Clone(call.Tags),
		chained:      true,
	}
	s.mu.Lock()
	issued.accessKeyID = s.newAccessKeyIDLocked("ASIA")
	s.creds[issued.accessKeyID] = issued
	s.mu.Unlock()
	call.AccessKeyID = issued.accessKeyID
	s.recordAssumeRole(call)

	res := assumeRoleResult{
		SourceIdentity: call.SourceIdentity,
		User:           assumedRoleUser{Arn: issued.principalARN, AssumedRoleID: issued.userID},
		Credentials: stsCredentials{
			AccessKeyID:     issued.accessKeyID,
			SecretAccessKey: issued.secret,
			SessionToken:    issued.sessionToken,
			Expiration:      issued.expires.Format(time.RFC3339),
		},
	}
	if len(call.Tags) > 0 {
		// PackedPolicySize is a percentage of the packed-session limit;
		// the fake reports a rough, deterministic estimate.
		n := min(1+len(call.Tags)*2, 100)
		res.PackedPolicySize = &n
	}
	writeXML(w, http.StatusOK, assumeRoleResponse{Result: res, Meta: responseMetadata{RequestID: reqID}})
}

// parseAssumeRole reads the AssumeRole parameters and checks their
// modelled constraints (length, pattern, presence), reporting every
// violation at once the way STS does ("2 validation errors detected:
// ..."), then the reserved-prefix and duplicate-key rules. The returned
// call is filled in as far as possible even on error.
func parseAssumeRole(p url.Values) (AssumeRoleCall, *stsError) {
	var c AssumeRoleCall
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	c.RoleARN = p.Get("RoleArn")
	switch n := utf8.RuneCountInString(c.RoleARN); {
	case !p.Has("RoleArn"):
		bad("Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
	case n < minArnLen:
		bad("Value '%s' at 'roleArn' failed to satisfy constraint: Member must have length greater than or equal to %d", clip(c.RoleARN), minArnLen)
	case n > maxArnLen:
		bad("Value at 'roleArn' failed to satisfy constraint: Member must have length less than or equal to %d", maxArnLen)
	}

	c.SessionName = p.Get("RoleSessionName")
	if !p.Has("RoleSessionName") {
		bad("Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
	} else {
		checkSessionString(bad, "roleSessionName", c.SessionName)
	}

	if p.Has("SourceIdentity") {
		c.SourceIdentity = p.Get("SourceIdentity")
		checkSessionString(bad, "sourceIdentity", c.SourceIdentity)
	}

	if p.Has("DurationSeconds") {
		d, err := strconv.ParseInt(p.Get("DurationSeconds"), 10, 32)
		switch {
		case err != nil:
			bad("Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must be an integer", clip(p.Get("DurationSeconds")))
		case d < minDuration:
			bad("Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to %d", d, minDuration)
		case d > maxDuration:
			bad("Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to %d", d, maxDuration)
		}
		c.DurationSeconds = int32(d)
	}

	tags, err := memberList(p, "Tags", true)
	if err != nil {
		bad("%s", err)
	}
	if len(tags) > maxTags {
		bad("Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to %d", maxTags)
	}
	for i, t := range tags {
		switch n := utf8.RuneCountInString(t.key); {
		case n < 1:
			bad("Value '' at 'tags.%d.member.key' failed to satisfy constraint: Member must have length greater than or equal to 1", i+1)
		case n > maxTagKeyLen:
			bad("Value at 'tags.%d.member.key' failed to satisfy constraint: Member must have length less than or equal to %d", i+1, maxTagKeyLen)
		case !tagKeyRE.MatchString(t.key):
			bad("Value '%s' at 'tags.%d.member.key' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+", clip(t.key), i+1)
		}
		switch {
		case !t.hasValue:
			bad("Value null at 'tags.%d.member.value' failed to satisfy constraint: Member must not be null", i+1)
		case utf8.RuneCountInString(t.value) > maxTagValueLen:
			bad("Value at 'tags.%d.member.value' failed to satisfy constraint: Member must have length less than or equal to %d", i+1, maxTagValueLen)
		case !tagValueRE.MatchString(t.value):
			bad("Value '%s' at 'tags.%d.member.value' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*", clip(t.value), i+1)
		}
		if c.Tags == nil {
			c.Tags = make(map[string]string, len(tags))
		}
		c.Tags[t.key] = t.value
	}

	trans, err := memberList(p, "TransitiveTagKeys", false)
	if err != nil {
		bad("%s", err)
	}
	if len(trans) > maxTransitive {
		bad("Value at 'transitiveTagKeys' failed to satisfy constraint: Member must have length less than or equal to %d", maxTransitive)
	}
	for _, t := range trans {
		c.TransitiveTagKeys = append(c.TransitiveTagKeys, t.value)
	}

	if len(problems) > 0 {
		noun := "error"
		if len(problems) > 1 {
			noun = "errors"
		}
		return c, &stsError{http.StatusBadRequest, "ValidationError",
			fmt.Sprintf("%d validation %s detected: %s", len(problems), noun, strings.Join(problems, "; "))}
	}
	return c, checkReserved(tags)
}

// checkSessionString checks a RoleSessionName or SourceIdentity: 2-64
// characters of [\w+=,.@-].
func checkSessionString(bad func(string, ...any), field, v string) {
	switch {
	case len(v) < 2:
		bad("Value '%s' at '%s' failed to satisfy constraint: Member must have length greater than or equal to 2", clip(v), field)
	case len(v) > 64:
		bad("Value '%s' at '%s' failed to satisfy constraint: Member must have length less than or equal to 64", clip(v), field)
	}
	if !sessionNameRE.MatchString(v) {
		bad("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*", clip(v), field)
	}
}

// checkReserved applies the tag rules STS enforces beyond the model
// constraints (IAM User Guide, session tags): keys and values may not start
// with the reserved prefix "aws:", and tag keys are case-insensitive, so
// two keys differing only in case are duplicates. (SourceIdentity's
// "aws:" ban is already enforced by its pattern, which excludes ':'.)
func checkReserved(tags []queryMember) *stsError {
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		lk := strings.ToLower(t.key)
		if strings.HasPrefix(lk, "aws:") || strings.HasPrefix(strings.ToLower(t.value), "aws:") {
			return &stsError{http.StatusBadRequest, "ValidationError", "Tag keys and values cannot start with the reserved prefix 'aws:'."}
		}
		if seen[lk] {
			return &stsError{http.StatusBadRequest, "ValidationError", "Duplicate tag keys found. Please note that Tag keys are case insensitive."}
		}
		seen[lk] = true
	}
	return nil
}

// queryMember is one element of a Query-protocol list.
type queryMember struct {
	key, value string
	hasValue   bool
}

// memberList reads the 1-indexed Query list Name.member.N (or, with
// keyed, Name.member.N.Key / Name.member.N.Value).
func memberList(p url.Values, name string, keyed bool) ([]queryMember, error) {
	prefix := name + ".member."
	var maxIdx int
	count := 0
	for k := range p {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		idxStr, field, _ := strings.Cut(rest, ".")
		idx, err := strconv.Atoi(idxStr)
		if err != nil || idx < 1 || idx > 1000 {
			return nil, fmt.Errorf("invalid list index in '%s'", clip(k))
		}
		if keyed && field != "Key" && field != "Value" || !keyed && field != "" {
			return nil, fmt.Errorf("unexpected parameter '%s'", clip(k))
		}
		maxIdx = max(maxIdx, idx)
		count++
	}
	if count == 0 {
		return nil, nil
	}
	out := make([]queryMember, maxIdx)
	for i := range out {
		base := prefix + strconv.Itoa(i+1)
		if !keyed {
			if !p.Has(base) {
				return nil, fmt.Errorf("list '%s' skips index %d", name, i+1)
			}
			out[i] = queryMember{value: p.Get(base), hasValue: true}
			continue
		}
		if !p.Has(base+".Key") && !p.Has(base+".Value") {
			return nil, fmt.Errorf("list '%s' skips index %d", name, i+1)
		}
		out[i] = queryMember{key: p.Get(base + ".Key"), value: p.Get(base + ".Value"), hasValue: p.Has(base + ".Value")}
	}
	return out, nil
}

// defaultFaultMessage is the message STS sends with well-known codes.
func defaultFaultMessage(code string) string {
	switch code {
	case "Throttling":
		return "Rate exceeded"
	case "AccessDenied":
		return "Access denied"
	case "RegionDisabledException":
		return "STS is not activated in this region for account. Your account administrator can activate STS in this region using the IAM Console."
	case "InternalFailure":
		return "An internal error occurred."
	}
	return code
}

// clip bounds an echoed client value so error messages stay small; the
// XML encoder escapes it.
func clip(s string) string {
	const limit = 256
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type assumeRoleResponse struct {
	XMLName xml.Name         `xml:"https://sts.amazonaws.com/doc/2011-06-15/ AssumeRoleResponse"`
	Result  assumeRoleResult `xml:"AssumeRoleResult"`
	Meta    responseMetadata `xml:"ResponseMetadata"`
}

type assumeRoleResult struct {
	SourceIdentity   string          `xml:"SourceIdentity,omitempty"`
	User             assumedRoleUser `xml:"AssumedRoleUser"`
	Credentials      stsCredentials  `xml:"Credentials"`
	PackedPolicySize *int            `xml:"PackedPolicySize,omitempty"`
}

type assumedRoleUser struct {
	Arn           string `xml:"Arn"`
	AssumedRoleID string `xml:"AssumedRoleId"`
}

type stsCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

type getCallerIdentityResponse struct {
	XMLName xml.Name         `xml:"https://sts.amazonaws.com/doc/2011-06-15/ GetCallerIdentityResponse"`
	Result  callerIdentity   `xml:"GetCallerIdentityResult"`
	Meta    responseMetadata `xml:"ResponseMetadata"`
}

type callerIdentity struct {
	Arn     string `xml:"Arn"`
	UserID  string `xml:"UserId"`
	Account string `xml:"Account"`
}

type errorResponse struct {
	XMLName   xml.Name    `xml:"https://sts.amazonaws.com/doc/2011-06-15/ ErrorResponse"`
	Error     errorDetail `xml:"Error"`
	RequestID string      `xml:"RequestId"`
}

type errorDetail struct {
	Type    string `xml:"Type"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

func writeSTSError(w http.ResponseWriter, reqID string, e *stsError) {
	typ := "Sender"
	if e.status >= 500 {
		typ = "Receiver"
	}
	writeXML(w, e.status, errorResponse{Error: errorDetail{Type: typ, Code: e.code, Message: e.message}, RequestID: reqID})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	out, err := xml.Marshal(v)
	if err != nil {
		// Only fixed struct types are marshalled; this cannot happen.
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// lifetime is how long credentials issued for durationSeconds last.
func (s *Server) lifetime(durationSeconds int64) time.Duration {
	d := time.Duration(durationSeconds) * time.Second
	if s.opts.SessionLifetime > 0 && s.opts.SessionLifetime < d {
		return s.opts.SessionLifetime
	}
	return d
}
