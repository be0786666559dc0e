package cli

// This file holds `portcullis keys`: flags and printing; the work is the
// keys package's.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
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
directly. portcullis keys COMMAND --help says more of one command.
Exit 0 done, 1 refused, 2 usage error (or output that could not be written).
`

// keysCommand is one `portcullis keys` subcommand: its own usage (printed
// above its flags) and what runs it.
type keysCommand struct {
	usage string
	run   func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// keysCommands are the subcommands, by name. Their usages follow the
// overview above.
var keysCommands map[string]keysCommand

func init() {
	keysCommands = map[string]keysCommand{
		"new": {`usage: portcullis keys new --tenant T | --user U | --superuser [flags] [--policy FILE | --keys FILE]

Makes a key and prints it once, on stdout. With --policy or --keys it is added to the
keys file (or the policy's key store) after the result validates; without either, the
entry to add to a keys file by hand is printed too.
`, runKeysNew},
		"rotate": {`usage: portcullis keys rotate ID [--overlap 1h] [--quiet] (--policy FILE | --keys FILE)
       portcullis keys rotate ID --finish (--policy FILE | --keys FILE)

Gives key ID a new value (printed once, on stdout), keeping its id and metadata; the old
value keeps working for --overlap. --finish ends an overlap now.
`, runKeysRotate},
		"revoke": {`usage: portcullis keys revoke ID | --user U | --tenant T [--delete] (--policy FILE | --keys FILE)

Disables the key ID, or every key of a user or a tenant: they are refused from then on
(state disabled). --delete removes their entries instead.
`, runKeysRevoke},
		"list": {`usage: portcullis keys list [--json] [--admin 127.0.0.1:9090] (--policy FILE | --keys FILE)

Prints every key as a table (or JSON): id, label, tenant, user, tier, created, expires,
state (active, disabled or expired); never a secret or a full digest. --admin adds each
key's checks as a running server counted them.
`, runKeysList},
		"expiring": {`usage: portcullis keys expiring [--within 14d] [--json] (--policy FILE | --keys FILE)

Prints the active keys that expire within the window, soonest first.
`, runKeysExpiring},
		"hash": {`usage: portcullis keys hash < FILE     (or: printf %s "$KEY" | portcullis keys hash)

Reads one key (or management token) on stdin and prints its SHA-256 in hex: the
sha256 of a keys file entry or a management tokens file entry. The key is never stored.
`, runKeysHash},
		"import": {`usage: portcullis keys import --policy FILE KEYSFILE

Copies the keys file's keys, digests unchanged, into the policy's key store in one
transaction: all of them, or none.
`, runKeysImport},
	}
}

// Keys is `portcullis keys`: API keys in a keys file or the key store.
func Keys(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return ExitUsage
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, keysUsage)
		return ExitOK
	}
	if c, ok := keysCommands[args[0]]; ok {
		return c.run(args[1:], stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "portcullis keys: unknown command %q\n%s", args[0], keysUsage)
	return ExitUsage
}

// keysFlags declares --policy and --keys on fs.
func keysFlags(fs *flag.FlagSet) (policyPath, keysPath *string) {
	return fs.String("policy", "", "policy whose keys to use: its key store, or its keys file"), fs.String("keys", "", "keys file to use directly")
}

// parseKeysFlags parses a keys subcommand's flags (fs is named "keys
// <command>"), allowing positional arguments before or after them. It
// returns the positionals, or done with the exit status: --help prints the
// subcommand's own usage on stdout (ExitOK), a bad flag prints the error
// and that usage on stderr (ExitUsage).
func parseKeysFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (pos []string, code int, done bool) {
	name := strings.TrimPrefix(fs.Name(), "keys ")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), keysCommands[name].usage)
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprint(fs.Output(), "\nflags:\n")
			fs.PrintDefaults()
		}
	}
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	if ok, help := ParseFlags(fs, args, stdout, stderr); !ok {
		if help {
			return nil, ExitOK, true
		}
		return nil, ExitUsage, true
	}
	return append(pos, fs.Args()...), 0, false
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
		st, closeStore, err := openStore(snap)
		return store.Manager{Store: st, By: "cli"}, snap, closeStore, err
	}
	if snap.KeysFile() == "" {
		return nil, nil, none, fmt.Errorf("%w: %s keeps its keys inline; move them to a keys_file to manage them with portcullis keys", keys.ErrRefused, policyPath)
	}
	file := snap.KeysFile()
	return keys.Location{Path: file, KeyLifetime: snap.KeyLifetime(), Validate: func(candidate string) error {
		// The policy joins a relative keys file to its own folder: the
		// candidate (beside the keys file) goes absolute so it is not
		// joined twice.
		abs, err := filepath.Abs(candidate)
		if err != nil {
			return err
		}
		if _, err := policy.Load(policyPath, policy.LoadOptions{KeysFile: abs}); err != nil {
			// The candidate is a temporary file: its problems are the keys
			// file's as it would be after the change.
			return errors.New(strings.ReplaceAll(err.Error(), abs, file+" (as changed)"))
		}
		return nil
	}}, snap, none, nil
}

func runKeysHash(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys hash", flag.ContinueOnError)
	pos, code, done := parseKeysFlags(fs, args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) > 0 {
		return fail(stderr, "hash", fmt.Errorf("unexpected %q: the key is read from stdin, never from the command line (it would stay in the shell's history)", pos[0]))
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 4096))
	if err != nil {
		fmt.Fprintf(stderr, "portcullis keys hash: reading stdin: %v\n", err)
		return ExitUsage
	}
	key := strings.TrimRight(string(b), "\r\n")
	if key == "" {
		_, _ = io.WriteString(stderr, "portcullis keys hash: no key on stdin: printf %s \"$KEY\" | portcullis keys hash\n")
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

func runKeysNew(args []string, _ io.Reader, stdout, stderr io.Writer) int {
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
	pos, code, stop := parseKeysFlags(fs, args, stdout, stderr)
	if stop {
		return code
	}
	if len(pos) > 0 || (e.Tenant == "" && e.User == "" && !e.Superuser) {
		return fail(stderr, "new", errors.New("give --tenant, --user or --superuser"))
	}
	e.Created = time.Now().UTC().Truncate(time.Second)
	var err error
	if e.Expires, err = parseExpiry(*expires, e.Created); err != nil {
		return fail(stderr, "new", err)
	}
	if !e.Expires.IsZero() && !e.Expires.After(e.Created) {
		return fail(stderr, "new", fmt.Errorf("%w: --expires %s: that is not after now (%s): a key must expire after it is made",
			keys.ErrRefused, *expires, e.Created.Format(time.RFC3339)))
	}
	key, err := keys.New(*prefix)
	if err != nil {
		return fail(stderr, "new", fmt.Errorf("--prefix %q: %w", *prefix, err))
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
	if err == nil && snap != nil {
		err = admit(snap, e)
	}
	if err == nil {
		err = m.Add(context.Background(), e)
	}
	if err != nil {
		return fail(stderr, "new", err)
	}
	if _, err := fmt.Fprintln(stdout, key); err != nil {
		return lostKey(stderr, "new", e.ID, m.Where(), *policyPath, *keysPath, err)
	}
	if !*quiet {
		lifetime := m.Lifetime()
		if snap != nil {
			lifetime = snap.KeyLifetime()
		}
		fmt.Fprintf(stderr, "key %s added to %s%s; the key above is shown once: store it now\n", e.ID, m.Where(), expiryNote(e, *expires, lifetime))
	}
	return ExitOK
}

// expiryNote says when a new key expires and why, durations as the user
// wrote them (365d, not 8760h0m0s).
func expiryNote(e *keys.Entry, flagValue string, lifetime time.Duration) string {
	switch {
	case flagValue != "":
		return fmt.Sprintf("; it expires %s (--expires %s)", e.Expires.Format(time.RFC3339), flagValue)
	case lifetime > 0:
		return fmt.Sprintf("; it expires %s (the policy's key_lifetime, %s)", e.Created.Add(lifetime).Format(time.RFC3339), formatDuration(lifetime))
	}
	return "; it never expires"
}

// formatDuration writes d as a configuration duration is written: whole
// days as 365d, else Go's form without zero units (36h, 1h30m, 90s).
func formatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d > 0 && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// admit checks a new key's flags against the policy, naming the flag a
// problem is in: --tier a tier of the policy; for the key store (whose keys
// the policy checks as it checks a file's), --tenant a tenant of it and
// --user no tenant's name.
func admit(snap *policy.Snapshot, e *keys.Entry) error {
	if !snap.HasTier(e.Tier) {
		return fmt.Errorf("%w: --tier %q: not a tier of the policy (tiers are: %s)", keys.ErrRefused, e.Tier, strings.Join(snap.Tiers(), ", "))
	}
	if snap.KeyStore() == nil {
		return nil
	}
	if e.Tenant != "" {
		if _, ok := snap.Canonical(e.Tenant); !ok {
			return fmt.Errorf("%w: --tenant %q: not a tenant of the policy", keys.ErrRefused, e.Tenant)
		}
	}
	if e.User != "" && snap.NamesTenant(e.User) {
		return fmt.Errorf("%w: --user %q: a tenant's name or alias (users and tenants share the tenant header)", keys.ErrRefused, e.User)
	}
	if err := snap.AdmitKey(e); err != nil {
		return fmt.Errorf("%w: %v", keys.ErrRefused, err)
	}
	return nil
}

// lostKey reports a key made or rotated whose value could not be printed:
// nobody will ever see it, so it must go.
func lostKey(stderr io.Writer, cmd, id, where, policyPath, keysPath string, err error) int {
	from := "--keys " + keysPath
	if policyPath != "" {
		from = "--policy " + policyPath
	}
	fmt.Fprintf(stderr, "portcullis keys %s: key %s was written to %s, but its value could not be printed (%v) and is shown nowhere else: "+
		"revoke it (portcullis keys revoke %s %s) and make another\n", cmd, id, where, err, id, from)
	return ExitUsage
}

func runKeysRotate(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	overlap := fs.String("overlap", "", "how long the old value keeps working (e.g. 1h); default: it stops now")
	finish := fs.Bool("finish", false, "end a rotation's overlap now: only the new value works")
	prefix := fs.String("prefix", keys.DefaultPrefix, "key prefix, for secret scanners")
	quiet := fs.Bool("quiet", false, "print only the key on stdout")
	pos, code, stop := parseKeysFlags(fs, args, stdout, stderr)
	if stop {
		return code
	}
	if len(pos) != 1 {
		return fail(stderr, "rotate", errors.New("give the id of the key to rotate"))
	}
	id := pos[0]
	var lap time.Duration
	if *overlap != "" {
		d, err := source.ParseDuration(*overlap)
		if err != nil {
			return fail(stderr, "rotate", fmt.Errorf("--overlap: %w", err))
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
	if _, err := fmt.Fprintln(stdout, key); err != nil {
		return lostKey(stderr, "rotate", id, m.Where(), *policyPath, *keysPath, err)
	}
	if !*quiet {
		msg := "the old value stops working now"
		if lap > 0 {
			msg = fmt.Sprintf("the old value keeps working for %s, until %s", *overlap, now.Add(lap).Format(time.RFC3339))
		}
		fmt.Fprintf(stderr, "key %s rotated in %s; %s; the key above is shown once: store it now\n", id, m.Where(), msg)
	}
	return ExitOK
}

func runKeysRevoke(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys revoke", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	var m keys.Match
	fs.StringVar(&m.User, "user", "", "revoke every key of this user")
	fs.StringVar(&m.Tenant, "tenant", "", "revoke every key of this tenant")
	del := fs.Bool("delete", false, "delete the entries instead of disabling them")
	pos, code, stop := parseKeysFlags(fs, args, stdout, stderr)
	if stop {
		return code
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
	// The state the API, the token page and keys list show: disabled.
	verb := "disabled"
	if *del {
		verb = "deleted"
	}
	fmt.Fprintf(stdout, "%s %d key(s): %s\n", verb, len(ids), strings.Join(ids, ", "))
	return ExitOK
}
