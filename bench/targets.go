package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/bedrock-gateway/gateway/internal/gateway"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// Identities of the emulated account the gateway runs against.
const (
	account     = "123456789012"
	region      = "us-east-1"
	gatewayRole = "arn:aws:iam::" + account + ":role/BedrockGatewayRole"
	invokeRole  = "arn:aws:iam::" + account + ":role/BedrockInvocationRole"
	tenant      = "bench"
)

// gatewayLabel marks the gateway's goroutines in a -cpuprofile:
// go tool pprof -tagfocus proxy=gateway.
var gatewayLabel = pprof.Labels("proxy", "gateway")

// target is a proxy under test, listening on loopback plain HTTP.
type target struct {
	url   string
	close func()
}

// startBare serves the floor: httputil.ReverseProxy with a tuned
// transport (HTTP/2 when the upstream is HTTPS).
func startBare(upstreamURL string, roots *x509.CertPool) (*target, error) {
	return startReverseProxy(upstreamURL, roots, nil)
}

// startSized serves the size-matched control: the bare proxy sending a
// request of the gateway's size, so that what a bigger request costs the
// upstream (decoding the SigV4 header, reading the stamped body) can be
// told from what the gateway's own work costs. It adds signed's
// Authorization (with a new signature on each request, as the gateway
// signs each anew, so that HTTP/2's header compression gains nothing it
// would not), X-Amz-Security-Token and X-Amz-Date, and pads the body
// with pad spaces, which JSON allows and the upstream does not parse.
func startSized(upstreamURL string, roots *x509.CertPool, signed http.Header, pad int) (*target, error) {
	auth, token := signed.Get("Authorization"), signed.Get("X-Amz-Security-Token")
	i := strings.LastIndex(auth, "Signature=")
	if i < 0 || token == "" {
		return nil, fmt.Errorf("size-matched control: the gateway's request has no SigV4 Authorization and token")
	}
	prefix, sigLen := auth[:i+len("Signature=")], len(auth)-i-len("Signature=")
	spaces := strings.Repeat(" ", max(pad, 0))
	return startReverseProxy(upstreamURL, roots, func(r *httputil.ProxyRequest) {
		sig := make([]byte, (sigLen+1)/2)
		rand.Read(sig)
		r.Out.Header["Authorization"] = []string{prefix + hex.EncodeToString(sig)[:sigLen]}
		r.Out.Header["X-Amz-Security-Token"] = []string{token}
		r.Out.Header["X-Amz-Date"] = []string{time.Now().UTC().Format("20060102T150405Z")}
		if len(spaces) > 0 && r.Out.Body != nil {
			r.Out.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(r.Out.Body, strings.NewReader(spaces)), r.Out.Body}
			r.Out.ContentLength += int64(len(spaces))
		}
	})
}

// startReverseProxy starts httputil.ReverseProxy to upstreamURL, with
// extra (if not nil) rewriting each outbound request further.
func startReverseProxy(upstreamURL string, roots *x509.CertPool, extra func(*httputil.ProxyRequest)) (*target, error) {
	u, err := url.Parse(upstreamURL)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     &tls.Config{RootCAs: roots},
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = u.Host
			if extra != nil {
				extra(r)
			}
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0), // a cancelled client is not news
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		// Labelled so that a -cpuprofile can be split by proxy:
		// go tool pprof -tagfocus proxy=bare. Goroutines started from
		// here (connections, the transport's) inherit the label.
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("proxy", "bare")))
		srv.Serve(ln)
	}()
	return &target{url: "http://" + ln.Addr().String(), close: func() {
		srv.Close()
		tr.CloseIdleConnections()
	}}, nil
}

// gatewayTarget is the gateway and the keys to call it with.
type gatewayTarget struct {
	*target
	key      string // an ordinary key of one user
	platform string // a platform key that may assert any user of tenant
}

// startGateway builds the gateway as `gateway serve` does (gateway.New
// with the default config) against fakeaws STS and the given Bedrock
// endpoint, with caBundle trusted for it.
func startGateway(ctx context.Context, dir string, ld hello, bedrockURL, caBundle string, sessions int) (*gatewayTarget, error) {
	keys := filepath.Join(dir, "keys.json")
	key, _, err := auth.CreateKey(keys, "alice@acme.org", "data-science", "", "12345", time.Now())
	if err != nil {
		return nil, err
	}
	platform, _, err := auth.IssueKey(keys, auth.KeyRecord{User: "saas-backend",
		Platform: &auth.PlatformGrant{Tenants: []string{tenant}, AllowUser: true}}, time.Now())
	if err != nil {
		return nil, err
	}
	cfg := gateway.Default()
	cfg.Listen, cfg.Admin.Listen, cfg.Server.DrainDelay = "127.0.0.1:0", gateway.AdminOff, 0
	cfg.AWS = gateway.AWSConfig{Region: region, STSEndpoint: ld.STSURL, BedrockRuntimeEndpoint: bedrockURL, CABundle: caBundle}
	cfg.Session.RoleARN, cfg.Auth.APIKeysFile = invokeRole, keys
	cfg.Usage.Ledger = filepath.Join(dir, "usage-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".jsonl")
	// Room for every benchmark session, admitted as fast as STS allows.
	cfg.SessionCache.Size = max(cfg.SessionCache.Size, sessions+100)
	cfg.STS.Rate, cfg.STS.NewSessionShare, cfg.STS.AdmissionWait = 600, 1, time.Minute
	cfg.STS.Timeout = time.Minute
	logFile, err := os.Create(filepath.Join(dir, "access-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".log"))
	if err != nil {
		return nil, err
	}
	logger, closeLog, err := gateway.NewLogger(cfg.Log, logFile, new(slog.LevelVar))
	if err != nil {
		logFile.Close()
		return nil, err
	}
	closeLogFile := func() {
		closeLog()
		logFile.Close()
	}
	var g *gateway.Gateway
	// Labelled so that the gateway's background goroutines (ledger,
	// log, refresh) count as its own in a -cpuprofile.
	pprof.Do(ctx, gatewayLabel, func(ctx context.Context) {
		g, err = gateway.New(ctx, &cfg, gateway.Options{Logger: logger, Stdout: io.Discard, Version: "bench",
			Credentials: credentials.NewStaticCredentialsProvider(ld.RootKeyID, ld.RootSecret, "")})
	})
	if err != nil {
		closeLogFile()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		g.Close(time.Second)
		closeLogFile()
		return nil, err
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() {
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), gatewayLabel))
		done <- g.Serve(sctx, gateway.Listeners{Data: []net.Listener{ln}})
	}()
	return &gatewayTarget{target: &target{url: "http://" + ln.Addr().String(), close: func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			logger.Warn("gateway stopped", "error", err)
		}
		g.Close(5 * time.Second)
		closeLogFile()
	}}, key: key, platform: platform}, nil
}
