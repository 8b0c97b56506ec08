package budget

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bedrock-gateway/gateway/pkg/fleet"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// keyTag is the Redis Cluster hash tag of every budget key, so that one
// MGET reads all the budgets of a request and one MULTI adds to many.
// A key is
//
//	<fleet.key_prefix>{budget}:<name>:<scope>:<subject>:<period>
//
// for example bedrock-gateway:{budget}:ds-monthly:team:data-science:2026-11
// or ...:alice-daily:user:alice@acme.org:2026-11-30, holding the period's
// spend in picodollars (an integer string, added to with INCRBY). Each
// write sets it to expire keyGrace after its period ends, so Redis holds
// only current periods.
const keyTag = "{budget}"

// keyGrace is how long a period's key outlives the period: a replica whose
// clock runs a little behind still reads and adds to the period it thinks
// current, and each write sets the expiry again anyway.
const keyGrace = time.Hour

// maxBatch bounds how many counters one flush sends, so that the backlog of
// an outage goes to Redis in calls that fit its timeout.
const maxBatch = 256

// retryInterval is how often the flusher tries Redis again while it holds
// spend Redis did not take. The store's breaker makes a try cheap while
// Redis is known to be down.
const retryInterval = time.Second

// errReply: Redis answered something other than a counter (a key of the
// same name set by someone else). Treated as Redis unavailable.
var errReply = errors.New("unexpected reply")

// redisKey is k's counter.
func (t *Tracker) redisKey(k entryKey) string {
	return t.fleet.Key(keyTag, k.id.budget, string(k.id.scope), k.subject, k.id.period.label(time.Unix(k.start, 0).UTC()))
}

// read returns the fleet's spend for each of vs, in one MGET. The values
// are read as integers by the client, never through Lua, whose numbers are
// doubles: picodollars above 2^53 ($9007) would lose their last digits.
func (t *Tracker) read(ctx context.Context, vs []view) ([]pricing.Money, error) {
	keys := make([]string, len(vs))
	for i, v := range vs {
		keys[i] = t.redisKey(keyOf(v.r, v.subject, v.start))
	}
	var res []any
	err := t.fleet.Do(ctx, "budget_read", func(ctx context.Context, rdb redis.UniversalClient) error {
		var err error
		res, err = rdb.MGet(ctx, keys...).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(res) != len(keys) {
		return nil, fmt.Errorf("budget_read: %w: %d values for %d keys", errReply, len(res), len(keys))
	}
	totals := make([]pricing.Money, len(keys))
	for i, x := range res {
		switch x := x.(type) {
		case nil: // nothing spent yet, or the key expired
		case string:
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("budget_read: %w: %s holds %.40q", errReply, keys[i], x)
			}
			totals[i] = pricing.Money(n)
		default:
			return nil, fmt.Errorf("budget_read: %w: %T", errReply, x)
		}
	}
	return totals, nil
}

// flusher adds pending spend to Redis whenever Spend has some, and every
// retryInterval while Redis does not take it, until Close.
func (t *Tracker) flusher() {
	defer close(t.done)
	retry := time.NewTimer(retryInterval)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-t.stop:
			t.flush(context.Background())
			return
		case <-t.kick:
		case <-retry.C:
		}
		if t.flush(context.Background()) != nil {
			retry.Reset(retryInterval)
		}
	}
}

// Flush adds the spend made so far, and any a flush in flight holds, to
// Redis. It returns an error wrapping fleet.ErrUnavailable when some
// remains unsent. The flusher does this by itself; Flush is for a test,
// or a shutdown that wants to know. In one replica it does nothing.
func (t *Tracker) Flush(ctx context.Context) error {
	if t == nil || t.fleet == nil {
		return nil
	}
	return t.flush(ctx)
}

// spendItem is one counter's share of a flush.
type spendItem struct {
	k   entryKey
	amt pricing.Money
	key string
	ttl time.Duration
}

// flush sends pending spend in batches of at most maxBatch until none is
// left or Redis fails.
func (t *Tracker) flush(ctx context.Context) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	for {
		batch := t.takePending()
		if len(batch) == 0 {
			return nil
		}
		totals, err := t.send(ctx, batch)
		t.settle(ctx, batch, totals, err)
		if err != nil {
			return err
		}
	}
}

// takePending moves up to maxBatch entries' pending spend into a batch.
// Spend of a period whose key has expired is dropped: that period is
// over, and a key recreated for it would be read by no one.
func (t *Tracker) takePending() []spendItem {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var batch []spendItem
	for k := range t.dirty {
		if len(batch) == maxBatch {
			break
		}
		delete(t.dirty, k)
		e := t.entries[k]
		if e == nil || e.pending <= 0 {
			continue
		}
		amt := e.pending
		e.pending = 0
		ttl := e.end.Add(keyGrace).Sub(now)
		if ttl <= 0 {
			e.unsent -= amt
			continue
		}
		batch = append(batch, spendItem{k: k, amt: amt, key: t.redisKey(k), ttl: ttl})
	}
	return batch
}

// send adds batch to Redis in one MULTI: INCRBY and PEXPIRE per counter.
// The counters share keyTag's slot, as MULTI needs in a Cluster.
func (t *Tracker) send(ctx context.Context, batch []spendItem) ([]pricing.Money, error) {
	totals := make([]pricing.Money, len(batch))
	err := t.fleet.Do(ctx, "budget_spend", func(ctx context.Context, rdb redis.UniversalClient) error {
		incrs := make([]*redis.IntCmd, len(batch))
		_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i, b := range batch {
				incrs[i] = p.IncrBy(ctx, b.key, int64(b.amt))
				p.PExpire(ctx, b.key, b.ttl)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, c := range incrs {
			totals[i] = pricing.Money(c.Val())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return totals, nil
}

// settle applies a flush's outcome. Sent: the totals Redis returned are
// the fleet's spend, and a threshold is reported by the replica whose
// INCRBY crossed it, so once for the fleet. Not sent because Redis was
// unavailable: the spend is pending again, and thresholds are judged on
// this replica's view (during an outage each replica may report a
// crossing the fleet makes). Refused by Redis (an overflowing counter, a
// key of another type): kept as local spend, never retried.
func (t *Tracker) settle(ctx context.Context, batch []spendItem, totals []pricing.Money, err error) {
	retry := errors.Is(err, fleet.ErrUnavailable) || ctx.Err() != nil
	switch {
	case err == nil:
		t.shared()
	case retry:
		t.fellBack(ctx, err)
	default:
		t.log.Error("budgets: Redis refused spend; counting it on this replica only", "error", err)
	}
	var alerts []alert
	t.mu.Lock()
	rs := t.rules.Load()
	for i, b := range batch {
		e := t.entries[b.k]
		if e == nil { // cannot happen: entries with unsent spend are kept
			continue
		}
		var before, after pricing.Money
		switch {
		case err == nil:
			e.unsent -= b.amt
			after = totals[i]
			before = after - b.amt
			e.spent = max(e.spent, after)
		case retry:
			e.pending = add(e.pending, b.amt)
			t.dirty[b.k] = struct{}{}
			after = e.view()
			before = after - b.amt
		default:
			e.unsent -= b.amt
			e.spent = add(e.spent, b.amt)
			after = e.view()
			before = after - b.amt
		}
		if r := rs.match(b.k); r != nil {
			alerts = t.alertsLocked(alerts, r, b.k, e, before, after)
		}
		e.raisePeak()
	}
	t.mu.Unlock()
	t.report(alerts)
}
