package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// DefaultKeyPrefix marks generated keys so secret scanners can find leaked
// ones.
const DefaultKeyPrefix = "pk_live_"

const keysUsage = `usage:
  portcullis keys new --tenant T [--user U] [--tier T] [--superuser] [--expires 270d|2027-08-20] [--id ID] [--label L] [--prefix P] [--quiet]
      make a key: prints it once, then the entry to add to the keys file
  portcullis keys hash
      read a key on stdin, print its SHA-256 for a keys file
`

func runKeys(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return exitUsage
	}
	switch args[0] {
	case "new":
		return runKeysNew(args[1:], stdout, stderr)
	case "hash":
		return runKeysHash(stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "portcullis keys: unknown subcommand %q\n%s", args[0], keysUsage)
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

func runKeysNew(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys new", flag.ContinueOnError)
	tenant := fs.String("tenant", "", "tenant (or workspace) the key acts for")
	user := fs.String("user", "", "user the key acts as")
	tier := fs.String("tier", "service", "highest tier the key may reach")
	superuser := fs.Bool("superuser", false, "a superuser key")
	expires := fs.String("expires", "", "lifetime (270d, 12h) or date (2027-08-20); default: none, or the policy's key_lifetime")
	id := fs.String("id", "", "key id (default: generated)")
	label := fs.String("label", "", "human-readable name")
	prefix := fs.String("prefix", DefaultKeyPrefix, "key prefix, for secret scanners")
	quiet := fs.Bool("quiet", false, "print only the key on stdout (the entry goes to stderr)")
	fs.Usage = func() { fmt.Fprint(stderr, keysUsage) }
	if ok, help := parseFlags(fs, args, stderr); !ok {
		if help {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 || (*tenant == "" && *user == "" && !*superuser) {
		fmt.Fprintln(stderr, "portcullis keys new: give --tenant, --user or --superuser")
		fs.Usage()
		return exitUsage
	}
	now := time.Now().UTC()
	var exp time.Time
	if *expires != "" {
		if d, err := policy.ParseDuration(*expires); err == nil {
			exp = now.Add(d)
		} else if t, err := policy.ParseTimestamp(*expires); err == nil {
			exp = t
		} else {
			fmt.Fprintf(stderr, "portcullis keys new: --expires %q: want a duration (270d) or a date (2027-08-20)\n", *expires)
			return exitUsage
		}
	}
	key, err := newKey(*prefix)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis keys new: %v\n", err)
		return exitFailed
	}
	if *id == "" {
		*id = "key_" + hashKey(key)[:8]
	}
	entry := fmt.Sprintf("  - { id: %s, sha256: %s", yamlString(*id), hashKey(key))
	for _, f := range []struct{ name, v string }{{"tenant", *tenant}, {"user", *user}, {"tier", *tier}, {"label", *label}} {
		if f.v != "" {
			entry += fmt.Sprintf(", %s: %s", f.name, yamlString(f.v))
		}
	}
	if *superuser {
		entry += ", superuser: true"
	}
	entry += ", created: " + now.Format(time.RFC3339)
	if !exp.IsZero() {
		entry += ", expires: " + exp.UTC().Format(time.RFC3339)
	}
	entry += " }"
	if *quiet {
		fmt.Fprintln(stdout, key)
		fmt.Fprintln(stderr, entry)
		return exitOK
	}
	fmt.Fprintf(stdout, "%s\n\n# The key above is shown once; store it now. Add this entry to the keys file:\n%s\n", key, entry)
	return exitOK
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

// yamlString quotes s unless it is a plain YAML scalar.
func yamlString(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.@", r)) {
			return fmt.Sprintf("%q", s)
		}
	}
	if s == "" || strings.ContainsAny(s[:1], "-.@0123456789") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
