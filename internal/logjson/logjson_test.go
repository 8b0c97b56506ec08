package logjson

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// both logs r through slog.JSONHandler and through Handler, and returns
// what each wrote.
func both(t testing.TB, opts *slog.HandlerOptions, r slog.Record) (want, got string) {
	t.Helper()
	var a, b bytes.Buffer
	if err := slog.NewJSONHandler(&a, opts).Handle(context.Background(), r); err != nil {
		t.Fatalf("slog: %v", err)
	}
	if err := New(&b, opts).Handle(context.Background(), r); err != nil {
		t.Fatalf("logjson: %v", err)
	}
	// WriteAttrs, given the record's parts, writes the same line.
	var c bytes.Buffer
	var attrs []slog.Attr
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
	if err := New(&c, opts).WriteAttrs(context.Background(), r.Time, r.Level, r.Message, attrs); err != nil {
		t.Fatalf("logjson WriteAttrs: %v", err)
	}
	if c.String() != b.String() {
		t.Errorf("WriteAttrs wrote\n%q\nHandle wrote\n%q", c.String(), b.String())
	}
	return a.String(), b.String()
}

func record(tm time.Time, level slog.Level, msg string, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(tm, level, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

func TestSameAsSlog(t *testing.T) {
	now := time.Date(2026, 11, 30, 4, 23, 38, 123456789, time.UTC)
	zone := time.FixedZone("X", -7*3600-30*60)
	cases := map[string]slog.Record{
		"access line": record(now, slog.LevelInfo, "request",
			slog.String("request_id", "0123456789abcdef0123456789abcdef"), slog.String("method", "POST"),
			slog.String("operation", "Converse"), slog.Int("status", 200), slog.Duration("duration", 1234567*time.Nanosecond),
			slog.Int64("bytes_out", 312), slog.String("model", "anthropic.claude-3-haiku-20240307-v1:0"),
			slog.String("user", "alice@acme.org"), slog.Bool("client_gone", true), slog.Uint64("u", 1<<63)),
		"no attributes":            record(now, slog.LevelWarn, "w"),
		"zero time":                record(time.Time{}, slog.LevelError, "e", slog.Int("n", -1)),
		"other zone, monotonic":    record(time.Now().In(zone), slog.LevelDebug, "d"),
		"level between":            record(now, slog.LevelInfo+2, "odd level"),
		"escapes":                  record(now, slog.LevelInfo, "q\"\\\n\r\t\b\f\x00\x1f<>&\u2028\u2029\xff\xfe é 😀", slog.String("k\"ey\n", "v\x7f\u2029")),
		"error value (slow path)":  record(now, slog.LevelWarn, "x", slog.Any("error", errors.New("boom <b>"))),
		"group (slow path)":        record(now, slog.LevelInfo, "x", slog.Group("g", slog.Int("a", 1)), slog.String("after", "y")),
		"float (slow path)":        record(now, slog.LevelInfo, "x", slog.Float64("f", 1e-7)),
		"time attr (slow path)":    record(now, slog.LevelInfo, "x", slog.Time("t", now)),
		"empty key (slow path)":    record(now, slog.LevelInfo, "x", slog.String("", "v"), slog.Attr{}),
		"year 10000 (slow path)":   record(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "x"),
		"many attrs (slice, back)": record(now, slog.LevelInfo, "x", manyAttrs(30)...),
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			want, got := both(t, nil, r)
			if got != want {
				t.Errorf("logjson wrote\n%s\nslog wrote\n%s", got, want)
			}
		})
	}
}

func manyAttrs(n int) []slog.Attr {
	as := make([]slog.Attr, n)
	for i := range as {
		as[i] = slog.Int("a"+strings.Repeat("x", i), i)
	}
	return as
}

