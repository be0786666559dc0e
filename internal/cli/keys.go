package cli

// This file holds `portcullis keys`: flags and printing; the work is the
// keys package's.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/keys/pgstore"
	"github.com/portcullis/portcullis/policy"
)

const keysUsage = `usage: portcullis keys COMMAND [flags] [--policy FILE | --keys FILE]

  new      --tenant T | --user U | --superuser  [--tier T] [--expires 270d|2027-08-20] [--id ID]
           [--label L] [--description D] [--prefix pk_live_] [--quiet]
           make a key, print it once; with --policy/--keys add it to the keys file,
           else print the entry to add
  rotate   ID [--overlap 1h] [--quiet]   new value, same id and metadata; the old value keeps
           working for --overlap;  rotate ID --finish   ends the overlap now
  revoke   ID | --user U | --tenant T  [--delete]   disable (or delete) keys
  list     [--json] [--admin 127.0.0.1:9090]   every key, never a secret; --admin adds usage
  expiring --within 14d [--json]   active keys that expire within the window
  hash     read a key on stdin, print its SHA-256 for a keys file
  import   --policy P FILE   copy a keys file's keys into the policy's key store

--policy works on the keys the policy names: its key store when it has a keys_store, else its
keys file (and applies its tiers, key_limit and key_lifetime); --keys works on a keys file
directly. Exit 0 done, 1 refused, 2 usage error.
`

func Keys(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return ExitUsage
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) int{
		"new": runKeysNew, "rotate": runKeysRotate, "revoke": runKeysRevoke,
		"list": runKeysList, "expiring": runKeysExpiring,
	}
	switch args[0] {
	case "hash":
		return runKeysHash(stdin, stdout, stderr)
	case "import":
		return runKeysImport(args[1:], stdout, stderr)
	}
	if f, ok := cmds[args[0]]; ok {
		return f(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "portcullis keys: unknown command %q\n%s", args[0], keysUsage)
	return ExitUsage
}

// keysFlags declares --policy and --keys on fs.
func keysFlags(fs *flag.FlagSet) (policyPath, keysPath *string) {
	return fs.String("policy", "", "policy whose keys file to use"), fs.String("keys", "", "keys file to use directly")
}

// parseKeysFlags parses a keys subcommand's flags, allowing positional
// arguments before or after them. It returns the positionals, or false.
func parseKeysFlags(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, keysUsage) }
	var pos []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return nil, false
	}
	return append(pos, fs.Args()...), true
}

// fail prints err and returns its exit status: 1 for a refused change, 2
// for anything a user typed wrong.
func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "portcullis keys %s: %v\n", cmd, err)
	if errors.Is(err, keys.ErrRefused) {
		return ExitFailed
	}
	return ExitUsage
}

// openKeys resolves --policy or --keys into where the keys live: a keys
// file (with a policy, every change is validated with it), or the policy's
// key store. The returned function closes what was opened.
func openKeys(policyPath, keysPath string) (keys.Manager, *policy.Snapshot, func(), error) {
	none := func() {}
	switch {
	case policyPath != "" && keysPath != "":
		return nil, nil, none, errors.New("give --policy or --keys, not both")
	case keysPath != "":
		return keys.Location{Path: keysPath}, nil, none, nil
	case policyPath == "":
		return nil, nil, none, errors.New("give --policy FILE or --keys FILE")
	}
	snap, err := policy.Load(policyPath, policy.LoadOptions{})
	if err != nil {
		return nil, nil, none, fmt.Errorf("%w: the policy does not validate now; fix it first:\n%v", keys.ErrRefused, err)
	}
	if snap.KeyStore() != nil {
		store, closeStore, err := openStore(snap)
		return pgstore.Manager{Store: store, By: "cli"}, snap, closeStore, err
	}
	if snap.KeysFile() == "" {
		return nil, nil, none, fmt.Errorf("%w: %s keeps its keys inline; move them to a keys_file to manage them with portcullis keys", keys.ErrRefused, policyPath)
	}
	return keys.Location{Path: snap.KeysFile(), KeyLifetime: snap.KeyLifetime(), Validate: func(candidate string) error {
		_, err := policy.Load(policyPath, policy.LoadOptions{KeysFile: candidate})
		return err
	}}, snap, none, nil
}

func runKeysHash(stdin io.Reader, stdout, stderr io.Writer) int {
	b, err := io.ReadAll(io.LimitReader(stdin, 4096))
	if err != nil {
		fmt.Fprintf(stderr, "portcullis keys hash: reading stdin: %v\n", err)
		return ExitUsage
	}
	key := strings.TrimRight(string(b), "\r\n")
	if key == "" {
		fmt.Fprintln(stderr, "portcullis keys hash: no key on stdin")
		return ExitUsage
	}
	fmt.Fprintln(stdout, keys.DigestOf(key))
	return ExitOK
}

