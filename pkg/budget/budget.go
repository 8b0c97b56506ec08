// Package budget enforces spend budgets in dollars per user, team, tenant
// and cost center, per UTC calendar day or month: a hard budget refuses a
// caller who has reached it (429, before any STS call) until the period
// resets; a soft one only counts and logs the thresholds spend crosses.
//
// Spend is what Bedrock reported: the proxy calls Spend after each
// response with the request's exact cost (pkg/pricing). A request is
// never cut off midway, so a stream that crosses the limit finishes and
// the next request is refused (Check refuses when spend >= limit); a
// budget can therefore be overrun by the requests in flight when it was
// reached.
//
// In one replica the spend lives in memory and is rebuilt from the usage
// ledger at start (Rebuild, RebuildFromLedger): the ledger is the source
// of truth, so nothing else is persisted and a restart loses nothing the
// ledger kept.
//
// In fleet mode (Options.Fleet) the replicas share the spend through Redis,
// one integer counter of picodollars per budget, subject and period,
//
//	<fleet.key_prefix>{budget}:<name>:<scope>:<subject>:<2026-11-30 or 2026-11>
//
// expiring an hour after its period ends. Spend adds to it in the
// background (INCRBY in a MULTI, batched by one flusher goroutine); Check
// reads every counter a request needs in one round trip (MGET). While Redis is unavailable each replica enforces
// budgets on its own view, which is the fleet's spend as it last saw it
// from Redis plus its own spend since: the fleet as a whole may then
// overrun a budget by what the other replicas spent during the outage.
// What a replica spends meanwhile is kept and added to Redis when it
// answers again, so the fleet's counters end up complete; only what is
// still unsent when the replica stops (Close says how much) is missing
// from Redis, though not from its ledger. No request fails because Redis
// is down.
//
// Metrics: bedrock_gateway_budget_spend_usd and _limit_usd{budget,
// subject}, bedrock_gateway_budget_refusals_total{budget} and
// bedrock_gateway_budget_threshold_crossings_total{budget, threshold}.
// Every label value is configured: a budget for each user is one series,
// not one per user, whose spend gauge is the most any one user spent.
package budget

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/fleet"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// Options are what New takes besides the config.
type Options struct {
	// Fleet shares spend between replicas through Redis; nil keeps it in
	// this process.
	Fleet *fleet.Store
	// Registerer receives the metrics (see newMetrics); nil registers
	// none.
	Registerer prometheus.Registerer
	// Logger receives threshold crossings and Redis fallbacks. Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock that decides the period; default time.Now.
	Now func() time.Time
}

// Tracker counts spend against the configured budgets and refuses
// callers whose hard budget is spent. Safe for concurrent use. A nil
// *Tracker has no budgets: Check and Spend do nothing.
type Tracker struct {
	fleet *fleet.Store
	log   *slog.Logger
	now   func() time.Time
	m     *metrics

	rules    atomic.Pointer[ruleset]
	reloadMu sync.Mutex // one install at a time: metrics are bound to the rules they replace
	cal      atomic.Pointer[calendar]

	mu      sync.Mutex
	idents  map[ident]*ident
	entries map[entryKey]*entry
	peaks   map[peakKey]*peak
	dirty   map[entryKey]struct{} // fleet: entries with pending spend
	sweepAt time.Time             // when entries of ended periods are next dropped

	// flushMu is held by a flush (one at a time, so Flush waits for one
	// in flight) and shared by reads of Redis, which then see each
	// flush's spend either in Redis or still unsent, never both.
	flushMu sync.RWMutex
	onLocal atomic.Bool // the last Redis call failed; for logging changes only
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	closed  sync.Once
}

// ruleset is one config's rules; swapped whole by Reload.
type ruleset struct {
	all  []*rule
	hard []*rule // those Check looks at
	byID map[*ident]*rule
}

// ident is what a budget's spend is counted under. Scope and period are
// part of it so that a reload changing either starts the budget afresh
// rather than reading a count made under other rules. Interned
// (Tracker.idents), so that a pointer stands for it in map keys: hashing
// one pointer instead of three strings is most of the cost of a lookup.
type ident struct {
	budget string
	scope  Scope
	period Period
}

