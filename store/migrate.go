package store

// This file holds the schema's migrations, applied under an advisory lock.

import (
	"context"
	"embed"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrateLock is the advisory lock two replicas starting at once take in
// turn, so a migration runs once.
const migrateLock = 0x706f7274 // "port"

// Migrate applies every migration the database lacks, in order, each in a
// transaction, under an advisory lock. It is idempotent and returns the
// schema version the database is at.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrating the keys schema: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return 0, fmt.Errorf("migrating the keys schema: taking the lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLock) //nolint:errcheck
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS portcullis_schema (
		version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, fmt.Errorf("migrating the keys schema: %w", err)
	}
	var at int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM portcullis_schema").Scan(&at); err != nil {
		return 0, fmt.Errorf("migrating the keys schema: %w", err)
	}
	files, err := migrations.ReadDir("migrations")
	if err != nil {
		return 0, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name() < files[j].Name() })
	for _, f := range files {
		n, err := strconv.Atoi(strings.SplitN(f.Name(), "_", 2)[0])
		if err != nil || n <= at {
			continue
		}
		sql, err := migrations.ReadFile(path.Join("migrations", f.Name()))
		if err != nil {
			return 0, err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO portcullis_schema (version) VALUES ($1)", n)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("migrating the keys schema: %s: %w", f.Name(), err)
		}
		at = n
	}
	return at, nil
}
