package fakeaws

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The emulated guardrail. Every guardrail identifier that matches
// Bedrock's pattern names it, at every version, except GuardrailMissing.
// It has a content filter and one custom word filter: text containing the
// word GuardrailBlockedWord (any case, as a whole word) is blocked.
const (
	// GuardrailMissing is a guardrail identifier the fake does not know:
	// ApplyGuardrail answers 404 ResourceNotFoundException. Like the
	// Model* fault IDs used as guardrail identifiers, it is recognised
	// before the identifier is validated (real Bedrock would refuse its
	// "." and "-" with a ValidationException).
	GuardrailMissing = "fake.guardrail-missing"
	// GuardrailBlockedWord makes the guardrail intervene.
	GuardrailBlockedWord = "forbidden"
	// GuardrailBlockedMessage is the guardrail's output when it
	// intervenes.
	GuardrailBlockedMessage = "Sorry, blocked by emulated guardrail."
)

const (
	// guardrailTextUnitChars is the size of a guardrail text unit: up to
	// 1,000 characters; longer text is several units (Bedrock user guide
	// and pricing, Guardrails).
	guardrailTextUnitChars = 1000
	// maxGuardrailIDLen bounds GuardrailIdentifier (Bedrock Runtime
	// service model).
	maxGuardrailIDLen = 2048
)

// Patterns of the Bedrock Runtime service model (GuardrailIdentifier,
// GuardrailVersion), anchored.
var (
	guardrailIDPattern      = regexp.MustCompile(`^(([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+))$`)
	guardrailVersionPattern = regexp.MustCompile(`^(([1-9][0-9]{0,7})|(DRAFT))$`)
)

// applyGuardrailRequest is an ApplyGuardrail body.
type applyGuardrailRequest struct {
	Source  *string `json:"source"`
	Content *[]struct {
		Text *struct {
			Text       *string  `json:"text"`
			Qualifiers []string `json:"qualifiers"`
		} `json:"text"`
		Image *struct {
			Format string `json:"format"`
			Source struct {
				Bytes []byte `json:"bytes"`
			} `json:"source"`
		} `json:"image"`
	} `json:"content"`
	OutputScope *string `json:"outputScope"`
}

// guardrailUsage is a GuardrailUsage: policy units processed.
type guardrailUsage struct {
	TopicPolicyUnits                    int64 `json:"topicPolicyUnits"`
	ContentPolicyUnits                  int64 `json:"contentPolicyUnits"`
	WordPolicyUnits                     int64 `json:"wordPolicyUnits"`
	SensitiveInformationPolicyUnits     int64 `json:"sensitiveInformationPolicyUnits"`
	SensitiveInformationPolicyFreeUnits int64 `json:"sensitiveInformationPolicyFreeUnits"`
	ContextualGroundingPolicyUnits      int64 `json:"contextualGroundingPolicyUnits"`
	ContentPolicyImageUnits             int64 `json:"contentPolicyImageUnits"`
	AutomatedReasoningPolicyUnits       int64 `json:"automatedReasoningPolicyUnits"`
	AutomatedReasoningPolicies          int64 `json:"automatedReasoningPolicies"`
}

// billable returns the units AWS charges for: content, denied-topic,
// sensitive-information (PII) and contextual-grounding units. Word
// filters and regex sensitive-information filters are free (Bedrock
// pricing, Guardrails).
func (u guardrailUsage) billable() int64 {
	return u.ContentPolicyUnits + u.TopicPolicyUnits + u.SensitiveInformationPolicyUnits + u.ContextualGroundingPolicyUnits
}

// containsWord reports whether text has word as a whole word, in any case.
func containsWord(text, word string) bool {
	for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if strings.EqualFold(w, word) {
			return true
		}
	}
	return false
}

