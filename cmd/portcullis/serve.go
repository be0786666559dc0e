package main

// This file holds `portcullis serve`: its flags, and the signals that
// reload or stop the server.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/internal/cli"
	"github.com/portcullis/portcullis/internal/gcfloor"
	"github.com/portcullis/portcullis/internal/server"
)

const serveUsage = `usage: portcullis serve --policy FILE [--grpc-addr 127.0.0.1:9001 | unix:///path] [--admin-addr 127.0.0.1:9090]
                        [--http-addr 127.0.0.1:9002 --http-mode traefik|nginx|ingress-nginx|envoy [--http-path-prefix P] [--trusted-proxies CIDRs]]
                        [--keys-api-addr 127.0.0.1:9003] [--no-migrate] [--shadow-policy FILE]
                        [--reflection] [--tls-cert F --tls-key F [--client-ca F]] [--log-level info] [--gc-headroom-mib 64]

Serves Envoy's ext_authz over gRPC, health and metrics on the admin listener, and, when
asked, forward-auth over HTTP and the key-management API with the token page. The policy,
its keys and JWKS files and the TLS files are reloaded when they change and on SIGHUP;
SIGTERM drains. TLS (--tls-cert, --tls-key) serves the gRPC listener and the key API
listener; --client-ca requires client certificates (mTLS) there. The forward-auth and admin
listeners stay plain HTTP: keep them on a private network.

flags:
`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg server.Config
	var logLevel, trusted string
	var maxStreams, gcHeadroom uint
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Policy, "policy", "", "policy file (YAML or JSON)")
	fs.StringVar(&cfg.ShadowPolicy, "shadow-policy", "", "a second policy deciding every check beside --policy, compared and never changing an answer")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:9001", "ext_authz gRPC listener: host:port or unix:///path")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:9090", "admin listener: /healthz, /readyz, /metrics")
	fs.BoolVar(&cfg.Reflection, "reflection", false, "serve gRPC reflection (for grpcurl and ghz)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate (PEM) of the gRPC listener and the key API listener (--keys-api-addr); "+
		"re-read when the file changes. Needs --tls-key")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key (PEM) for --tls-cert; re-read when the file changes")
	fs.StringVar(&cfg.ClientCA, "client-ca", "", "CA bundle (PEM): the gRPC and key API listeners require client certificates "+
		"signed by it (mTLS). Needs --tls-cert")
	fs.StringVar(&logLevel, "log-level", "info", "debug (one line per decision), info, warn or error")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "how long SIGTERM waits for in-flight checks")
	fs.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", 0, "on SIGTERM, report NOT_SERVING (gRPC health, /readyz) and keep answering checks "+
		"this long before closing, so proxies health-checking Portcullis stop sending first (e.g. 3s behind Envoy's 1 s health checks)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "", "forward-auth HTTP listener (Traefik, nginx auth_request, Envoy http_service); off when empty")
	fs.StringVar(&cfg.HTTPPathPrefix, "http-path-prefix", "", "path prefix Envoy's http_service puts before the original path")
	fs.StringVar(&cfg.HTTPMode, "http-mode", extauthz.ModeAuto, "forward-auth mode: the proxy in front (traefik, nginx, ingress-nginx, envoy), "+
		"or auto: the one header family present, 400 for none or several")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 60*time.Second, "HTTP listeners (forward-auth, admin): close a keep-alive connection idle this long")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", 10*time.Second, "HTTP listeners: the longest time to read one request, headers and body")
	fs.UintVar(&maxStreams, "max-concurrent-streams", 1024, "gRPC: concurrent streams (checks in flight) per connection")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go profiling under /debug/pprof/ on the admin listener")
	fs.UintVar(&gcHeadroom, "gc-headroom-mib", 64, "the most the heap may grow between garbage collections beyond Go's own, in MiB: "+
		"it grows by 4× what is live, at least 16 MiB (a small heap is otherwise collected dozens of times a second under load), "+
		"at most this; 0: Go's default; ignored when GOGC is set")
	fs.StringVar(&cfg.KeysAPIAddr, "keys-api-addr", "", "key-management API listener (needs a policy keys_store); off when empty")
	fs.BoolVar(&cfg.NoMigrate, "no-migrate", false, "do not migrate the key store's schema at start (portcullis db migrate does)")
	fs.DurationVar(&cfg.UsageFlush, "usage-flush", 10*time.Second, "how often key usage is written to the key store")
	fs.StringVar(&trusted, "trusted-proxies", "127.0.0.0/8,::1/128", "peers allowed to ask over HTTP (comma-separated CIDRs)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), serveUsage)
		fs.PrintDefaults()
	}
	if ok, help := cli.ParseFlags(fs, args, stdout, stderr); !ok {
		if help {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	var err error
	if cfg.TrustedProxies, err = extauthz.ParseTrustedProxies(trusted); err != nil || len(cfg.TrustedProxies) == 0 {
		fmt.Fprintf(stderr, "portcullis serve: --trusted-proxies %q: want comma-separated CIDRs\n", trusted)
		return cli.ExitUsage
	}
	var level slog.Level
	for _, bad := range []struct {
		is  bool
		why string
	}{
		{cfg.Policy == "", "--policy FILE is required"},
		{fs.NArg() > 0, fmt.Sprintf("unexpected %q: serve takes flags only", fs.Arg(0))},
		{level.UnmarshalText([]byte(logLevel)) != nil, fmt.Sprintf("--log-level %q: want debug, info, warn or error", logLevel)},
		{(cfg.TLSCert == "") != (cfg.TLSKey == ""), "--tls-cert and --tls-key go together"},
		{cfg.ClientCA != "" && cfg.TLSCert == "", "--client-ca needs --tls-cert and --tls-key"},
		{cfg.IdleTimeout <= 0, "--idle-timeout must be positive"},
		{cfg.ReadTimeout <= 0, "--read-timeout must be positive"},
		{maxStreams == 0 || maxStreams > 1<<31, "--max-concurrent-streams: want 1 to 2147483648"},
		{cfg.UsageFlush <= 0, "--usage-flush must be positive"},
	} {
		if bad.is {
			fmt.Fprintf(stderr, "portcullis serve: %s\n", bad.why)
			fs.Usage()
			return cli.ExitUsage
		}
	}
	cfg.MaxStreams, cfg.Version = uint32(maxStreams), version()
	defer gcfloor.Keep(uint64(gcHeadroom) << 20)()
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("portcullis stopped", "error", err.Error())
		return cli.ExitFailed
	}
	return cli.ExitOK
}

// serve runs the server until SIGTERM or SIGINT (or ctx ends), reloading on
// SIGHUP, then drains.
func serve(ctx context.Context, cfg server.Config, log *slog.Logger) error {
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			if s == syscall.SIGHUP {
				srv.Reload("sighup")
				continue
			}
			log.Info("signal received: draining", "signal", s.String())
			stop()
			return
		}
	}()
	runErr := srv.Run(ctx)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	srv.Drain(dctx)
	return runErr
}
