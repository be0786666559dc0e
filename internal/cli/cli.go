// Package cli holds the binary's offline commands: check and validate a
// policy, manage API keys (in a keys file or the key store), migrate the
// key store's schema, run policy tests. Each is flags and printing over
// the libraries; cmd/portcullis dispatches to them.
//
// It must hold no library work of its own, and no library may import it.
package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
)

// Exit statuses shared by the commands.
const (
	ExitOK     = 0
	ExitFailed = 1 // validate: invalid policy; keys: change refused; test: a case failed
	ExitUsage  = 2 // usage error, an unusable policy, or output that cannot be written
	ExitDenied = 3 // check: the request is denied
)

// ParseFlags parses args into fs. Asked for help (-h, --help) it prints
// fs's usage on stdout and reports help; on a usage error it prints the
// error and the usage on stderr. It returns false when the command should
// exit: with ExitOK for help, else ExitUsage.
func ParseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (ok, help bool) {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = stdout.Write(buf.Bytes())
		return false, true
	case err != nil:
		_, _ = stderr.Write(buf.Bytes())
		return false, false
	}
	fs.SetOutput(stderr)
	return true, false
}

// Output is a command's stdout that remembers the first write that failed,
// so a command whose output was lost (a closed pipe, a full disk) never
// exits 0. It is not safe for concurrent use.
type Output struct {
	W   io.Writer
	err error
}

// Write writes p to W, or fails at once after a failed write.
func (o *Output) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.W.Write(p)
	if err != nil {
		o.err = err
	}
	return n, err
}

// Err returns the first write that failed, or nil.
func (o *Output) Err() error { return o.err }

// isHelp reports whether arg asks for help rather than naming a command.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}
