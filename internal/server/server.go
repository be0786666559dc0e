package server

// This file holds the Server: New opens everything, Run serves, Drain stops.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
)

// Config is what `portcullis serve` is told on its command line.
type Config struct {
	Policy          string
	ShadowPolicy    string // decided beside Policy, never changing an answer; "" = none
	GRPCAddr        string // host:port or unix:///path
	AdminAddr       string
	HTTPAddr        string // forward-auth; "" = off
	HTTPPathPrefix  string
	HTTPMode        string
	TrustedProxies  []netip.Prefix
	Reflection      bool
	TLSCert         string
	TLSKey          string
	ClientCA        string
	Pprof           bool
	IdleTimeout     time.Duration // HTTP listeners
	ReadTimeout     time.Duration // HTTP listeners
	MaxStreams      uint32        // gRPC streams per connection
	KeysAPIAddr     string        // the key-management API; "" = off
	NoMigrate       bool          // do not migrate the key store's schema at start
	UsageFlush      time.Duration // how often key usage is written to the key store
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long a draining server keeps answering checks
	// after it reports NOT_SERVING, so that proxies health-checking it
	// stop sending before it closes; 0: none.
	ShutdownDelay time.Duration
	Version       string // the binary's, for the serving line
}

// Server is one running Portcullis. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	metrics  *telemetry.Metrics
	usage    *keys.Usage
	jwks     *cache.Registry
	engine   *policy.Engine
	shadow   *policy.Engine // nil without a shadow policy
	reloader *reloader
	grpc     *grpc.Server
	health   *health.Server
	fwd      *http.Server // nil without --http-addr
	admin    *http.Server
	keys     *keyStore          // nil without a policy keys_store
	tracing  *telemetry.Tracing // nil unless OTEL_* ask for it
	tls      *tls.Config
	lis      listeners
	draining atomic.Bool
	stop     context.CancelFunc // ends the background work Run started
}

type listeners struct{ grpc, admin, fwd net.Listener }

func (l listeners) close() {
	for _, x := range []net.Listener{l.grpc, l.admin, l.fwd} {
		if x != nil {
			x.Close()
		}
	}
}

// New loads the policy and opens every listener; nothing is served until
// Run. It fails on an invalid policy, a listener that cannot be opened or
// unusable TLS files.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: log, usage: keys.NewUsage()}
	s.metrics = telemetry.NewMetrics(func() *policy.Engine { return s.engine })
	tracing, err := telemetry.TracingFromEnv(context.Background())
	if err != nil {
		return nil, err
	}
	s.tracing = tracing
	ropts := cache.RemoteOptions{OnFetch: s.jwksFetched}
	if tracing != nil {
		ropts.Trace = tracing.Fetch
	}
	s.jwks = cache.NewRegistry(ropts, true)
	snap, err := policy.Load(cfg.Policy, policy.LoadOptions{JWKS: s.jwks})
	if err != nil {
		return nil, fmt.Errorf("loading policy: %w", err)
	}
	s.warn(snap)
	obs := telemetry.NewObserver(s.metrics, log, s.usage)
	obs.Trace(tracing)
	if s.keys, err = s.openKeyStore(snap); err != nil {
		return nil, err
	}
	opts := policy.EngineOptions{OnPanic: func(v any, stack []byte) { obs.Panicked(context.Background(), "engine", v, stack) }}
	if s.keys != nil {
		opts.Store = s.keys.mirror
		opts.Credits = s.keys.ledger
		obs.CountStoreKeys(s.keys.usage)
	}
	s.engine = policy.NewEngine(snap, opts)
	if cfg.ShadowPolicy != "" {
		shadowSnap, err := s.loadShadow()
		if err != nil {
			return nil, s.closeKeys(err)
		}
		sopts := opts
		sopts.OnPanic = func(v any, stack []byte) { obs.Panicked(context.Background(), "shadow", v, stack) }
		if s.keys != nil { // the shadow decides as if it charged, and charges nothing
			sopts.Credits = s.keys.ledger.DryRun()
		}
		s.shadow = policy.NewEngine(shadowSnap, sopts)
	}
	s.publish(snap)
	releaseLoadGarbage()
	if err := s.services(obs); err != nil {
		return nil, s.closeKeys(err)
	}
	if s.lis, err = s.listen(); err != nil {
		return nil, s.closeKeys(err)
	}
	if err := s.keysAPI(s.keys); err != nil {
		s.lis.close()
		return nil, s.closeKeys(err)
	}
	s.reloader = newReloader(s, snap)
	return s, nil
}

func (s *Server) closeKeys(err error) error {
	if s.keys != nil {
		s.keys.pool.Close()
	}
	return err
}