// entryKey names the spend of one subject under one budget in one period.
type entryKey struct {
	id      *ident
	subject string
	start   int64 // the period's start, Unix seconds
}

// peakKey names one budget's period.
type peakKey struct {
	id    *ident
	start int64
}

// entry is the spend behind one entryKey.
type entry struct {
	// spent is the spend itself in one replica; in fleet mode, the
	// highest total Redis has reported (a period's spend never goes
	// down).
	spent pricing.Money
	// unsent (fleet mode) is what this replica spent that Redis has not
	// confirmed yet; pending is the part of it no flush has taken.
	unsent, pending pricing.Money
	// alerted is how many of the rule's thresholds (lowest first) are
	// known to be crossed: they are not reported again.
	alerted int
	end     time.Time
	peak    *peak // of its budget and period
	// readAt (fleet mode) is when spent was last read from Redis: Check
	// trusts it for FleetReadInterval.
	readAt time.Time
}

// view is this replica's best knowledge of the entry's spend.
func (e *entry) view() pricing.Money { return add(e.spent, e.unsent) }

// peak is the most any one subject of a budget spent in a period.
type peak struct {
	v   pricing.Money
	end time.Time
}

// New returns a Tracker enforcing cfg. It fails if cfg is invalid or the
// metrics cannot be registered. Call Close when done with it.
func New(cfg Config, o Options) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Tracker{
		fleet:   o.Fleet,
		log:     o.Logger,
		now:     o.Now,
		idents:  map[ident]*ident{},
		entries: map[entryKey]*entry{},
		peaks:   map[peakKey]*peak{},
		dirty:   map[entryKey]struct{}{},
	}
	var err error
	if t.m, err = newMetrics(o.Registerer, t); err != nil {
		return nil, err
	}
	t.install(compile(cfg))
	if t.fleet != nil {
		t.kick, t.stop, t.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go t.flusher()
	}
	return t, nil
}

// Reload replaces the budgets with cfg's, keeping the spend counted so far
// for every budget whose name, scope and period are unchanged (a new limit
// or mode applies to it at once). An invalid cfg changes nothing.
func (t *Tracker) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	t.install(compile(cfg))
	return nil
}

// install makes rules current, with their metrics. Thresholds may have
// moved: what is already crossed under the new ones is not news. The
// swap and that recount happen under t.mu, where Spend reads the rules,
// so no spend is judged against one config's thresholds and the other's
// count.
func (t *Tracker) install(rules []*rule) {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	rs := &ruleset{all: rules, byID: make(map[*ident]*rule, len(rules))}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range rules {
		k := ident{budget: r.Name, scope: r.Scope, period: r.Period}
		if r.id = t.idents[k]; r.id == nil {
			r.id = &k
			t.idents[k] = r.id
		}
		rs.byID[r.id] = r
		if r.Mode == Hard {
			rs.hard = append(rs.hard, r)
		}
	}
	t.m.bind(t.rules.Load(), rs)
	t.rules.Store(rs)
	for k, e := range t.entries {
		if r := rs.match(k); r != nil {
			e.alerted = r.crossed(e.view())
		}
	}
}

// match returns the current rule k was counted under, if any.
func (rs *ruleset) match(k entryKey) *rule {
	return rs.byID[k.id]
}

// crossed returns how many of r's thresholds spent has reached.
func (r *rule) crossed(spent pricing.Money) int {
	n := 0
	for n < len(r.thresholds) && spent >= r.thresholds[n].at {
		n++
	}
	return n
}

// ExceededError is Check's answer to a caller whose hard budget is spent:
// the proxy answers 429 with Error() as the message and RetryAfter as
// Retry-After. It holds no secret; Subject is the caller's own user, team,
// tenant or cost center.
type ExceededError struct {
	Budget  string
	Scope   Scope
	Subject string
	Period  Period
	Limit   pricing.Money
	Spent   pricing.Money
	// ResetAt is when the period ends and the budget starts again from 0.
	ResetAt time.Time
	// RetryAfter is the time left until ResetAt.
	RetryAfter time.Duration
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("budget %q is spent: %s %q has spent $%s of its $%s limit %s; it resets at %s",
		e.Budget, strings.ReplaceAll(string(e.Scope), "_", " "), e.Subject, e.Spent, e.Limit, e.Period.words(),
		e.ResetAt.UTC().Format(time.RFC3339))
}

