package proxy

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/budget"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// whoami answers GET /gateway/whoami: what the gateway would do for the
// caller, with no secret in it.
func (p *Proxy) whoami(w http.ResponseWriter, r *http.Request) {
	st := stateFrom(r.Context())
	st.op = "WhoAmI"
	id := *st.identity
	type tag struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	out := struct {
		Identity struct {
			User       string `json:"user"`
			Label      string `json:"label,omitempty"`
			Team       string `json:"team,omitempty"`
			Tenant     string `json:"tenant,omitempty"`
			CostCenter string `json:"cost_center,omitempty"`
			Method     string `json:"method"`
			KeyID      string `json:"key_id,omitempty"`
			Issuer     string `json:"issuer,omitempty"`
			Subject    string `json:"subject,omitempty"`
			Platform   string `json:"platform,omitempty"`
		} `json:"identity"`
		Session struct {
			RoleARN         string `json:"role_arn"`
			SessionName     string `json:"session_name"`
			Tags            []tag  `json:"tags"`
			SourceIdentity  string `json:"source_identity,omitempty"`
			DurationSeconds int64  `json:"duration_seconds"`
			// PrincipalARN is what CUR 2.0 will show in
			// line_item_iam_principal.
			PrincipalARN string `json:"principal_arn"`
		} `json:"session"`
		Policy  any             `json:"policy,omitempty"`
		Budgets []budget.Status `json:"budgets,omitempty"`
	}{}
	out.Identity.User, out.Identity.Label, out.Identity.Team, out.Identity.Tenant = id.User, id.Label, id.Team, id.Tenant
	out.Identity.CostCenter, out.Identity.Method, out.Identity.KeyID = id.CostCenter, id.Method, id.KeyID
	out.Identity.Issuer, out.Identity.Subject, out.Identity.Platform = id.Issuer, id.Subject, id.Platform

	spec, err := p.resolve(id)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	st.spec = &spec
	out.Session.RoleARN, out.Session.SessionName = spec.RoleARN, spec.SessionName
	out.Session.SourceIdentity, out.Session.DurationSeconds = spec.SourceIdentity, int64(spec.Duration/time.Second)
	out.Session.Tags = []tag{}
	for _, t := range spec.Tags {
		out.Session.Tags = append(out.Session.Tags, tag{t.Key, t.Value})
	}
	out.Session.PrincipalARN, _ = tenancy.PrincipalARN(spec.RoleARN, spec.SessionName)
	if p.cfg.Policy != nil {
		out.Policy = p.cfg.Policy.Describe(id)
	}
	if p.cfg.Budgets != nil {
		out.Budgets = p.cfg.Budgets.Describe(r.Context(), id)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