// publish makes snap the one serving, and commits what it and the shadow
// policy use.
func (s *Server) publish(snap *policy.Snapshot) {
	s.engine.Swap(snap)
	s.jwks.Commit(s.remotes())
	s.usage.Track(snap.Keys())
}

// publishShadow makes snap the shadow policy.
func (s *Server) publishShadow(snap *policy.Snapshot) {
	s.shadow.Swap(snap)
	s.jwks.Commit(s.remotes())
}

// remotes returns the JWK sets the live and the shadow policy use.
func (s *Server) remotes() []*cache.Remote {
	r := s.engine.Snapshot().Remotes()
	if s.shadow != nil {
		r = append(slices.Clip(r), s.shadow.Snapshot().Remotes()...)
	}
	return r
}

// loadShadow loads the shadow policy. Its keys in a key store can only be
// the live policy's: a replica mirrors one.
func (s *Server) loadShadow() (*policy.Snapshot, error) {
	snap, err := policy.Load(s.cfg.ShadowPolicy, policy.LoadOptions{JWKS: s.jwks})
	if err != nil {
		return nil, fmt.Errorf("loading shadow policy: %w", err)
	}
	if ks := snap.KeyStore(); ks != nil && (s.keys == nil || *ks != *s.engine.Snapshot().KeyStore()) {
		return nil, fmt.Errorf("loading shadow policy: %s: keys_store must be the live policy's (a replica mirrors one key store)", s.cfg.ShadowPolicy)
	}
	return snap, nil
}

// decider is what the transports ask: the engine, or the engine with the
// shadow policy beside it.
func (s *Server) decider() extauthz.Decider {
	if s.shadow == nil {
		return s.engine
	}
	return &shadowed{live: s.engine, shadow: s.shadow, s: s}
}

func (s *Server) jwksFetched(uri string, err error) {
	s.metrics.JWKSFetched(uri, err)
	if err != nil {
		s.log.Warn("JWK set fetch failed; serving the last good set, if any", "uri", uri, "error", err.Error())
		return
	}
	s.log.Info("JWK set fetched", "uri", uri)
}

// streamWorkers is how many goroutines stand parked, ready to run a check.
// A check that finds none parked runs on a goroutine of its own, which
// starts on a small stack and grows it, copying, as the check goes deeper:
// with 4 per core (8 here) and 50 checks in flight, that copying was 9% of
// the CPU of checking tokens at first sight (a JSON parse and an RSA
// verification deep). A parked worker costs one small stack.
func streamWorkers() uint32 { return uint32(max(64, 8*runtime.GOMAXPROCS(0))) }

// services builds the gRPC server, the forward-auth handler and the admin
// handler.
func (s *Server) services(obs *telemetry.Observer) error {
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4 << 20),
		grpc.MaxConcurrentStreams(s.cfg.MaxStreams),
		grpc.NumStreamWorkers(streamWorkers()),
	}
	if s.cfg.TLSCert != "" {
		tf := &tlsFiles{cert: s.cfg.TLSCert, key: s.cfg.TLSKey, clientCA: s.cfg.ClientCA}
		tc, err := tf.serverConfig()
		if err != nil {
			return err
		}
		s.tls = tc
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	decider := s.decider()
	s.grpc = extauthz.NewServer(decider, obs).NewGRPCServer(opts...)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	// NOT_SERVING until the server can decide (what /readyz says): a proxy
	// health-checking it sends nothing before (servingWhenReady).
	for _, svc := range []string{"", authv3.Authorization_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	if s.cfg.Reflection {
		reflection.Register(s.grpc)
	}
	if s.cfg.HTTPAddr != "" {
		h, err := extauthz.NewHTTPHandler(decider, obs, extauthz.HTTPOptions{Mode: s.cfg.HTTPMode,
			PathPrefix: s.cfg.HTTPPathPrefix, TrustedProxies: s.cfg.TrustedProxies, Logger: s.log})
		if err != nil {
			return err
		}
		s.fwd = s.httpServer(h)
	}
	s.admin = s.httpServer(s.adminMux())
	return nil
}

// httpServer returns an HTTP server for h with every timeout set: a slow or
// idle client cannot hold a connection forever. Go's built-in answer to
// "OPTIONS *" is off, so that request reaches h (and is checked) too.
func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            5 * time.Second,
		ReadTimeout:                  s.cfg.ReadTimeout,
		IdleTimeout:                  s.cfg.IdleTimeout,
		MaxHeaderBytes:               1 << 20,
		DisableGeneralOptionsHandler: true,
	}
}

