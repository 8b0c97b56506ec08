// Package tenancy turns an authenticated caller into the STS session that
// will be billed for its Bedrock calls: role ARN, RoleSessionName and
// session tags.
package tenancy

import "time"

// Tag is one STS session tag. It surfaces in CUR 2.0 as
// "iamPrincipal/<Key>" once activated as a cost allocation tag.
type Tag struct {
	Key   string
	Value string
}

// SessionSpec is everything the gateway sends to STS AssumeRole for one
// caller. Two specs that differ in any field are different sessions.
type SessionSpec struct {
	// RoleARN is the Bedrock invocation role to assume (from config only).
	RoleARN string
	// SessionName is the RoleSessionName: 2-64 characters of [\w+=,.@-]
	// (STS API reference), unique per caller.
	SessionName string
	// Tags are the session tags, sorted by Key, at most 50 (STS limit).
	Tags []Tag
	// SourceIdentity is optional; empty means not sent.
	SourceIdentity string
	// Duration is the requested session duration (DurationSeconds): at most
	// one hour, the cap for a chained role.
	Duration time.Duration
}