// TestOptionsAndDerived: options that change the output and derived
// handlers are slog's own.
func TestOptionsAndDerived(t *testing.T) {
	now := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	r := record(now, slog.LevelInfo, "m", slog.String("secret", "x"))
	redact := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == "secret" {
			a.Value = slog.StringValue("REDACTED")
		}
		return a
	}}
	want, got := both(t, redact, r)
	if got != want || !strings.Contains(got, "REDACTED") {
		t.Errorf("with ReplaceAttr: logjson wrote %s, slog wrote %s", got, want)
	}

	var a, b bytes.Buffer
	l1 := slog.New(slog.NewJSONHandler(&a, nil)).With("component", "proxy").WithGroup("g")
	l2 := slog.New(New(&b, nil)).With("component", "proxy").WithGroup("g")
	for _, l := range []*slog.Logger{l1, l2} {
		l.LogAttrs(context.Background(), slog.LevelInfo, "m", slog.Int("n", 1))
	}
	// Times differ; compare what follows them.
	if _, wantTail, _ := strings.Cut(a.String(), `"level"`); !strings.HasSuffix(b.String(), wantTail) {
		t.Errorf("derived: logjson wrote %s, slog wrote %s", b.String(), a.String())
	}

	var lv slog.LevelVar
	lv.Set(slog.LevelWarn)
	h := New(&b, &slog.HandlerOptions{Level: &lv})
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelWarn) {
		t.Error("Enabled does not follow the level")
	}
}

// TestLinesWhole: concurrent records, fast and slow, each reach the
// writer as one whole line.
func TestLinesWhole(t *testing.T) {
	var w lineCounter
	h := New(&w, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				r := record(time.Now(), slog.LevelInfo, "m", slog.Int("i", i))
				if i%2 == 1 {
					r.AddAttrs(slog.Any("err", errors.New("slow")))
				}
				_ = h.Handle(context.Background(), r)
			}
		})
	}
	wg.Wait()
	if w.lines != 1600 || w.bad != 0 {
		t.Errorf("writer got %d lines, %d not one whole line per Write; want 1600, 0", w.lines, w.bad)
	}
}

// lineCounter is an io.Writer that is not safe for concurrent use: the
// race detector catches unserialized Writes.
type lineCounter struct{ lines, bad int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines++
	if bytes.IndexByte(p, '\n') != len(p)-1 || p[0] != '{' {
		c.bad++
	}
	return len(p), nil
}

// FuzzHandler: for records of the kinds the fast path writes, Handler
// writes exactly what slog.JSONHandler writes.
func FuzzHandler(f *testing.F) {
	f.Add(int64(1764476618), int64(123456789), 0, "request", "request_id", "abc", int64(200), uint64(7), true, int64(1500))
	f.Add(int64(0), int64(0), 4, "\xff\x00\u2028", "k\n", "\x1f\"\\\b\f<&>", int64(-1), uint64(1<<63), false, int64(-5))
	f.Add(int64(-62135596800), int64(1), -4, "", "é", "😀\xed\xa0\x80", int64(0), uint64(0), false, int64(0))
	f.Fuzz(func(t *testing.T, sec, nsec int64, level int, msg, key, s string, i int64, u uint64, bl bool, d int64) {
		if key == "" {
			key = "k"
		}
		r := record(time.Unix(sec, nsec%1e9).UTC(), slog.Level(level), msg,
			slog.String(key, s), slog.Int64("i", i), slog.Uint64("u", u), slog.Bool("b", bl),
			slog.Duration("d", time.Duration(d)), slog.String(s, key))
		want, got := both(t, nil, r)
		if got != want {
			t.Fatalf("logjson wrote\n%q\nslog wrote\n%q", got, want)
		}
	})
}

// BenchmarkAccessLine compares Handler with slog.JSONHandler on an
// access log line, side by side.
func BenchmarkAccessLine(b *testing.B) {
	r := record(time.Now(), slog.LevelInfo, "request",
		slog.String("request_id", "0123456789abcdef0123456789abcdef"), slog.String("method", "POST"),
		slog.String("operation", "Converse"), slog.Int("status", 200), slog.Duration("duration", 1234567),
		slog.Int64("bytes_out", 312), slog.String("model", "anthropic.claude-3-haiku-20240307-v1:0"),
		slog.String("user", "alice@acme.org"), slog.String("key_id", "k_abc"), slog.String("team", "data-science"),
		slog.String("tenant", ""), slog.String("session_name", "alice@acme.org-1a2b3c"),
		slog.String("upstream_request_id", "5f1c8f5e-1d2b-4c1e-9a3f-000000000000"),
		slog.Int64("input_tokens", 1200), slog.Int64("output_tokens", 340), slog.Int64("cache_read_tokens", 0),
		slog.Int64("cache_write_tokens", 0), slog.Duration("ttfb", 900000))
	for _, h := range []struct {
		name string
		h    slog.Handler
	}{{"slog", slog.NewJSONHandler(discard{}, nil)}, {"logjson", New(discard{}, nil)}} {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = h.h.Handle(context.Background(), r)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
