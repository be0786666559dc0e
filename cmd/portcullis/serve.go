package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/policy"
)

type serveConfig struct {
	policy          string
	grpcAddr        string
	adminAddr       string
	reflection      bool
	tlsCert         string
	tlsKey          string
	clientCA        string
	logLevel        string
	shutdownTimeout time.Duration
	httpAddr        string
	httpPrefix      string
	httpMode        string
	trustedProxies  string
	pprof           bool
	idleTimeout     time.Duration
	readTimeout     time.Duration
	maxStreams      uint
}

func runServe(ctx context.Context, args []string, stderr io.Writer) int {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.policy, "policy", "", "policy file (YAML or JSON)")
	fs.StringVar(&cfg.grpcAddr, "grpc-addr", "127.0.0.1:9001", "ext_authz gRPC listener: host:port or unix:///path")
	fs.StringVar(&cfg.adminAddr, "admin-addr", "127.0.0.1:9090", "admin listener: /healthz, /readyz, /metrics")
	fs.BoolVar(&cfg.reflection, "reflection", false, "serve gRPC reflection (for grpcurl and ghz)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "TLS certificate for the gRPC listener (PEM; reloaded when it changes)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "TLS private key for the gRPC listener (PEM)")
	fs.StringVar(&cfg.clientCA, "client-ca", "", "CA bundle clients must present a certificate from (mTLS)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug (one line per decision), info, warn or error")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long SIGTERM waits for in-flight checks")
	fs.StringVar(&cfg.httpAddr, "http-addr", "", "forward-auth HTTP listener (Traefik, nginx auth_request, Envoy http_service); off when empty")
	fs.StringVar(&cfg.httpPrefix, "http-path-prefix", "", "path prefix Envoy's http_service puts before the original path")
	fs.StringVar(&cfg.httpMode, "http-mode", "auto", "forward-auth mode: the proxy in front (traefik, nginx, ingress-nginx, envoy), "+
		"or auto: the one header family present, 400 for none or several")
	fs.DurationVar(&cfg.idleTimeout, "idle-timeout", 60*time.Second, "HTTP listeners (forward-auth, admin): close a keep-alive connection idle this long")
	fs.DurationVar(&cfg.readTimeout, "read-timeout", 10*time.Second, "HTTP listeners: the longest time to read one request, headers and body")
	fs.UintVar(&cfg.maxStreams, "max-concurrent-streams", 1024, "gRPC: concurrent streams (checks in flight) per connection")
	fs.BoolVar(&cfg.pprof, "pprof", false, "serve Go profiling under /debug/pprof/ on the admin listener")
	fs.StringVar(&cfg.trustedProxies, "trusted-proxies", "127.0.0.0/8,::1/128", "peers allowed to ask over HTTP (comma-separated CIDRs)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: portcullis serve --policy FILE [--grpc-addr 127.0.0.1:9001 | unix:///path] [--admin-addr 127.0.0.1:9090]\n"+
			"                        [--http-addr 127.0.0.1:9002 [--http-path-prefix P] [--http-mode auto] [--trusted-proxies CIDRs]]\n"+
			"                        [--reflection] [--tls-cert F --tls-key F [--client-ca F]] [--log-level info]")
		fs.PrintDefaults()
	}
	if ok, help := parseFlags(fs, args, stderr); !ok {
		if help {
			return exitOK
		}
		return exitUsage
	}
	var level slog.Level
	trusted, terr := extauthz.ParseTrustedProxies(cfg.trustedProxies)
	if terr != nil || len(trusted) == 0 {
		fmt.Fprintf(stderr, "portcullis serve: --trusted-proxies %q: want comma-separated CIDRs\n", cfg.trustedProxies)
		return exitUsage
	}
	if cfg.policy == "" || fs.NArg() > 0 || level.UnmarshalText([]byte(cfg.logLevel)) != nil ||
		(cfg.tlsCert == "") != (cfg.tlsKey == "") || (cfg.clientCA != "" && cfg.tlsCert == "") ||
		cfg.idleTimeout <= 0 || cfg.readTimeout <= 0 || cfg.maxStreams == 0 {
		fs.Usage()
		return exitUsage
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, cfg, trusted, log); err != nil {
		log.Error("portcullis stopped", "error", err.Error())
		return exitFailed
	}
	return exitOK
}