// Check returns nil when id may make a request, or an *ExceededError
// when one of its hard budgets is spent (the one resetting last, so that
// its RetryAfter is when the caller may succeed). It never fails for any
// other reason: when Redis cannot answer in fleet mode, it answers from
// this replica's view. Without hard budgets it costs one atomic load; in
// one replica, a map lookup under a mutex per budget that applies.
func (t *Tracker) Check(ctx context.Context, id auth.Identity) error {
	if t == nil {
		return nil
	}
	rs := t.rules.Load()
	if len(rs.hard) == 0 {
		return nil
	}
	now := t.now()
	var worst view
	if t.fleet != nil {
		var fresh bool
		if worst, fresh = t.recentWorst(rs.hard, id, now); !fresh {
			vs, _ := t.views(ctx, rs.hard, id, now)
			for _, v := range vs {
				if v.spent >= v.r.limit && (worst.r == nil || v.end.After(worst.end)) {
					worst = v
				}
			}
		}
	} else {
		// Inline rather than through views, so that it allocates nothing.
		t.mu.Lock()
		for _, r := range rs.hard {
			subject, ok := r.subject(id)
			if !ok {
				continue
			}
			start, end := t.bounds(r.Period, now)
			e := t.entries[keyOf(r, subject, start)]
			if e != nil && e.spent >= r.limit && (worst.r == nil || end.After(worst.end)) {
				worst = view{r: r, subject: subject, start: start, end: end, spent: e.spent}
			}
		}
		t.mu.Unlock()
	}
	if worst.r == nil {
		return nil
	}
	worst.r.refusals.Inc()
	return &ExceededError{
		Budget: worst.r.Name, Scope: worst.r.Scope, Subject: worst.subject, Period: worst.r.Period,
		Limit: worst.r.limit, Spent: worst.spent, ResetAt: worst.end, RetryAfter: worst.end.Sub(now),
	}
}

// Spend counts cost, what a request by id cost, against every budget that
// applies to id, in the period current now (not when the request began:
// Rebuild counts a ledger record at its end too). It never blocks on
// Redis: in fleet mode the flusher adds it there in the background.
// Costs of 0 or less are ignored (a model without a price costs nothing
// the gateway can count).
func (t *Tracker) Spend(id auth.Identity, cost pricing.Money) {
	if t == nil || cost <= 0 {
		return
	}
	rs := t.rules.Load()
	if len(rs.all) == 0 {
		return
	}
	now := t.now()
	var alerts []alert
	touched := false
	t.mu.Lock()
	rs = t.rules.Load() // as of now: a Reload swaps it under t.mu
	t.sweepLocked(now)
	for _, r := range rs.all {
		subject, ok := r.subject(id)
		if !ok {
			continue
		}
		touched = true
		start, end := t.bounds(r.Period, now)
		k := keyOf(r, subject, start)
		e := t.entryLocked(k, end)
		before := e.view()
		if t.fleet != nil {
			// Threshold crossings are decided when Redis has the total.
			e.unsent, e.pending = add(e.unsent, cost), add(e.pending, cost)
			t.dirty[k] = struct{}{}
		} else {
			e.spent = add(e.spent, cost)
			alerts = t.alertsLocked(alerts, r, k, e, before, e.spent)
		}
		e.raisePeak()
	}
	t.mu.Unlock()
	t.report(alerts)
	if touched && t.fleet != nil {
		select {
		case t.kick <- struct{}{}:
		default: // a flush is already due; it takes this spend too
		}
	}
}

// Status is one budget as it applies to a caller, for /gateway/whoami.
type Status struct {
	Budget  string `json:"budget"`
	Scope   Scope  `json:"scope"`
	Subject string `json:"subject"`
	Period  Period `json:"period"`
	Mode    Mode   `json:"mode"`
	// Limit and Spent are exact dollars (JSON numbers).
	Limit pricing.Money `json:"limit_usd"`
	Spent pricing.Money `json:"spent_usd"`
	// Exceeded: Spent has reached Limit (a hard budget refuses).
	Exceeded bool      `json:"exceeded"`
	ResetAt  time.Time `json:"resets_at"`
	// Local: in fleet mode Redis could not be read, so Spent is this
	// replica's view.
	Local bool `json:"local,omitempty"`
}