// parseExpiry reads --expires: a lifetime from now or a date.
func parseExpiry(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := source.ParseDuration(v); err == nil {
		return now.Add(d), nil
	}
	if t, err := source.ParseTimestamp(v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--expires %q: want a lifetime (270d, 12h) or a date (2027-08-20)", v)
}

func runKeysNew(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys new", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	e := &keys.Entry{}
	fs.StringVar(&e.Tenant, "tenant", "", "tenant (or workspace) the key acts for")
	fs.StringVar(&e.User, "user", "", "user the key acts as")
	fs.StringVar(&e.Tier, "tier", "service", "highest tier the key may reach")
	fs.BoolVar(&e.Superuser, "superuser", false, "a superuser key")
	expires := fs.String("expires", "", "lifetime (270d, 12h) or date (2027-08-20); default: none, or the policy's key_lifetime")
	fs.StringVar(&e.ID, "id", "", "key id (default: generated)")
	fs.StringVar(&e.Label, "label", "", "human-readable name")
	fs.StringVar(&e.Description, "description", "", "what the key is for")
	prefix := fs.String("prefix", keys.DefaultPrefix, "key prefix, for secret scanners")
	quiet := fs.Bool("quiet", false, "print only the key on stdout")
	pos, ok := parseKeysFlags(fs, args, stderr)
	if !ok {
		return ExitUsage
	}
	if len(pos) > 0 || (e.Tenant == "" && e.User == "" && !e.Superuser) {
		return fail(stderr, "new", errors.New("give --tenant, --user or --superuser"))
	}
	e.Created = time.Now().UTC().Truncate(time.Second)
	var err error
	if e.Expires, err = parseExpiry(*expires, e.Created); err != nil {
		return fail(stderr, "new", err)
	}
	key, err := keys.New(*prefix)
	if err != nil {
		return fail(stderr, "new", err)
	}
	e.Digest = keys.DigestOf(key)
	if e.ID == "" {
		e.ID = "key_" + e.Digest.String()[:8]
	}
	if *policyPath == "" && *keysPath == "" {
		// No file: print the entry to add by hand.
		entry := "  " + keys.FormatEntry(e)
		if *quiet {
			fmt.Fprintln(stdout, key)
			fmt.Fprintln(stderr, entry)
			return ExitOK
		}
		fmt.Fprintf(stdout, "%s\n\n# The key above is shown once; store it now. Add this entry to the keys file:\n%s\n", key, entry)
		return ExitOK
	}
	m, snap, done, err := openKeys(*policyPath, *keysPath)
	defer done()
	if err == nil && snap != nil && snap.KeyStore() != nil {
		if err = snap.AdmitKey(e); err != nil {
			err = fmt.Errorf("%w: %v", keys.ErrRefused, err)
		}
	}
	if err == nil {
		err = m.Add(context.Background(), e)
	}
	if err != nil {
		return fail(stderr, "new", err)
	}
	fmt.Fprintln(stdout, key)
	if !*quiet {
		fmt.Fprintf(stderr, "key %s added to %s; the key above is shown once: store it now\n", e.ID, m.Where())
	}
	return ExitOK
}

func runKeysRotate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	overlap := fs.String("overlap", "", "how long the old value keeps working (e.g. 1h); default: it stops now")
	finish := fs.Bool("finish", false, "end a rotation's overlap now: only the new value works")
	prefix := fs.String("prefix", keys.DefaultPrefix, "key prefix, for secret scanners")
	quiet := fs.Bool("quiet", false, "print only the key on stdout")
	pos, ok := parseKeysFlags(fs, args, stderr)
	if !ok {
		return ExitUsage
	}
	if len(pos) != 1 {
		return fail(stderr, "rotate", errors.New("give the id of the key to rotate"))
	}
	id := pos[0]
	var lap time.Duration
	if *overlap != "" {
		d, err := source.ParseDuration(*overlap)
		if err != nil {
			return fail(stderr, "rotate", err)
		}
		lap = d
	}
	m, _, done, err := openKeys(*policyPath, *keysPath)
	defer done()
	if err != nil {
		return fail(stderr, "rotate", err)
	}
	now, key, ctx := time.Now().UTC().Truncate(time.Second), "", context.Background()
	if *finish {
		err = m.FinishRotation(ctx, id)
	} else if key, err = keys.New(*prefix); err == nil {
		err = m.Rotate(ctx, id, keys.DigestOf(key), lap, now)
	}
	if err != nil {
		return fail(stderr, "rotate", err)
	}
	if *finish {
		fmt.Fprintf(stderr, "key %s: only its current value works now\n", id)
		return ExitOK
	}
	fmt.Fprintln(stdout, key)
	if !*quiet {
		msg := "the old value stops working now"
		if lap > 0 {
			msg = "the old value keeps working until " + now.Add(lap).Format(time.RFC3339)
		}
		fmt.Fprintf(stderr, "key %s rotated in %s; %s; the key above is shown once: store it now\n", id, m.Where(), msg)
	}
	return ExitOK
}

func runKeysRevoke(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys revoke", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	var m keys.Match
	fs.StringVar(&m.User, "user", "", "revoke every key of this user")
	fs.StringVar(&m.Tenant, "tenant", "", "revoke every key of this tenant")
	del := fs.Bool("delete", false, "delete the entries instead of disabling them")
	pos, ok := parseKeysFlags(fs, args, stderr)
	if !ok {
		return ExitUsage
	}
	if len(pos) == 1 {
		m.ID = pos[0]
	}
	by := 0
	for _, set := range []bool{m.ID != "", m.User != "", m.Tenant != ""} {
		if set {
			by++
		}
	}
	if by != 1 || len(pos) > 1 {
		return fail(stderr, "revoke", errors.New("give one key id, or --user U, or --tenant T"))
	}
	mg, _, done, err := openKeys(*policyPath, *keysPath)
	defer done()
	var ids []string
	if err == nil {
		ids, err = mg.Revoke(context.Background(), m, *del)
	}
	if err != nil {
		return fail(stderr, "revoke", err)
	}
	verb := "revoked"
	if *del {
		verb = "deleted"
	}
	fmt.Fprintf(stdout, "%s %d key(s): %s\n", verb, len(ids), strings.Join(ids, ", "))
	return ExitOK
}
