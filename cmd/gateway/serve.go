package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bedrock-gateway/gateway/internal/gateway"
)

// closeTimeout bounds the wait, after the listeners have stopped, for
// requests still holding a config.
const closeTimeout = 10 * time.Second

func cmdServe(ctx context.Context, args []string, p process) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(p.stderr)
	configPath := fs.String("config", "", "config file (required); re-read on SIGHUP")
	listen := fs.String("listen", "", "data-plane address, overrides the config's listen")
	adminListen := fs.String("admin-listen", "", "admin address (/metrics, /healthz, /readyz), overrides the config's admin.listen; off to disable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" {
		return errors.New("serve: -config is required")
	}
	// load reads the config file with the flags applied, at start and on
	// every reload.
	load := func() (*gateway.Config, error) {
		cfg, err := gateway.Load(*configPath, p.getenv)
		if err != nil {
			return nil, err
		}
		if *listen != "" {
			cfg.Listen = *listen
		}
		if *adminListen != "" {
			cfg.Admin.Listen = *adminListen
		}
		return cfg, cfg.Validate()
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	logger, closeLog, err := gateway.NewLogger(cfg.Log, p.stderr, level)
	if err != nil {
		return err
	}
	defer closeLog() // last: every line, the shutdown's included, is written
	g, err := gateway.New(ctx, cfg, gateway.Options{Credentials: p.awsCredentials, Logger: logger, LogLevel: level,
		Stdout: p.stdout, Load: load, Getenv: p.getenv, Version: version})
	if err != nil {
		return err
	}
	defer g.Close(closeTimeout) // last: the ledger closes after every request is done

	// SIGHUP reloads the config. Registered before the listeners open, so
	// a SIGHUP sent once the gateway listens never kills the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloadCtx, stopReloads := context.WithCancel(ctx)
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-reloadCtx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: reloading the config", "path", *configPath)
				g.Reload(reloadCtx)
			}
		}
	}()
	defer func() {
		stopReloads()
		<-reloadDone
	}()

	ls := gateway.Listeners{}
	ln, err := p.listen("data", cfg.Listen)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "tls", g.TLSConfig() != nil, "h2c", g.TLSConfig() == nil)
	ls.Data = []net.Listener{withTLS(ln, g.TLSConfig())}
	if cfg.Admin.Listen != gateway.AdminOff {
		if ls.Admin, err = p.listen("admin", cfg.Admin.Listen); err != nil {
			ln.Close()
			return err
		}
		logger.Info("admin listening", "addr", ls.Admin.Addr().String(), "pprof", cfg.Admin.Pprof)
	}
	return g.Serve(ctx, ls)
}

// withTLS serves TLS on ln when cfg is set; http.Server serves HTTP/2 on
// a *tls.Conn whose ALPN picked "h2".
func withTLS(ln net.Listener, cfg *tls.Config) net.Listener {
	if cfg == nil {
		return ln
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return tls.NewListener(ln, cfg)
}
