// Command portcullis is the Portcullis binary: an Envoy ext_authz server and
// the offline tools around its policy. This package wires the server
// (serve.go) and the demo (demo.go) and dispatches the offline commands to
// internal/cli.
//
//	portcullis serve --policy FILE [--grpc-addr ADDR] [--admin-addr ADDR] [--http-addr ADDR --http-mode M] [--keys-api-addr ADDR] …
//	portcullis check --policy FILE --method M --path P [--host H] [-H 'name: value']...
//	portcullis validate FILE
//	portcullis test [--policy FILE] TESTFILE...
//	portcullis keys new|rotate|revoke|list|expiring|hash|import …
//	portcullis db migrate --policy FILE
//	portcullis tenants import --policy FILE
//	portcullis demo self-service
//	portcullis version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/portcullis/portcullis/internal/cli"
)

const usageString = `usage: portcullis <command> [flags]

commands:
  serve     run the ext_authz gRPC server
  check     decide one request offline against a policy
  validate  check a policy file (and its keys and JWKS files)
  test      run a policy's test cases
  keys      work with API keys: new, rotate, revoke, list, expiring, hash, import
  db        the key store's schema: migrate
  tenants   the key store's directory: import a policy's tenants and members
  demo      try an example on this machine: demo self-service (a throwaway PostgreSQL, the token page)
  version   print the version

portcullis <command> --help describes one command.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit status. A
// command whose output could not be written (a closed pipe, a full disk)
// never exits 0: it says so on stderr and exits 2.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := &cli.Output{W: stdout}
	code := dispatch(ctx, args, stdin, out, stderr)
	if err := out.Err(); err != nil && (code == cli.ExitOK || code == cli.ExitDenied) {
		fmt.Fprintf(stderr, "portcullis %s: the output could not be written: %v\n", args[0], err)
		return cli.ExitUsage
	}
	return code
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageString)
		return cli.ExitUsage
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "check":
		return cli.Check(ctx, args[1:], stdout, stderr)
	case "validate":
		return cli.Validate(args[1:], stdout, stderr)
	case "test":
		return cli.Test(ctx, args[1:], stdout, stderr)
	case "keys":
		return cli.Keys(args[1:], stdin, stdout, stderr)
	case "db":
		return cli.DB(args[1:], stdout, stderr)
	case "tenants":
		return cli.Tenants(ctx, args[1:], stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "portcullis", version())
		return cli.ExitOK
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usageString)
		return cli.ExitOK
	}
	fmt.Fprintf(stderr, "portcullis: unknown command %q\n%s", args[0], usageString)
	return cli.ExitUsage
}

// version returns the module version, or the VCS revision of a local build.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
