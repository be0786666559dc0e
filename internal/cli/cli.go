// Package cli holds the binary's offline commands: check and validate a
// policy, manage API keys (in a keys file or the key store), migrate the
// key store's schema, run policy tests. Each is flags and printing over
// the libraries; cmd/portcullis dispatches to them.
//
// It must hold no library work of its own, and no library may import it.
package cli

import (
	"errors"
	"flag"
	"io"
)

// Exit statuses shared by the commands.
const (
	ExitOK     = 0
	ExitFailed = 1 // validate: invalid policy; keys: change refused; test: a case failed
	ExitUsage  = 2 // usage error, or an unusable policy
	ExitDenied = 3 // check: the request is denied
)

// ParseFlags parses args into fs, printing usage errors to stderr. It
// returns false when the command should exit with ExitUsage (or ExitOK for
// -h, reported through help).
func ParseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (ok, help bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return false, errors.Is(err, flag.ErrHelp)
	}
	return true, false
}
