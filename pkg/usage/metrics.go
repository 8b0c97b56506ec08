package usage

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Operations are the operations that get their own value of the operation
// label: the Bedrock Runtime operations (names as in the bedrock-runtime
// service model) and the OpenAI-compatible API's (ChatCompletions,
// ListModels, Embeddings). Any other operation, and the empty one, is reported as
// "other".
var Operations = []string{
	"Converse",
	"ConverseStream",
	"InvokeModel",
	"InvokeModelWithResponseStream",
	"CountTokens",
	"ApplyGuardrail",
	"StartAsyncInvoke",
	"GetAsyncInvoke",
	"ListAsyncInvokes",
	"InvokeModelWithBidirectionalStream",
	"ChatCompletions",
	"ListModels",
	"Embeddings",
}

// Label values that stand in for values outside a configured set. They, and
// "", may not be listed in MetricsConfig.
const (
	LabelOther = "other" // a value not in the allowed set
	LabelNone  = "none"  // an empty value (unauthenticated, no model)
)

// MaxLabelValues is the most values MetricsConfig may list for one label.
// Series multiply across labels (teams x tenants x models x operations x
// status classes), so the lists are what bounds the metrics' cardinality;
// a list longer than this is a mistake, such as a list of users.
const MaxLabelValues = 1000

// operationSet is built from its own copy so that a caller changing
// Operations cannot widen the label set.
var operationSet = newLabelSet(append([]string(nil), Operations...))

// durationBuckets suit LLM calls: tens of milliseconds for a refusal or a
// cached CountTokens, up to minutes for long generations. Slower calls land
// in +Inf.
var durationBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300}

// MetricsConfig configures Metrics.
type MetricsConfig struct {
	// Registerer receives the metrics. Nil means they are kept but not
	// exported.
	Registerer prometheus.Registerer
	// Teams, Tenants and Models are the label values reported as they are;
	// any other value is reported as "other" and an empty one as "none", so
	// the number of series stays bounded whatever callers send. "other",
	// "none" and "" may not be listed, nor more than MaxLabelValues values.
	Teams, Tenants, Models []string
}

// Validate reports every problem in c at once (errors.Join), each message
// starting with the key of the list in the usage block:
// metric_labels.teams, metric_labels.tenants or metric_labels.models. It
// has no side effects; NewMetrics calls it.
func (c MetricsConfig) Validate() error {
	var errs []error
	for _, l := range []struct {
		key    string
		values []string
	}{{"metric_labels.teams", c.Teams}, {"metric_labels.tenants", c.Tenants}, {"metric_labels.models", c.Models}} {
		if len(l.values) > MaxLabelValues {
			errs = append(errs, fmt.Errorf("%s: at most %d values, got %d", l.key, MaxLabelValues, len(l.values)))
		}
		for _, v := range l.values {
			if v == "" || v == LabelOther || v == LabelNone {
				errs = append(errs, fmt.Errorf("%s: %q is reserved", l.key, v))
			}
		}
	}
	return errors.Join(errs...)
}

// Metrics turns Records into Prometheus counters and histograms of
// requests, tokens, latency, client disconnects and upstream stream cuts. No label carries a user,
// session name, request ID or any value outside the configured sets.
type Metrics struct {
	requests    *prometheus.CounterVec   // operation, model, team, tenant, code
	tokens      *prometheus.CounterVec   // operation, model, team, tenant, type
	duration    *prometheus.HistogramVec // operation
	ttfb        *prometheus.HistogramVec // operation
	disconnects *prometheus.CounterVec   // operation
	streamCuts  *prometheus.CounterVec   // operation
	cost        *prometheus.CounterVec   // operation, model, team, tenant
	unpriced    *prometheus.CounterVec   // operation, model

	teams, tenants, models labelSet
	// byOp holds each operation's series of the vectors labelled by
	// operation alone, looked up once here rather than on every request.
	byOp map[string]opSeries
	// combos holds the requests, tokens and cost series of each
	// operation, model, team and tenant seen, so that a request looks its
	// series up once, in a map, instead of in each vector: the vectors
	// hash every label value byte by byte and lock on each lookup, four
	// times per billed request. It grows with the series the vectors hold
	// and is bounded as they are, by the configured label sets.
	mu     sync.RWMutex
	combos map[comboKey]*comboSeries
}