// Describe returns every budget that applies to id, in config order, with
// its spend in the current period (fleet-wide in fleet mode, in one Redis
// round trip).
func (t *Tracker) Describe(ctx context.Context, id auth.Identity) []Status {
	if t == nil {
		return nil
	}
	vs, local := t.views(ctx, t.rules.Load().all, id, t.now())
	out := make([]Status, 0, len(vs))
	for _, v := range vs {
		out = append(out, Status{
			Budget: v.r.Name, Scope: v.r.Scope, Subject: v.subject, Period: v.r.Period, Mode: v.r.Mode,
			Limit: v.r.limit, Spent: v.spent, Exceeded: v.spent >= v.r.limit, ResetAt: v.end,
			Local: local && t.fleet != nil,
		})
	}
	return out
}

// FleetReadInterval is how long, in fleet mode, Check trusts the fleet's
// spend it last read from Redis for a budget and subject, adding what this
// replica spent since, before it reads again: a request then costs a Redis
// round trip at most once per interval per caller, not every time, and a
// budget another replica spent is enforced here within the interval (plus
// the moment that replica's flusher takes to send it).
const FleetReadInterval = 250 * time.Millisecond

// recentWorst decides Check from this replica's entries when every hard
// budget that applies to id was read from Redis less than
// FleetReadInterval ago; fresh is false when one was not, and Redis must
// be read.
func (t *Tracker) recentWorst(rules []*rule, id auth.Identity, now time.Time) (worst view, fresh bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range rules {
		subject, ok := r.subject(id)
		if !ok {
			continue
		}
		start, end := t.bounds(r.Period, now)
		e := t.entries[keyOf(r, subject, start)]
		if e == nil || e.readAt.IsZero() || now.Sub(e.readAt) >= FleetReadInterval || now.Before(e.readAt) {
			return view{}, false
		}
		if spent := e.view(); spent >= r.limit && (worst.r == nil || end.After(worst.end)) {
			worst = view{r: r, subject: subject, start: start, end: end, spent: spent}
		}
	}
	return worst, true
}

// view is one budget's spend as it applies to a caller now.
type view struct {
	r          *rule
	subject    string
	start, end time.Time
	spent      pricing.Money
}

