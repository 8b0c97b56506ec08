package budget

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Tracker's. Their labels are configured names only: budget
// (and threshold, as configured), plus, on the spend and limit gauges,
// subject, which is the configured Match of a budget for one named
// subject and empty (no label, to Prometheus) for a budget that applies
// to each subject. A budget for each user therefore has one series, not
// one per user: its spend gauge is the most any one subject has spent in
// the current period, the number to compare with the limit, and who it
// is is in the threshold log lines.
type metrics struct {
	refusals  *prometheus.CounterVec // budget
	crossings *prometheus.CounterVec // budget, threshold
	spend     *prometheus.Desc       // budget, subject
	limit     *prometheus.Desc       // budget, subject
	t         *Tracker
}

func newMetrics(reg prometheus.Registerer, t *Tracker) (*metrics, error) {
	m := &metrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_budget_refusals_total",
			Help: "Requests refused because a hard budget was spent, by the budget named in the refusal.",
		}, []string{"budget"}),
		crossings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_budget_threshold_crossings_total",
			Help: "Times a subject's spend reached a budget's threshold (a fraction of its limit), each at most once per subject and period; fleet-wide once while Redis is reachable.",
		}, []string{"budget", "threshold"}),
		spend: prometheus.NewDesc("bedrock_gateway_budget_spend_usd",
			"Spend in the current period as this replica knows it (fleet-wide in fleet mode: take max over replicas); for a budget of each subject (subject=\"\"), the most any one subject spent.",
			[]string{"budget", "subject"}, nil),
		limit: prometheus.NewDesc("bedrock_gateway_budget_limit_usd",
			"A budget's limit per subject and period, in dollars.",
			[]string{"budget", "subject"}, nil),
		t: t,
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.refusals, m.crossings, gauges{m}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register budget metrics: %w", err)
		}
	}
	return m, nil
}

// bind gives each rule of next its counters, created at zero so that they
// are exported before the first event, and drops the series of budgets and
// thresholds prev had and next has not.
func (m *metrics) bind(prev, next *ruleset) {
	if prev != nil {
		for _, r := range prev.all {
			n := next.byID[r.id]
			if n == nil {
				m.refusals.DeletePartialMatch(prometheus.Labels{"budget": r.Name})
				m.crossings.DeletePartialMatch(prometheus.Labels{"budget": r.Name})
				continue
			}
			if n.Mode != Hard {
				m.refusals.DeleteLabelValues(r.Name)
			}
			for _, th := range r.thresholds {
				if !n.hasThreshold(th.label) {
					m.crossings.DeleteLabelValues(r.Name, th.label)
				}
			}
		}
	}
	for _, r := range next.all {
		if r.Mode == Hard { // a soft budget refuses nothing: no series
			r.refusals = m.refusals.WithLabelValues(r.Name)
		}
		r.crossings = make([]prometheus.Counter, len(r.thresholds))
		for i, th := range r.thresholds {
			r.crossings[i] = m.crossings.WithLabelValues(r.Name, th.label)
		}
	}
}

func (r *rule) hasThreshold(label string) bool {
	for _, th := range r.thresholds {
		if th.label == label {
			return true
		}
	}
	return false
}

// gauges computes the spend and limit gauges when scraped, so that a
// period's spend drops to 0 at its reset without anyone spending.
type gauges struct{ m *metrics }

func (g gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.m.spend
	ch <- g.m.limit
}

func (g gauges) Collect(ch chan<- prometheus.Metric) {
	t := g.m.t
	rs := t.rules.Load()
	if rs == nil {
		return
	}
	now := t.now()
	t.mu.Lock()
	spent := make([]float64, len(rs.all))
	for i, r := range rs.all {
		start, _ := t.bounds(r.Period, now)
		if p := t.peaks[peakKey{id: r.id, start: start.Unix()}]; p != nil {
			spent[i] = p.v.Float64()
		}
	}
	t.mu.Unlock()
	for i, r := range rs.all {
		subject := r.Match
		if r.each {
			subject = ""
		}
		ch <- prometheus.MustNewConstMetric(g.m.spend, prometheus.GaugeValue, spent[i], r.Name, subject)
		ch <- prometheus.MustNewConstMetric(g.m.limit, prometheus.GaugeValue, r.limit.Float64(), r.Name, subject)
	}
}
