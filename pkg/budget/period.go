package budget

import "time"

// bounds returns the UTC calendar period of p holding t: [start, end).
func (p Period) bounds(t time.Time) (start, end time.Time) {
	y, m, d := t.UTC().Date()
	if p == Monthly {
		start = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0) // December rolls into January
	}
	start = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 0, 1)
}

// label names the period of p starting at start in Redis keys and logs:
// 2026-11-30 for a day, 2026-11 for a month.
func (p Period) label(start time.Time) string {
	if p == Monthly {
		return start.Format("2006-01")
	}
	return start.Format(time.DateOnly)
}

// words is how a message says "in the current period".
func (p Period) words() string {
	if p == Monthly {
		return "this month"
	}
	return "today"
}

// calendar is the current day and month, computed once a day rather than
// twice per budget and request.
type calendar struct{ day, month [2]time.Time }

// bounds is p.bounds(now), from the cached calendar while now is in its
// day.
func (t *Tracker) bounds(p Period, now time.Time) (start, end time.Time) {
	c := t.cal.Load()
	if c == nil || now.Before(c.day[0]) || !now.Before(c.day[1]) {
		c = &calendar{}
		c.day[0], c.day[1] = Daily.bounds(now)
		c.month[0], c.month[1] = Monthly.bounds(now)
		t.cal.Store(c)
	}
	if p == Monthly {
		return c.month[0], c.month[1]
	}
	return c.day[0], c.day[1]
}
