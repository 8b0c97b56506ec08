// Package logjson is a slog.Handler that writes what slog.JSONHandler
// writes, byte for byte, at a fraction of its cost for the records the
// gateway writes most: the access log line of every request, whose
// attributes are strings, integers, durations and booleans. slog's
// handler formats through a general state machine (groups, ReplaceAttr,
// preformatted attributes) and a mutex around the writer; this one appends
// those kinds straight into a pooled buffer and hands it to the writer in
// one Write.
//
// Anything else (a derived handler from WithAttrs or WithGroup, an
// attribute of another kind, an empty key, AddSource or ReplaceAttr) is
// passed to an slog.JSONHandler on the same writer, so the output is
// always slog's. FuzzHandler holds the two to the same bytes.
package logjson

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Handler is a slog.Handler writing JSON lines as slog.JSONHandler does.
type Handler struct {
	w    *lockedWriter
	opts slog.HandlerOptions
	slow *slog.JSONHandler
}

// New returns a Handler writing to w with opts (nil for defaults), as
// slog.NewJSONHandler(w, opts) would. Each line is one Write, and Writes
// are serialized, as slog does them.
func New(w io.Writer, opts *slog.HandlerOptions) *Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	lw := &lockedWriter{w: w}
	return &Handler{w: lw, opts: *opts, slow: slog.NewJSONHandler(lw, opts)}
}

// lockedWriter serializes the Writes of both paths, so that w need not be
// safe for concurrent use, as with slog's own handler.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Enabled reports whether level is at or above the handler's level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.slow.Enabled(ctx, level)
}

// WithAttrs returns slog's handler with attrs: a derived logger is not on
// the hot path.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler { return h.slow.WithAttrs(attrs) }

// WithGroup returns slog's handler with the group.
func (h *Handler) WithGroup(name string) slog.Handler { return h.slow.WithGroup(name) }

var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Handle writes r as one JSON line.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if h.opts.AddSource || h.opts.ReplaceAttr != nil {
		return h.slow.Handle(ctx, r)
	}
	bp := buffers.Get().(*[]byte)
	b, ok := appendRecord((*bp)[:0], &r)
	if !ok {
		putBuffer(bp, b)
		return h.slow.Handle(ctx, r)
	}
	_, err := h.w.Write(b)
	putBuffer(bp, b)
	return err
}

// WriteAttrs writes what Handle would for a record of t, level, msg and
// attrs, without building the slog.Record: for a caller that writes one
// line per request and has checked Enabled. Attributes of other kinds go
// through slog's handler as Handle sends them.
func (h *Handler) WriteAttrs(ctx context.Context, t time.Time, level slog.Level, msg string, attrs []slog.Attr) error {
	slow := h.opts.AddSource || h.opts.ReplaceAttr != nil
	if !slow {
		bp := buffers.Get().(*[]byte)
		b, ok := appendHead((*bp)[:0], t, level, msg)
		for i := 0; ok && i < len(attrs); i++ {
			b, ok = appendAttr(b, attrs[i])
		}
		if ok {
			b = append(b, '}', '\n')
			_, err := h.w.Write(b)
			putBuffer(bp, b)
			return err
		}
		putBuffer(bp, b)
	}
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(attrs...)
	return h.slow.Handle(ctx, r)
}

func putBuffer(bp *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		buffers.Put(bp)
	}
}

// appendRecord appends r as slog.JSONHandler writes it, and false if r
// holds something only slog's handler writes.
func appendRecord(b []byte, r *slog.Record) ([]byte, bool) {
	b, ok := appendHead(b, r.Time, r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendAttr(b, a)
		return ok
	})
	if !ok {
		return b, false
	}
	return append(b, '}', '\n'), true
}

// appendHead opens the line with the time, level and message, as slog
// writes them; false for a time slog writes an error in place of.
func appendHead(b []byte, t time.Time, level slog.Level, msg string) ([]byte, bool) {
	b = append(b, '{')
	if !t.IsZero() {
		t = t.Round(0)
		if y := t.Year(); y < 0 || y >= 10000 {
			return b, false
		}
		b = append(b, `"time":"`...)
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendString(b, level.String())
	b = append(b, `,"msg":`...)
	return appendString(b, msg), true
}

// appendAttr appends one attribute, and false for one only slog's handler
// writes: an empty key, or a kind other than string, integer, boolean and
// duration.
func appendAttr(b []byte, a slog.Attr) ([]byte, bool) {
	if a.Key == "" {
		return b, false
	}
	b = append(b, ',')
	b = appendString(b, a.Key)
	b = append(b, ':')
	switch v := a.Value; v.Kind() {
	case slog.KindString:
		return appendString(b, v.String()), true
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10), true
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10), true
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool()), true
	case slog.KindDuration:
		return strconv.AppendInt(b, int64(v.Duration()), 10), true
	}
	return b, false
}

const hex = "0123456789abcdef"

// appendString appends s quoted as slog's JSON handler quotes strings: as
// encoding/json without HTML escaping, except that control characters
// other than \n, \r and \t are written \u00XX (encoding/json writes \b and
// \f), invalid UTF-8 as \ufffd, and U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