// comboKey is the labels the requests, tokens and cost series share.
type comboKey struct{ op, model, team, tenant string }

// comboSeries are one comboKey's counters, each created by its vector at
// its first use, so that a series nothing touched is not exported, and
// then kept.
type comboSeries struct {
	requests [len(statusClasses)]lazyCounter
	tokens   [len(tokenTypes)]lazyCounter
	cost     lazyCounter
}

// statusClasses are the values of the requests series' code label, as
// statusClassIndex numbers them.
var statusClasses = [...]string{"2xx", "3xx", "4xx", "5xx", LabelOther}

// tokenTypes are the values of the tokens series' type label.
var tokenTypes = [...]string{"input", "output", "cache_read", "cache_write"}

// lazyCounter is a counter series found once.
type lazyCounter struct {
	got atomic.Pointer[prometheus.Counter]
}

// or returns the counter, finding it with find the first time. Two
// requests may both find it: the vector returns the same series to both.
func (l *lazyCounter) or(find func() prometheus.Counter) prometheus.Counter {
	if c := l.got.Load(); c != nil {
		return *c
	}
	c := find()
	l.got.Store(&c)
	return c
}

// combo returns k's series, adding them on first sight.
func (m *Metrics) combo(k comboKey) *comboSeries {
	m.mu.RLock()
	s := m.combos[k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.combos[k]; s == nil {
		s = new(comboSeries)
		m.combos[k] = s
	}
	return s
}

// opSeries are one operation's series.
type opSeries struct {
	duration, ttfb prometheus.Observer
	disconnects    prometheus.Counter
}

// NewMetrics builds the usage metrics and registers them on
// cfg.Registerer. It fails when cfg is invalid (see Validate) or when
// registration fails (in which case nothing stays registered).
func NewMetrics(cfg MetricsConfig) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("usage metrics: %w", err)
	}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_requests_total",
			Help: "Requests handled by the gateway, by operation, model, team, tenant and HTTP status class.",
		}, []string{"operation", "model", "team", "tenant", "code"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_tokens_total",
			Help: "Tokens Bedrock reported, by operation, model, team, tenant and type (input, output, cache_read, cache_write).",
		}, []string{"operation", "model", "team", "tenant", "type"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bedrock_gateway_request_duration_seconds",
			Help:    "Time from request arrival to the end of the answer, by operation.",
			Buckets: durationBuckets,
		}, []string{"operation"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bedrock_gateway_time_to_first_byte_seconds",
			Help:    "Time from request arrival to the first byte of the answer sent to the client, by operation.",
			Buckets: durationBuckets,
		}, []string{"operation"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_client_disconnects_total",
			Help: "Requests whose client went away before the answer was complete, by operation.",
		}, []string{"operation"}),
		// A cut stream's request is 2xx in requests_total (the client got
		// HTTP 200), so cuts get their own count rather than a label on
		// every request series.
		streamCuts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_upstream_stream_cuts_total",
			Help: "Event streams Bedrock ended before finishing them, after HTTP 200 (connection closed or reset, or ended inside a frame), by operation.",
		}, []string{"operation"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_cost_usd_total",
			Help: "What Bedrock charges for the tokens it reported, in US dollars at the price catalogue's on-demand prices, by operation, model, team and tenant.",
		}, []string{"operation", "model", "team", "tenant"}),
		unpriced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_unpriced_requests_total",
			Help: "Requests that consumed tokens of a model the price catalogue has no price for (their cost is null in the ledger and missing from bedrock_gateway_cost_usd_total), by operation and model.",
		}, []string{"operation", "model"}),
		teams:   newLabelSet(cfg.Teams),
		tenants: newLabelSet(cfg.Tenants),
		models:  newLabelSet(cfg.Models),
	}
	m.combos = make(map[comboKey]*comboSeries)
	m.byOp = make(map[string]opSeries, len(Operations)+1)
	for _, op := range append(Operations[:len(Operations):len(Operations)], LabelOther) {
		// disconnects is exported from zero; the histograms appear
		// with their first observation.
		m.byOp[op] = opSeries{duration: &lazyObserver{vec: m.duration, op: op}, ttfb: &lazyObserver{vec: m.ttfb, op: op},
			disconnects: m.disconnects.WithLabelValues(op)}
	}
	for _, op := range []string{opConverseStream, opInvokeStream} {
		m.streamCuts.WithLabelValues(op) // the operations that stream
	}
	if cfg.Registerer != nil {
		if err := m.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// register registers every metric on r, or none.
func (m *Metrics) register(r prometheus.Registerer) error {
	cs := []prometheus.Collector{m.requests, m.tokens, m.duration, m.ttfb, m.disconnects, m.streamCuts, m.cost, m.unpriced}
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			for _, done := range cs[:i] {
				r.Unregister(done)
			}
			return fmt.Errorf("register usage metrics: %w", err)
		}
	}
	return nil
}

