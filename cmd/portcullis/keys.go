package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/policy"
)

// DefaultKeyPrefix marks generated keys so secret scanners can find leaked
// ones.
const DefaultKeyPrefix = "pk_live_"

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

--policy works on the keys file the policy names (and applies its tiers, key_limit and
key_lifetime); --keys works on a keys file directly. Exit 0 done, 1 refused, 2 usage error.
`

func runKeys(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return exitUsage
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) int{
		"new": runKeysNew, "rotate": runKeysRotate, "revoke": runKeysRevoke,
		"list": runKeysList, "expiring": runKeysExpiring,
	}
	if args[0] == "hash" {
		return runKeysHash(stdin, stdout, stderr)
	}
	if f, ok := cmds[args[0]]; ok {
		return f(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "portcullis keys: unknown command %q\n%s", args[0], keysUsage)
	return exitUsage
}

// keysFlags declares --policy and --keys on fs.
func keysFlags(fs *flag.FlagSet) (policyPath, keysPath *string) {
	return fs.String("policy", "", "policy whose keys file to use"), fs.String("keys", "", "keys file to use directly")
}

// parseKeysFlags parses a keys subcommand's flags, allowing one positional
// argument before or after them. It returns the positionals, or false.
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
	if errors.Is(err, errRefused) {
		return exitFailed
	}
	return exitUsage
}

func runKeysHash(stdin io.Reader, stdout, stderr io.Writer) int {
	b, err := io.ReadAll(io.LimitReader(stdin, 4096))
	if err != nil {
		fmt.Fprintf(stderr, "portcullis keys hash: reading stdin: %v\n", err)
		return exitUsage
	}
	key := strings.TrimRight(string(b), "\r\n")
	if key == "" {
		fmt.Fprintln(stderr, "portcullis keys hash: no key on stdin")
		return exitUsage
	}
	fmt.Fprintln(stdout, hashKey(key))
	return exitOK
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// parseExpiry reads --expires: a lifetime from now or a date.
func parseExpiry(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := policy.ParseDuration(v); err == nil {
		return now.Add(d), nil
	}
	if t, err := policy.ParseTimestamp(v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--expires %q: want a lifetime (270d, 12h) or a date (2027-08-20)", v)
}

func runKeysNew(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys new", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	tenant := fs.String("tenant", "", "tenant (or workspace) the key acts for")
	user := fs.String("user", "", "user the key acts as")
	tier := fs.String("tier", "service", "highest tier the key may reach")
	superuser := fs.Bool("superuser", false, "a superuser key")
	expires := fs.String("expires", "", "lifetime (270d, 12h) or date (2027-08-20); default: none, or the policy's key_lifetime")
	id := fs.String("id", "", "key id (default: generated)")
	label := fs.String("label", "", "human-readable name")
	description := fs.String("description", "", "what the key is for")
	prefix := fs.String("prefix", DefaultKeyPrefix, "key prefix, for secret scanners")
	quiet := fs.Bool("quiet", false, "print only the key on stdout")
	pos, ok := parseKeysFlags(fs, args, stderr)
	if !ok {
		return exitUsage
	}
	if len(pos) > 0 || (*tenant == "" && *user == "" && !*superuser) {
		return fail(stderr, "new", errors.New("give --tenant, --user or --superuser"))
	}
	now := time.Now().UTC().Truncate(time.Second)
	exp, err := parseExpiry(*expires, now)
	if err != nil {
		return fail(stderr, "new", err)
	}
	key, err := newKey(*prefix)
	if err != nil {
		return fail(stderr, "new", err)
	}
	if *id == "" {
		*id = "key_" + hashKey(key)[:8]
	}
	fields := [][2]string{{"id", *id}, {"sha256", hashKey(key)}, {"tenant", *tenant}, {"user", *user}, {"tier", *tier},
		{"label", *label}, {"description", *description}, {"created", now.Format(time.RFC3339)}}
	if !exp.IsZero() {
		fields = append(fields, [2]string{"expires", exp.UTC().Format(time.RFC3339)})
	}
	fill := func(e *yaml.Node) {
		for _, f := range fields {
			switch {
			case f[1] == "":
			case f[0] == "created" || f[0] == "expires":
				setField(e, f[0], f[1])
			default:
				setString(e, f[0], f[1])
			}
		}
		if *superuser {
			setField(e, "superuser", "true")
		}
	}

	if *policyPath == "" && *keysPath == "" {
		// No file: print the entry to add by hand.
		e := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		fill(e)
		b, _ := yaml.Marshal(&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{e}})
		entry := "  " + strings.TrimSpace(string(b))
		if *quiet {
			fmt.Fprintln(stdout, key)
			fmt.Fprintln(stderr, entry)
			return exitOK
		}
		fmt.Fprintf(stdout, "%s\n\n# The key above is shown once; store it now. Add this entry to the keys file:\n%s\n", key, entry)
		return exitOK
	}
	st, err := openStore(*policyPath, *keysPath)
	if err != nil {
		return fail(stderr, "new", err)
	}
	err = st.update(func(keys *yaml.Node) error {
		e := newEntry(keys)
		fill(e)
		keys.Content = append(keys.Content, e)
		return nil
	})
	if err != nil {
		return fail(stderr, "new", err)
	}
	fmt.Fprintln(stdout, key)
	if !*quiet {
		fmt.Fprintf(stderr, "key %s added to %s; the key above is shown once: store it now\n", *id, st.path)
	}
	return exitOK
}

func runKeysRotate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	overlap := fs.String("overlap", "", "how long the old value keeps working (e.g. 1h); default: it stops now")
	finish := fs.Bool("finish", false, "end a rotation's overlap now: only the new value works")
	prefix := fs.String("prefix", DefaultKeyPrefix, "key prefix, for secret scanners")
	quiet := fs.Bool("quiet", false, "print only the key on stdout")
	pos, ok := parseKeysFlags(fs, args, stderr)
	if !ok {
		return exitUsage
	}
	if len(pos) != 1 {
		return fail(stderr, "rotate", errors.New("give the id of the key to rotate"))
	}
	id := pos[0]
	var lap time.Duration
	if *overlap != "" {
		d, err := policy.ParseDuration(*overlap)
		if err != nil {
			return fail(stderr, "rotate", err)
		}
		lap = d
	}
	st, err := openStore(*policyPath, *keysPath)
	if err != nil {
		return fail(stderr, "rotate", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	key := ""
	err = st.update(func(keys *yaml.Node) error {
		i := entryByID(keys, id)
		if i < 0 {
			return fmt.Errorf("%w: no key %q in %s", errRefused, id, st.path)
		}
		e := keys.Content[i]
		if *finish {
			deleteField(e, "previous")
			return nil
		}
		var err error
		if key, err = newKey(*prefix); err != nil {
			return err
		}
		prev := &yaml.Node{Kind: yaml.SequenceNode, Style: e.Style & yaml.FlowStyle}
		if old := field(e, "previous"); old != nil {
			for _, p := range old.Content { // keep unexpired old values
				if x := field(p, "expires"); x != nil {
					if t, err := policy.ParseTimestamp(x.Value); err == nil && t.After(now) {
						prev.Content = append(prev.Content, p)
					}
				}
			}
		}
		if cur := field(e, "sha256"); cur != nil && lap > 0 {
			p := &yaml.Node{Kind: yaml.MappingNode, Style: e.Style & yaml.FlowStyle}
			setString(p, "sha256", cur.Value)
			setField(p, "expires", now.Add(lap).Format(time.RFC3339))
			prev.Content = append(prev.Content, p)
		}
		setString(e, "sha256", hashKey(key))
		setField(e, "rotated", now.Format(time.RFC3339))
		if len(prev.Content) > 0 {
			setNode(e, "previous", prev)
		} else {
			deleteField(e, "previous")
		}
		return nil
	})
	if err != nil {
		return fail(stderr, "rotate", err)
	}
	if *finish {
		fmt.Fprintf(stderr, "key %s: only its current value works now\n", id)
		return exitOK
	}
	fmt.Fprintln(stdout, key)
	if !*quiet {
		msg := "the old value stops working now"
		if lap > 0 {
			msg = "the old value keeps working until " + now.Add(lap).Format(time.RFC3339)
		}
		fmt.Fprintf(stderr, "key %s rotated in %s; %s; the key above is shown once: store it now\n", id, st.path, msg)
	}
	return exitOK
}

func runKeysRevoke(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys revoke", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	user := fs.String("user", "", "revoke every key of this user")
	tenant := fs.String("tenant", "", "revoke every key of this tenant")
	del := fs.Bool("delete", false, "delete the entries instead of disabling them")
	pos, ok := parseKeysFlags(fs, args, stderr)
	if !ok {
		return exitUsage
	}
	by := 0
	for _, set := range []bool{len(pos) == 1, *user != "", *tenant != ""} {
		if set {
			by++
		}
	}
	if by != 1 || len(pos) > 1 {
		return fail(stderr, "revoke", errors.New("give one key id, or --user U, or --tenant T"))
	}
	st, err := openStore(*policyPath, *keysPath)
	if err != nil {
		return fail(stderr, "revoke", err)
	}
	var ids []string
	err = st.update(func(keys *yaml.Node) error {
		kept := keys.Content[:0:0]
		for _, e := range keys.Content {
			match := false
			switch {
			case len(pos) == 1:
				match = value(e, "id") == pos[0]
			case *user != "":
				match = value(e, "user") == *user
			default:
				match = value(e, "tenant") == *tenant
			}
			if !match {
				kept = append(kept, e)
				continue
			}
			ids = append(ids, value(e, "id"))
			if !*del {
				setField(e, "disabled", "true")
				deleteField(e, "previous")
				kept = append(kept, e)
			}
		}
		if len(ids) == 0 {
			return fmt.Errorf("%w: no key matches", errRefused)
		}
		keys.Content = kept
		return nil
	})
	if err != nil {
		return fail(stderr, "revoke", err)
	}
	verb := "revoked"
	if *del {
		verb = "deleted"
	}
	fmt.Fprintf(stdout, "%s %d key(s): %s\n", verb, len(ids), strings.Join(ids, ", "))
	return exitOK
}

func value(m *yaml.Node, key string) string {
	if f := field(m, key); f != nil {
		return f.Value
	}
	return ""
}

// keyRow is one key as list and expiring show it: never a secret, never a
// full hash.
type keyRow struct {
	ID       string     `json:"id"`
	Label    string     `json:"label,omitempty"`
	Tenant   string     `json:"tenant,omitempty"`
	User     string     `json:"user,omitempty"`
	Tier     string     `json:"tier"`
	Created  time.Time  `json:"created"`
	Expires  *time.Time `json:"expires,omitempty"`
	State    string     `json:"state"`
	Allowed  *uint64    `json:"allowed,omitempty"`
	Denied   *uint64    `json:"denied,omitempty"`
	LastUsed *time.Time `json:"last_used,omitempty"`
}

func rows(keys []*policy.Key, now time.Time) []keyRow {
	out := make([]keyRow, 0, len(keys))
	for _, k := range keys {
		r := keyRow{ID: k.ID, Label: k.Label(), Tenant: k.Tenant, User: k.User, Tier: k.Tier(), Created: k.Created(), State: "active"}
		if k.Superuser {
			r.Tier += " (superuser)"
		}
		if exp := k.Expires(); !exp.IsZero() {
			r.Expires = &exp
		}
		switch {
		case k.Disabled:
			r.State = "revoked"
		case !k.Expires().IsZero() && !now.Before(k.Expires()):
			r.State = "expired"
		default:
			for _, p := range k.Previous() {
				if now.Before(p.Expires) {
					r.State = "rotating"
				}
			}
		}
		out = append(out, r)
	}
	return out
}

func printRows(w io.Writer, rs []keyRow, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Keys []keyRow `json:"keys"`
		}{rs})
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	usage := len(rs) > 0 && rs[0].Allowed != nil
	head := "ID\tLABEL\tTENANT\tUSER\tTIER\tCREATED\tEXPIRES\tSTATE"
	if usage {
		head += "\tALLOWED\tDENIED\tLAST USED"
	}
	fmt.Fprintln(tw, head)
	day := func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "-"
		}
		return t.Format("2006-01-02")
	}
	for _, r := range rs {
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", r.ID, dash(r.Label), dash(r.Tenant), dash(r.User), r.Tier,
			day(&r.Created), day(r.Expires), r.State)
		if usage {
			last := "-"
			if r.LastUsed != nil {
				last = r.LastUsed.Format(time.RFC3339)
			}
			line += fmt.Sprintf("\t%d\t%d\t%s", *r.Allowed, *r.Denied, last)
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runKeysList(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys list", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	admin := fs.String("admin", "", "a running server's admin address, to show each key's usage")
	if pos, ok := parseKeysFlags(fs, args, stderr); !ok || len(pos) > 0 {
		return exitUsage
	}
	st, err := openStore(*policyPath, *keysPath)
	if err != nil {
		return fail(stderr, "list", err)
	}
	_, keys, err := st.load()
	if err != nil {
		return fail(stderr, "list", fmt.Errorf("%w: %v", errRefused, err))
	}
	rs := rows(keys, time.Now())
	if *admin != "" {
		u, err := fetchUsage(*admin)
		if err != nil {
			return fail(stderr, "list", fmt.Errorf("%w: usage from %s: %v", errRefused, *admin, err))
		}
		for i := range rs {
			c := u[rs[i].ID]
			rs[i].Allowed, rs[i].Denied, rs[i].LastUsed = &c.Allowed, &c.Denied, c.LastUsed
		}
	}
	printRows(stdout, rs, *asJSON)
	return exitOK
}

func runKeysExpiring(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys expiring", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	within := fs.String("within", "14d", "window, e.g. 14d")
	asJSON := fs.Bool("json", false, "print JSON")
	if pos, ok := parseKeysFlags(fs, args, stderr); !ok || len(pos) > 0 {
		return exitUsage
	}
	win, err := policy.ParseDuration(*within)
	if err != nil {
		return fail(stderr, "expiring", err)
	}
	st, err := openStore(*policyPath, *keysPath)
	if err != nil {
		return fail(stderr, "expiring", err)
	}
	_, keys, err := st.load()
	if err != nil {
		return fail(stderr, "expiring", fmt.Errorf("%w: %v", errRefused, err))
	}
	now := time.Now()
	var soon []*policy.Key
	for _, k := range keys {
		if exp := k.Expires(); !k.Disabled && !exp.IsZero() && now.Before(exp) && exp.Before(now.Add(win)) {
			soon = append(soon, k)
		}
	}
	sort.Slice(soon, func(i, j int) bool { return soon[i].Expires().Before(soon[j].Expires()) })
	printRows(stdout, rows(soon, now), *asJSON)
	return exitOK
}

// fetchUsage reads a running server's /keys/usage.
func fetchUsage(admin string) (map[string]keyUsage, error) {
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(strings.TrimRight(admin, "/") + "/keys/usage")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var body usageReport
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	out := make(map[string]keyUsage, len(body.Keys))
	for _, k := range body.Keys {
		out[k.ID] = k
	}
	return out, nil
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newKey returns prefix + 43 base62 characters (256 bits from crypto/rand).
func newKey(prefix string) (string, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 256))
	if err != nil {
		return "", err
	}
	b := make([]byte, 43)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := range b {
		n.DivMod(n, base, mod)
		b[i] = base62[mod.Int64()]
	}
	return prefix + string(b), nil
}