func (s *Server) listen() (listeners, error) {
	var l listeners
	var err error
	if l.grpc, err = listen(s.cfg.GRPCAddr); err != nil {
		return l, fmt.Errorf("gRPC listener: %w", err)
	}
	if l.admin, err = net.Listen("tcp", s.cfg.AdminAddr); err != nil {
		l.close()
		return listeners{}, fmt.Errorf("admin listener: %w", err)
	}
	if s.fwd != nil {
		if l.fwd, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
			l.close()
			return listeners{}, fmt.Errorf("forward-auth listener: %w", err)
		}
	}
	return l, nil
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
	if l == nil {
		return ""
	}
	if l.Addr().Network() == "unix" {
		return "unix://" + l.Addr().String()
	}
	return l.Addr().String()
}

// Reload asks for the policy to be reloaded; it never blocks (a request
// already waiting covers this one too).
func (s *Server) Reload(trigger string) { s.reloader.request(reloadRequest{trigger: trigger}) }

// Run serves until ctx ends or a listener fails, and returns the failure
// (nil when ctx ended). Call Drain afterwards.
func (s *Server) Run(ctx context.Context) error {
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	errc := make(chan error, 4)
	go func() { errc <- s.grpc.Serve(s.lis.grpc) }()
	go func() { errc <- s.admin.Serve(s.lis.admin) }()
	if s.fwd != nil {
		go func() { errc <- s.fwd.Serve(s.lis.fwd) }()
	}
	if s.keys != nil {
		go s.keys.run(bg, s)
		if s.keys.api != nil {
			go func() { errc <- serveMaybeTLS(s.keys.api, s.keys.apiLis) }()
		}
	}
	go s.reloader.run(bg)
	go s.servingWhenReady(bg)
	snap := s.engine.Snapshot()
	s.log.Info("portcullis serving", "version", s.cfg.Version, "go", runtime.Version(),
		"grpc_addr", addrString(s.lis.grpc), "admin_addr", addrString(s.lis.admin), "http_addr", addrString(s.lis.fwd),
		"keys_api_addr", addrString(s.keysAPILis()),
		"tls", s.cfg.TLSCert != "", "mtls", s.cfg.ClientCA != "", "reflection", s.cfg.Reflection, "policy", s.cfg.Policy,
		"shadow_policy", s.cfg.ShadowPolicy, "tracing", s.tracing != nil,
		"generation", 1, "policy_version", snap.Version(), "keys", snap.Keys().Len())
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return err
	}
}

// servingWhenReady turns the gRPC health status SERVING once the server is
// ready (every JWK set tried once, the key store loaded), checking every
// 50 ms until then; Drain turns it NOT_SERVING for good.
func (s *Server) servingWhenReady(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.ready() != nil {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	if !s.draining.Load() {
		for _, svc := range []string{"", authv3.Authorization_ServiceDesc.ServiceName} {
			s.health.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
		}
		s.log.Info("ready: health SERVING")
	}
}

// Drain stops serving: health turns NOT_SERVING and /readyz 503; checks go
// on being answered for ShutdownDelay (proxies health-checking the server
// stop sending meanwhile), then checks in flight finish (until ctx ends,
// then connections are closed), then everything stops.
func (s *Server) Drain(ctx context.Context) {
	s.draining.Store(true)
	s.health.Shutdown()
	if d := s.cfg.ShutdownDelay; d > 0 {
		s.log.Info("draining: health NOT_SERVING; answering checks a while longer", "shutdown_delay", d.String())
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	stopped := make(chan struct{})
	go func() {
		if s.fwd != nil {
			_ = s.fwd.Shutdown(ctx) // waits for in-flight forward-auth checks
		}
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.log.Warn("shutdown timeout: closing remaining connections", "timeout", s.cfg.ShutdownTimeout.String())
		s.grpc.Stop()
	}
	actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.keys != nil && s.keys.api != nil {
		_ = s.keys.api.Shutdown(actx)
	}
	_ = s.admin.Shutdown(actx)
	if s.stop != nil {
		s.stop()
	}
	if s.keys != nil {
		s.keys.close(s.log)
	}
	s.reloader.close()
	s.jwks.Close()
	if err := s.tracing.Shutdown(actx); err != nil {
		s.log.Warn("tracing: spans not exported at shutdown", "error", err.Error())
	}
	s.log.Info("portcullis stopped")
}

func (s *Server) keysAPILis() net.Listener {
	if s.keys == nil {
		return nil
	}
	return s.keys.apiLis
}

// serveMaybeTLS serves srv on lis, with TLS when srv has a configuration.
func serveMaybeTLS(srv *http.Server, lis net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(lis, "", "")
	}
	return srv.Serve(lis)
}

// releaseLoadGarbage collects what loading a policy left behind (a large
// keys file makes hundreds of MB of short-lived garbage) and returns it to
// the OS, so resident memory reflects the policy, not its parsing.
func releaseLoadGarbage() { debug.FreeOSMemory() }
