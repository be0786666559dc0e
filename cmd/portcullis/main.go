// Command portcullis is the Portcullis binary: an Envoy ext_authz server and
// the offline tools around its policy.
//
//	portcullis serve --policy FILE [--grpc-addr ADDR] [--admin-addr ADDR] [--reflection] [--tls-cert F --tls-key F [--client-ca F]]
//	portcullis check --policy FILE --method M --path P [--host H] [-H 'name: value']...
//	portcullis validate FILE
//	portcullis keys hash
//	portcullis version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// Exit statuses shared by the subcommands.
const (
	exitOK      = 0
	exitFailed  = 1 // validate: invalid policy; keys: change refused
	exitUsage   = 2 // usage error, or (check) an unusable policy
	exitDenied  = 3 // check: the request is denied
	usageString = `usage: portcullis <command> [flags]

commands:
  serve     run the ext_authz gRPC server
  check     decide one request offline against a policy
  validate  check a policy file (and its keys and JWKS files)
  keys      work with API keys (hash)
  version   print the version
`
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageString)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "check":
		return runCheck(ctx, args[1:], stdout, stderr)
	case "validate":
		return runValidate(args[1:], stdout, stderr)
	case "keys":
		return runKeys(args[1:], stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "portcullis", version())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageString)
		return exitOK
	}
	fmt.Fprintf(stderr, "portcullis: unknown command %q\n%s", args[0], usageString)
	return exitUsage
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

// parseFlags parses args into fs, printing usage errors to stderr. It
// returns false when the command should exit with exitUsage (or exitOK for
// -h, reported through help).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (ok, help bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return false, errors.Is(err, flag.ErrHelp)
	}
	return true, false
}
