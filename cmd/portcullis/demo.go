package main

// This file holds `portcullis demo`: its flags and the signals that end it.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/portcullis/portcullis/internal/cli"
	"github.com/portcullis/portcullis/internal/sandbox"
)

const demoUsage = `usage: portcullis demo self-service [flags]

Brings examples/self-service up on this machine in one command: a throwaway
PostgreSQL from the machine's own binaries (as the postgres user when run as
root), its schema, the server with the key-management API, the token page and
forward-auth, and demo keys; prints sign-in links for the demo users and curl
lines for the keys. Ctrl-C stops it and removes the database and every file it
made. Run it from the repository's root (or give --example). Demo credentials
only: never point it at a real deployment.

flags:
`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var cfg sandbox.Config
	var logLevel string
	fs.StringVar(&cfg.Example, "example", "examples/self-service", "the example's folder (policy.yaml, demo-credentials.json)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:9001", "ext_authz gRPC listener (the README's grpcurl calls use it)")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:9090", "admin listener: /healthz, /readyz, /metrics, /keys/usage")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:9002", "forward-auth listener (envoy mode), for the keys' curl lines")
	fs.StringVar(&cfg.KeysAPIAddr, "keys-api-addr", "127.0.0.1:9003", "key-management API and token page listener")
	fs.StringVar(&cfg.SignInAddr, "signin-addr", "127.0.0.1:9004", "the demo's sign-in links: each opening makes a fresh one-time session")
	fs.StringVar(&logLevel, "log-level", "info", "the server log's level (the log is a file of the demo's; warnings show here too)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), demoUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) == 0 {
			fs.SetOutput(stderr)
			fs.Usage()
			return cli.ExitUsage
		}
		fs.SetOutput(stdout)
		fs.Usage()
		return cli.ExitOK
	}
	if args[0] != "self-service" {
		fmt.Fprintf(stderr, "portcullis demo: unknown demo %q: the one demo is self-service\n", args[0])
		return cli.ExitUsage
	}
	if ok, help := cli.ParseFlags(fs, args[1:], stdout, stderr); !ok {
		if help {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portcullis demo self-service: unexpected %q: it takes flags only (portcullis demo --help)\n", fs.Arg(0))
		return cli.ExitUsage
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintf(stderr, "portcullis demo: --log-level %q: want debug, info, warn or error\n", logLevel)
		return cli.ExitUsage
	}
	cfg.Version = version()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := sandbox.SelfService(ctx, cfg, stdout, stderr); err != nil {
		if ctx.Err() != nil { // stopped while starting: not a failure
			fmt.Fprintf(stderr, "portcullis demo: stopped before it was ready (%v)\n", err)
			return cli.ExitOK
		}
		fmt.Fprintf(stderr, "portcullis demo: %v\n", err)
		return cli.ExitFailed
	}
	return cli.ExitOK
}