// serve runs the server until SIGTERM or SIGINT (or ctx ends), then drains.
func serve(ctx context.Context, cfg serveConfig, trusted []netip.Prefix, log *slog.Logger) error {
	var eng atomic.Pointer[policy.Engine]
	m := newMetrics(eng.Load)
	jwks := cache.NewRegistry(cache.RemoteOptions{OnFetch: func(uri string, err error) {
		m.jwksFetched(uri, err)
		if err != nil {
			log.Warn("JWK set fetch failed; serving the last good set, if any", "uri", uri, "error", err.Error())
			return
		}
		log.Info("JWK set fetched", "uri", uri)
	}}, true)
	defer jwks.Close()

	snap, err := loadPolicy(cfg.policy, jwks)
	if err != nil {
		return fmt.Errorf("loading policy: %w", err)
	}
	jwks.Commit(snap.Remotes())
	use := newUsage()
	use.track(snap)
	obs := &observer{m: m, log: log, usage: use}
	eng.Store(policy.NewEngine(snap, policy.EngineOptions{OnPanic: func(v any, stack []byte) {
		obs.Panicked(context.Background(), "engine", v, stack)
	}}))
	releaseLoadGarbage()
	rl := &reloader{path: cfg.policy, eng: eng.Load(), jwks: jwks, m: m, log: log, usage: use}
	if err := rl.start(snap); err != nil {
		log.Warn("file watching unavailable; reload with SIGHUP", "error", err.Error())
	}
	defer rl.close()

	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4 << 20),
		grpc.MaxConcurrentStreams(uint32(min(cfg.maxStreams, 1<<31))),
	}
	if cfg.tlsCert != "" {
		tf := &tlsFiles{cert: cfg.tlsCert, key: cfg.tlsKey, clientCA: cfg.clientCA}
		tc, err := tf.serverConfig()
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, extauthz.NewServer(eng.Load(), obs))
	var fwd *http.Server
	if cfg.httpAddr != "" {
		h, err := extauthz.NewHTTPHandler(eng.Load(), obs, extauthz.HTTPOptions{
			Mode: cfg.httpMode, PathPrefix: cfg.httpPrefix, TrustedProxies: trusted, Logger: log})
		if err != nil {
			return err
		}
		fwd = httpServer(h, cfg)
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if cfg.reflection {
		reflection.Register(gs)
	}

	grpcLis, err := listen(cfg.grpcAddr)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	adminLis, err := net.Listen("tcp", cfg.adminAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	var draining atomic.Bool
	mux := adminMux(m, use, func() error {
		switch {
		case draining.Load():
			return errors.New("shutting down")
		case !eng.Load().Snapshot().JWKSTried():
			return errors.New("waiting for the first fetch of every JWK set")
		}
		return nil
	})
	if cfg.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	admin := httpServer(mux, cfg)

	httpAddr := ""
	errc := make(chan error, 3)
	if fwd != nil {
		lis, err := net.Listen("tcp", cfg.httpAddr)
		if err != nil {
			grpcLis.Close()
			adminLis.Close()
			return fmt.Errorf("forward-auth listener: %w", err)
		}
		httpAddr = lis.Addr().String()
		go func() { errc <- fwd.Serve(lis) }()
	}
	go func() { errc <- gs.Serve(grpcLis) }()
	go func() { errc <- admin.Serve(adminLis) }()
	log.Info("portcullis serving", "version", version(), "go", runtime.Version(),
		"grpc_addr", addrString(grpcLis), "admin_addr", adminLis.Addr().String(), "http_addr", httpAddr, "tls", cfg.tlsCert != "",
		"mtls", cfg.clientCA != "", "reflection", cfg.reflection, "policy", cfg.policy, "generation", 1, "version", snap.Version(),
		"keys", len(snap.Keys()))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	var serveErr error
wait:
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				rl.reload("sighup")
				continue
			}
			log.Info("signal received: draining", "signal", s.String())
			break wait
		case <-ctx.Done():
			break wait
		case serveErr = <-errc:
			break wait
		}
	}

	// Drain: report NOT_SERVING, let in-flight checks finish, then stop.
	draining.Store(true)
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() {
		if fwd != nil {
			fctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
			_ = fwd.Shutdown(fctx) // waits for in-flight forward-auth checks
			cancel()
		}
		gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(cfg.shutdownTimeout):
		log.Warn("shutdown timeout: closing remaining connections", "timeout", cfg.shutdownTimeout.String())
		gs.Stop()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = admin.Shutdown(sctx)
	log.Info("portcullis stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return serveErr
	}
	return nil
}

// loadPolicy loads a policy with the JWK sets shared across reloads.
func loadPolicy(path string, jwks *cache.Registry) (*policy.Snapshot, error) {
	return policy.Load(path, policy.LoadOptions{JWKS: jwks})
}

// releaseLoadGarbage collects what loading a policy left behind (a large
// keys file makes hundreds of MB of short-lived garbage) and returns it to
// the OS, so resident memory reflects the policy, not its parsing.
func releaseLoadGarbage() { debug.FreeOSMemory() }

// httpServer returns an HTTP server for h with every timeout set: a slow or
// idle client cannot hold a connection forever. Go's built-in answer to
// "OPTIONS *" is off, so that request reaches h (and is checked) too.
func httpServer(h http.Handler, cfg serveConfig) *http.Server {
	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            5 * time.Second,
		ReadTimeout:                  cfg.readTimeout,
		IdleTimeout:                  cfg.idleTimeout,
		MaxHeaderBytes:               1 << 20,
		DisableGeneralOptionsHandler: true,
	}
}

// listen opens a TCP listener, or a unix socket for "unix:///path" (a
// stale socket file from a previous run is removed first).
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path)
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

func addrString(l net.Listener) string {
	if l.Addr().Network() == "unix" {
		return "unix://" + l.Addr().String()
	}
	return l.Addr().String()
}

// adminMux serves /healthz (alive), /readyz (ready to decide), /metrics
// and /keys/usage (per-key check counts; key ids only, never secrets).
func adminMux(m *metrics, use *usage, ready func() error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /keys/usage", use)
	return mux
}
