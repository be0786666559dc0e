package cli

// This file holds `portcullis db migrate` and `portcullis keys import`: the
// key store's schema, and moving a keys file into it.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// openStore connects to the key store the policy names.
func openStore(snap *policy.Snapshot) (*store.Store, func(), error) {
	env := snap.KeyStore().DSNEnv
	dsn := os.Getenv(env)
	if dsn == "" {
		return nil, func() {}, fmt.Errorf("keys_store: $%s is empty: set it to the PostgreSQL DSN", env)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		return nil, func() {}, fmt.Errorf("keys_store: $%s: %w", env, err)
	}
	return store.New(pool), pool.Close, nil
}

const dbUsage = `usage: portcullis db migrate --policy FILE

Applies the key store's schema to the database the policy's keys_store names
(its DSN in the environment variable keys_store.postgres.dsn_env), under an
advisory lock; safe to run again. serve does the same at start unless --no-migrate.
Exit 0 done, 1 the database refused or cannot be reached, 2 on a usage error.

flags:
`

// DB is `portcullis db`: the key store's schema.
func DB(args []string, stdout, stderr io.Writer) int {
	snap, code := storeCommand("db", "migrate", "policy whose keys_store to migrate", dbUsage, "", args, stdout, stderr)
	if snap == nil {
		return code
	}
	st, done, err := openStore(snap)
	defer done()
	var v int
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		v, err = store.Migrate(ctx, st.Pool())
	}
	if err != nil {
		fmt.Fprintf(stderr, "portcullis db migrate: %v\n", err)
		return ExitFailed
	}
	fmt.Fprintf(stdout, "key store schema at version %d\n", v)
	return ExitOK
}

// storeCommand reads `portcullis <cmd> <sub> --policy FILE` (usage its
// help, flagHelp the flag's) and loads the policy, which must have a
// keys_store (why, when set, says what for). It returns the policy, or nil
// and the exit code, having said what is wrong.
func storeCommand(cmd, sub, flagHelp, usage, why string, args []string, stdout, stderr io.Writer) (*policy.Snapshot, int) {
	fs := flag.NewFlagSet(cmd+" "+sub, flag.ContinueOnError)
	pol := fs.String("policy", "", flagHelp)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if len(args) > 0 && isHelp(args[0]) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil, ExitOK
	}
	if len(args) == 0 || args[0] != sub {
		if len(args) > 0 {
			fmt.Fprintf(stderr, "portcullis %s: unknown command %q\n", cmd, args[0])
		}
		fs.SetOutput(stderr)
		fs.Usage()
		return nil, ExitUsage
	}
	if ok, help := ParseFlags(fs, args[1:], stdout, stderr); !ok || *pol == "" || fs.NArg() > 0 {
		if help {
			return nil, ExitOK
		}
		if ok {
			fs.Usage()
		}
		return nil, ExitUsage
	}
	snap, err := policy.Load(*pol, policy.LoadOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis %s %s: invalid policy:\n%v\n", cmd, sub, err)
		return nil, ExitUsage
	}
	if snap.KeyStore() == nil {
		fmt.Fprintf(stderr, "portcullis %s %s: %s has no keys_store%s\n", cmd, sub, *pol, why)
		return nil, ExitUsage
	}
	return snap, 0
}

// runKeysImport copies a keys file's entries into the policy's key store,
// digests unchanged, in one transaction.
func runKeysImport(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys import", flag.ContinueOnError)
	pol := fs.String("policy", "", "policy whose key store to import into")
	pos, code, stop := parseKeysFlags(fs, args, stdout, stderr)
	if stop {
		return code
	}
	if len(pos) != 1 || *pol == "" {
		return fail(stderr, "import", errors.New("give --policy FILE and one keys file"))
	}
	snap, err := policy.Load(*pol, policy.LoadOptions{})
	if err != nil {
		return fail(stderr, "import", fmt.Errorf("%w: the policy does not validate now:\n%v", keys.ErrRefused, err))
	}
	if snap.KeyStore() == nil {
		return fail(stderr, "import", fmt.Errorf("%w: %s has no keys_store", keys.ErrRefused, *pol))
	}
	entries, err := keys.CheckFile(pos[0])
	if err != nil {
		return fail(stderr, "import", fmt.Errorf("%w: %v", keys.ErrRefused, err))
	}
	for _, e := range entries {
		if err := snap.AdmitKey(e); err != nil {
			return fail(stderr, "import", fmt.Errorf("%w: key %s: %v", keys.ErrRefused, e.ID, err))
		}
	}
	st, done, err := openStore(snap)
	defer done()
	var v int64
	if err == nil {
		v, err = store.Manager{Store: st, By: "cli:import"}.Import(context.Background(), entries)
	}
	if err != nil {
		return fail(stderr, "import", err)
	}
	fmt.Fprintf(stdout, "imported %d key(s) from %s at version %d\n", len(entries), pos[0], v)
	return ExitOK
}