// Record counts r: one request, its non-zero token counts, its latency and
// time to first byte when known, a disconnect if the client went away, and
// a cut if Bedrock ended its stream early (ErrorUpstreamStreamCut).
func (m *Metrics) Record(r Record) {
	op := operationLabel(r.Operation)
	model, team, tenant := m.models.value(r.Model), m.teams.value(r.Team), m.tenants.value(r.Tenant)

	c := m.combo(comboKey{op, model, team, tenant})
	code := statusClassIndex(r.Status)
	c.requests[code].or(func() prometheus.Counter {
		return m.requests.WithLabelValues(op, model, team, tenant, statusClasses[code])
	}).Inc()
	for i, n := range [len(tokenTypes)]int64{r.Input, r.Output, r.CacheRead, r.CacheWrite} {
		if n > 0 { // a negative Add would panic; Bedrock never reports one
			c.tokens[i].or(func() prometheus.Counter {
				return m.tokens.WithLabelValues(op, model, team, tenant, tokenTypes[i])
			}).Add(float64(n))
		}
	}
	s := m.byOp[op]
	if r.Latency > 0 {
		s.duration.Observe(r.Latency.Seconds())
	} else if r.LatencyMS > 0 {
		s.duration.Observe(r.LatencyMS / 1000)
	}
	if r.TimeToFirstByte > 0 {
		s.ttfb.Observe(r.TimeToFirstByte.Seconds())
	} else if r.TTFBMS > 0 {
		s.ttfb.Observe(r.TTFBMS / 1000)
	}
	if r.ClientGone {
		s.disconnects.Inc()
	}
	if r.ErrorType == ErrorUpstreamStreamCut {
		m.streamCuts.WithLabelValues(op).Inc()
	}
	switch {
	case r.Cost == nil && r.Tokens != (Tokens{}):
		m.unpriced.WithLabelValues(op, model).Inc()
	case r.Cost != nil && *r.Cost > 0:
		c.cost.or(func() prometheus.Counter {
			return m.cost.WithLabelValues(op, model, team, tenant)
		}).Add(r.Cost.Float64())
	}
}

// operationLabel is op if it is one of Operations, "other" otherwise
// (including the empty operation of a request no route matched).
func operationLabel(op string) string {
	if _, ok := operationSet[op]; ok {
		return op
	}
	return LabelOther
}

// statusClassIndex is the index in statusClasses of the code label:
// "2xx" to "5xx" for a final HTTP status (499, the client-gone status, is
// "4xx"), "other" for anything else, including 0 (no status recorded).
func statusClassIndex(status int) int {
	if status >= 200 && status < 600 {
		return status/100 - 2
	}
	return len(statusClasses) - 1
}

// labelSet is the allowed values of one label.
type labelSet map[string]struct{}

func newLabelSet(values []string) labelSet {
	s := make(labelSet, len(values))
	for _, v := range values {
		s[v] = struct{}{}
	}
	return s
}

// value is v if allowed, "none" if empty, "other" otherwise.
func (s labelSet) value(v string) string {
	if v == "" {
		return LabelNone
	}
	if _, ok := s[v]; ok {
		return v
	}
	return LabelOther
}

// lazyObserver is one operation's series of a histogram vector, created
// at its first observation (so that an operation never seen exports no
// empty histogram) and then kept, so later ones skip the vector's lookup.
type lazyObserver struct {
	vec *prometheus.HistogramVec
	op  string
	got atomic.Pointer[prometheus.Observer]
}

func (l *lazyObserver) Observe(v float64) {
	o := l.got.Load()
	if o == nil {
		obs := l.vec.WithLabelValues(l.op)
		l.got.Store(&obs)
		o = &obs
	}
	(*o).Observe(v)
}