// views returns the spend of each of rules that applies to id, reading
// Redis in fleet mode (one MGET) and this replica's entries otherwise or
// when Redis cannot answer (local).
func (t *Tracker) views(ctx context.Context, rules []*rule, id auth.Identity, now time.Time) (vs []view, local bool) {
	for _, r := range rules {
		if subject, ok := r.subject(id); ok {
			start, end := t.bounds(r.Period, now)
			vs = append(vs, view{r: r, subject: subject, start: start, end: end})
		}
	}
	if len(vs) == 0 {
		return nil, false
	}
	var totals []pricing.Money
	if t.fleet != nil {
		// Held until the totals are applied: a flush that lands in
		// between would have its spend counted twice, in the totals
		// and as unsent.
		t.flushMu.RLock()
		defer t.flushMu.RUnlock()
		var err error
		if totals, err = t.read(ctx, vs); err != nil {
			t.fellBack(ctx, err)
		} else {
			t.shared()
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
	for i := range vs {
		v := &vs[i]
		k := keyOf(v.r, v.subject, v.start)
		e := t.entries[k]
		if totals != nil {
			if e == nil {
				e = t.entryLocked(k, v.end)
			}
			e.spent = max(e.spent, totals[i])
			e.readAt = now
			e.raisePeak()
		}
		if e != nil {
			v.spent = e.view() // unsent spend is not in the totals
		}
	}
	return vs, totals == nil
}

func keyOf(r *rule, subject string, start time.Time) entryKey {
	return entryKey{id: r.id, subject: subject, start: start.Unix()}
}

// entryLocked returns k's entry, creating it. t.mu is held.
func (t *Tracker) entryLocked(k entryKey, end time.Time) *entry {
	e := t.entries[k]
	if e == nil {
		pk := peakKey{id: k.id, start: k.start}
		p := t.peaks[pk]
		if p == nil {
			p = &peak{end: end}
			t.peaks[pk] = p
		}
		e = &entry{end: end, peak: p}
		t.entries[k] = e
	}
	return e
}

// raisePeak notes the entry's spend in its budget's peak. Tracker.mu is
// held.
func (e *entry) raisePeak() { e.peak.v = max(e.peak.v, e.view()) }

// sweepLocked drops, once a day, the entries of periods that have ended,
// so that a budget for each user holds only this period's active users.
// Entries with spend Redis has not taken yet stay until the flusher is
// done with them. t.mu is held.
func (t *Tracker) sweepLocked(now time.Time) {
	if now.Before(t.sweepAt) {
		return
	}
	for k, e := range t.entries {
		if !now.Before(e.end) && e.unsent == 0 {
			delete(t.entries, k)
		}
	}
	for k, p := range t.peaks {
		if !now.Before(p.end) {
			delete(t.peaks, k)
		}
	}
	_, t.sweepAt = Daily.bounds(now) // every period ends at a UTC midnight
}

// alert is a threshold crossing to report.
type alert struct {
	r       *rule
	i       int // index in r.thresholds
	subject string
	period  string
	spent   pricing.Money
}

// alertsLocked appends the thresholds of r that k's spend crossed going
// from before to after, and marks them reported. A threshold already
// below before was crossed by a spend another replica reported (fleet
// mode): marked, not reported again. t.mu is held.
func (t *Tracker) alertsLocked(alerts []alert, r *rule, k entryKey, e *entry, before, after pricing.Money) []alert {
	for i := e.alerted; i < len(r.thresholds) && r.thresholds[i].at <= after; i++ {
		if before < r.thresholds[i].at {
			alerts = append(alerts, alert{r: r, i: i, subject: k.subject, period: r.Period.label(time.Unix(k.start, 0).UTC()), spent: after})
		}
		e.alerted = i + 1
	}
	return alerts
}

// report counts and logs threshold crossings, outside t.mu.
func (t *Tracker) report(alerts []alert) {
	for _, a := range alerts {
		th := a.r.thresholds[a.i]
		a.r.crossings[a.i].Inc()
		t.log.Warn("budget threshold crossed",
			"budget", a.r.Name, "mode", string(a.r.Mode), "scope", string(a.r.Scope), "subject", a.subject,
			"period", a.period, "threshold", th.label, "spent_usd", a.spent.String(), "limit_usd", a.r.limit.String())
	}
}

// fellBack notes that Redis could not answer, logging the change from
// shared budgets. A caller that went away is not Redis failing.
func (t *Tracker) fellBack(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	if !t.onLocal.Swap(true) {
		t.log.Warn("budgets: Redis unavailable; each replica enforces budgets on its own view until it answers", "error", err)
	}
}

// shared notes that Redis answered, logging the change from local budgets.
func (t *Tracker) shared() {
	if t.onLocal.Swap(false) {
		t.log.Info("budgets: shared through Redis again")
	}
}

// Close stops the flusher after a last attempt to add unsent spend to
// Redis, and reports what it could not add. Call it before closing the
// fleet store. Closing twice, or a nil Tracker, is harmless.
func (t *Tracker) Close() error {
	if t == nil || t.fleet == nil {
		return nil
	}
	t.closed.Do(func() {
		close(t.stop)
		<-t.done
	})
	var lost pricing.Money
	t.mu.Lock()
	for _, e := range t.entries {
		lost = add(lost, e.unsent)
	}
	t.mu.Unlock()
	if lost > 0 {
		return fmt.Errorf("budget: $%s of spend was not added to Redis (it is in the usage ledger): %w", lost, fleet.ErrUnavailable)
	}
	return nil
}

// add returns a+b, saturating: a count that cannot grow further has
// exceeded any limit anyway.
func add(a, b pricing.Money) pricing.Money {
	s, ok := a.Add(b)
	if !ok {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}
