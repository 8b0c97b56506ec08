package gateway

import (
	"context"
	"errors"
	"reflect"
)

// restartOnly lists the settings a reload cannot change, by YAML path, as
// pointers into c: they shape the listeners, the logger or the core (see
// Gateway). A reload that changes one keeps the running value and says so.
func restartOnly(c *Config) []struct {
	key string
	ptr any
} {
	return []struct {
		key string
		ptr any
	}{
		{"listen", &c.Listen},
		{"tls", &c.TLS}, // the files' content is reloaded when it changes
		{"admin", &c.Admin},
		{"server", &c.Server},
		{"aws", &c.AWS},
		{"session_cache", &c.SessionCache},
		{"sts", &c.STS},
		{"usage", &c.Usage},
		{"async", &c.Async},
		{"fleet", &c.Fleet},
		{"log.format", &c.Log.Format},
		{"tracing", &c.Tracing},
	}
}

// keepRestartOnly copies every restartOnly setting of running into next
// and returns the paths whose values differed.
func keepRestartOnly(next, running *Config) []string {
	var changed []string
	want, got := restartOnly(running), restartOnly(next)
	for i := range want {
		w, n := reflect.ValueOf(want[i].ptr).Elem(), reflect.ValueOf(got[i].ptr).Elem()
		if !reflect.DeepEqual(w.Interface(), n.Interface()) {
			changed = append(changed, want[i].key)
		}
		n.Set(w)
	}
	return changed
}

// Reload loads the configuration anew (Options.Load), builds a generation
// from it and swaps it in. It also reopens the usage ledger, so that
// external rotation (rename, then SIGHUP) works whether or not the new
// config is valid. On any error the running generation keeps serving and
// the error is returned, logged and counted.
func (g *Gateway) Reload(ctx context.Context) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.ledger != nil {
		if err := g.ledger.Reopen(); err != nil {
			g.log.Error("reopening the usage ledger", "error", err)
		}
	}
	if err := g.reload(ctx); err != nil {
		g.log.Error("config reload refused; keeping the running config", "error", err)
		g.ops.reloads.WithLabelValues("failure").Inc()
		g.ops.reloadOK.Set(0)
		return err
	}
	g.ops.reloads.WithLabelValues("success").Inc()
	g.ops.reloadOK.Set(1)
	g.ops.reloadTime.SetToCurrentTime()
	g.log.Info("config reloaded")
	return nil
}

func (g *Gateway) reload(ctx context.Context) error {
	if g.opts.Load == nil {
		return errors.New("reload: no way to load the configuration")
	}
	next, err := g.opts.Load()
	if err != nil {
		return err
	}
	if changed := keepRestartOnly(next, g.cfg); len(changed) > 0 {
		g.log.Warn("config reload: these settings need a restart to change; keeping their running values", "keys", changed)
	}
	level, err := next.Log.level()
	if err != nil {
		return err
	}
	gen, err := g.build(ctx, next)
	if err != nil {
		return err
	}
	hadBudgets := len(g.sw.current().cfg.Budgets) > 0
	if err := g.budgets.Reload(next.Budgets); err != nil {
		gen.stop()
		return err
	}
	if !hadBudgets {
		g.rebuildBudgets(next.Budgets) // a budget's period may have begun before it was configured
	}
	g.sw.swap(gen)
	if g.opts.LogLevel != nil {
		g.opts.LogLevel.Set(level)
	}
	return nil
}