func (s *Server) applyGuardrail(c *call, id, version string) {
	c.inv.Guardrail = id + ":" + version
	if f, ok := faultModels[id]; ok {
		c.fail(&f)
		return
	}
	if id == GuardrailMissing {
		c.fail(&bedrockError{http.StatusNotFound, "ResourceNotFoundException", "The guardrail identifier or version provided does not exist."})
		return
	}
	if !guardrailVersionPattern.MatchString(version) {
		c.fail(validationError("1 validation error detected: Value '%s' at 'guardrailVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: (([1-9][0-9]{0,7})|(DRAFT))", clip(version)))
		return
	}
	if len(id) > maxGuardrailIDLen || !guardrailIDPattern.MatchString(id) {
		c.fail(validationError("1 validation error detected: Value '%s' at 'guardrailIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+))", clip(id)))
		return
	}

	var req applyGuardrailRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.fail(validationError("Malformed input request, please reformat your input and try again."))
		return
	}
	switch {
	case req.Source == nil:
		c.fail(validationError("1 validation error detected: Value null at 'source' failed to satisfy constraint: Member must not be null"))
		return
	case *req.Source != "INPUT" && *req.Source != "OUTPUT":
		c.fail(validationError("1 validation error detected: Value '%s' at 'source' failed to satisfy constraint: Member must satisfy enum value set: [INPUT, OUTPUT]", clip(*req.Source)))
		return
	case req.Content == nil:
		c.fail(validationError("1 validation error detected: Value null at 'content' failed to satisfy constraint: Member must not be null"))
		return
	case req.OutputScope != nil && *req.OutputScope != "INTERVENTIONS" && *req.OutputScope != "FULL":
		c.fail(validationError("1 validation error detected: Value '%s' at 'outputScope' failed to satisfy constraint: Member must satisfy enum value set: [INTERVENTIONS, FULL]", clip(*req.OutputScope)))
		return
	}

	var units, chars, images int64
	blocked := false
	for i, b := range *req.Content {
		switch {
		case (b.Text == nil) == (b.Image == nil):
			c.fail(validationError("Each content block (content.%d) must set exactly one of text and image.", i+1))
			return
		case b.Text != nil:
			if b.Text.Text == nil {
				c.fail(validationError("1 validation error detected: Value null at 'content.%d.member.text.text' failed to satisfy constraint: Member must not be null", i+1))
				return
			}
			for _, q := range b.Text.Qualifiers {
				if q != "grounding_source" && q != "query" && q != "guard_content" {
					c.fail(validationError("1 validation error detected: Value '%s' at 'content.%d.member.text.qualifiers' failed to satisfy constraint: Member must satisfy enum value set: [grounding_source, query, guard_content]", clip(q), i+1))
					return
				}
			}
			n := int64(utf8.RuneCountInString(*b.Text.Text))
			chars += n
			units += (n + guardrailTextUnitChars - 1) / guardrailTextUnitChars
			blocked = blocked || containsWord(*b.Text.Text, GuardrailBlockedWord)
		default:
			if f := b.Image.Format; f != "png" && f != "jpeg" {
				c.fail(validationError("1 validation error detected: Value '%s' at 'content.%d.member.image.format' failed to satisfy constraint: Member must satisfy enum value set: [png, jpeg]", clip(f), i+1))
				return
			}
			if len(b.Image.Source.Bytes) == 0 {
				c.fail(validationError("1 validation error detected: Value at 'content.%d.member.image.source.bytes' failed to satisfy constraint: Member must have length greater than or equal to 1", i+1))
				return
			}
			images++
		}
	}

	usage := guardrailUsage{ContentPolicyUnits: units, WordPolicyUnits: units, ContentPolicyImageUnits: images}
	coverage := map[string]any{"textCharacters": map[string]int64{"guarded": chars, "total": chars}}
	if images > 0 {
		coverage["images"] = map[string]int64{"guarded": images, "total": images}
	}
	guardrailID, guardrailARN := id, id
	if rest, ok := strings.CutPrefix(id, "arn:"); ok {
		guardrailID = rest[strings.LastIndexByte(rest, '/')+1:]
	} else {
		guardrailARN = "arn:aws:bedrock:" + s.opts.Region + ":" + c.cred.account + ":guardrail/" + id
	}
	assessment := map[string]any{
		"invocationMetrics": map[string]any{
			"guardrailProcessingLatency": latencyMs,
			"usage":                      usage,
			"guardrailCoverage":          coverage,
		},
		"appliedGuardrailDetails": map[string]any{
			"guardrailId":        guardrailID,
			"guardrailVersion":   version,
			"guardrailArn":       guardrailARN,
			"guardrailOrigin":    []string{"REQUEST"},
			"guardrailOwnership": "SELF",
		},
	}
	if blocked || (req.OutputScope != nil && *req.OutputScope == "FULL") {
		action := "NONE"
		if blocked {
			action = "BLOCKED"
		}
		assessment["wordPolicy"] = map[string]any{
			"customWords":      []map[string]any{{"match": GuardrailBlockedWord, "action": action, "detected": blocked}},
			"managedWordLists": []any{},
		}
	}
	resp := map[string]any{
		"usage":             usage,
		"action":            "NONE",
		"outputs":           []any{},
		"assessments":       []any{assessment},
		"guardrailCoverage": coverage,
	}
	if blocked {
		resp["action"] = "GUARDRAIL_INTERVENED"
		resp["actionReason"] = "Guardrail blocked."
		resp["outputs"] = []map[string]string{{"text": GuardrailBlockedMessage}}
	}
	c.record(outcome{status: http.StatusOK, guardrailUnits: usage.billable()})
	writeJSON(c.w, resp, nil)
}
