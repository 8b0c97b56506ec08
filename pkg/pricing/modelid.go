package pricing

import "strings"

// Scope is how a call reached a model, which for the newer models decides
// its price: AWS lists Claude 4.5 and later 10% above list for in-Region
// and geographic cross-Region calls, and at list for global ones.
type Scope uint8

const (
	// Regional is the base model ID (or its foundation-model ARN) called
	// in its own Region.
	Regional Scope = iota
	// Geo is a geographic cross-Region inference profile: us., eu., apac., ...
	Geo
	// Global is a global cross-Region inference profile: global.
	Global
	numScopes
)

var scopeNames = [numScopes]string{"regional", "geo", "global"}

// String returns the name Price.Scope and the data file use.
func (s Scope) String() string {
	if s < numScopes {
		return scopeNames[s]
	}
	return "unknown"
}

func parseScope(s string) (Scope, bool) {
	for i, n := range scopeNames {
		if s == n {
			return Scope(i), true
		}
	}
	return 0, false
}

// geoPrefixes are the first labels of system-defined cross-Region
// inference profile IDs (Bedrock user guide, "Supported Regions and models
// for inference profiles"): us.anthropic..., eu.amazon..., and so on.
var geoPrefixes = [...]string{"us", "eu", "apac", "jp", "au", "ca", "in", "us-gov"}

// splitModel takes apart what a client names a model with: a base model
// ID, a system-defined inference profile ID, or the ARN of a foundation
// model or of a system-defined inference profile. It returns the base
// model ID (a substring of model, so it does not allocate) and the scope.
// Application inference profiles, provisioned models, custom models and
// anything else are refused: their price is not a function of the ID.
func splitModel(model string) (base string, scope Scope, ok bool) {
	if strings.HasPrefix(model, "arn:") {
		// arn:PARTITION:bedrock:REGION:ACCOUNT:RESOURCE-TYPE/ID. The ID
		// contains ':' (":0") but no '/', and the ARN's Region is not used:
		// the gateway prices the Region it calls.
		partition, rest, ok1 := strings.Cut(model[len("arn:"):], ":")
		service, rest, ok2 := strings.Cut(rest, ":")
		_, rest, ok3 := strings.Cut(rest, ":") // Region
		_, rest, ok4 := strings.Cut(rest, ":") // account, empty for foundation models
		if !ok1 || !ok2 || !ok3 || !ok4 || service != "bedrock" || !strings.HasPrefix(partition, "aws") {
			return "", 0, false
		}
		kind, id, found := strings.Cut(rest, "/")
		if !found || strings.IndexByte(id, '/') >= 0 {
			return "", 0, false
		}
		switch kind {
		case "foundation-model":
			if _, _, profile := profilePrefix(id); profile {
				return "", 0, false
			}
			return checkBase(id, Regional)
		case "inference-profile":
			p, base, profile := profilePrefix(id)
			if !profile {
				return "", 0, false
			}
			return checkBase(base, p)
		default:
			return "", 0, false
		}
	}
	if s, base, profile := profilePrefix(model); profile {
		return checkBase(base, s)
	}
	return checkBase(model, Regional)
}

// profilePrefix reports whether id starts with a cross-Region profile
// label, and returns the scope and the base ID after it.
func profilePrefix(id string) (Scope, string, bool) {
	label, rest, found := strings.Cut(id, ".")
	if !found {
		return 0, "", false
	}
	if label == "global" {
		return Global, rest, true
	}
	for _, p := range geoPrefixes {
		if label == p {
			return Geo, rest, true
		}
	}
	return 0, "", false
}

// checkBase accepts a base model ID of the shape Bedrock uses,
// provider.name[:version], made of [a-z0-9.:-]: the provider label keeps
// an ARN path or a typo from reaching the price table as a model name.
func checkBase(id string, s Scope) (string, Scope, bool) {
	if !validModelID(id) {
		return "", 0, false
	}
	return id, s, true
}

// maxModelIDLen bounds a model ID: Bedrock's modelId is at most 2048
// characters with the ARN (InvokeModel API reference); a base ID is far
// shorter.
const maxModelIDLen = 256

func validModelID(id string) bool {
	if id == "" || len(id) > maxModelIDLen {
		return false
	}
	dot := strings.IndexByte(id, '.')
	if dot <= 0 || dot == len(id)-1 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == ':', c == '_':
		default:
			return false
		}
	}
	return true
}
