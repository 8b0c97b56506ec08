package fakeaws

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
)

// BillingHandler serves the emulated CUR 2.0 rows (BillingRows): JSON by
// default, or an aligned table with ?format=table. `gateway dev` serves it
// as /_dev/billing so a newcomer sees what the bill would say.
func (s *Server) BillingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rows := s.BillingRows()
		if r.URL.Query().Get("format") == "table" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "line_item_iam_principal\tline_item_usage_type\tusage_amount\ttags")
			for _, row := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", row.IAMPrincipal, row.UsageType, row.UsageAmount, formatTags(row.Tags))
			}
			tw.Flush()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Note string       `json:"note"`
			Rows []BillingRow `json:"rows"`
		}{"emulated: what CUR 2.0 would show per IAM principal", rows})
	})
}

// formatTags writes tags as CUR 2.0 writes its tag column: a JSON-like
// object with sorted keys.
func formatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%q:%q", k, tags[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}
