package testkit

// This file holds throwaway PostgreSQL clusters for tests (internal/pgtemp:
// initdb into a temporary folder, the server on a free loopback port and a
// socket in that folder, fsync off), stopped and removed when the test (or
// the test binary) ends.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/internal/pgtemp"
)

// PostgreSQL is one throwaway cluster (a pgtemp.Cluster: Start, Stop,
// Remove, DSN) with helpers that fail the test. Its methods are safe for
// concurrent use.
type PostgreSQL struct {
	*pgtemp.Cluster
	dbs atomic.Int32
}

// pgBin returns the PostgreSQL binaries' folder for a test: missing under
// CI fails the test; elsewhere it skips it.
func pgBin(t testing.TB) string {
	t.Helper()
	if bin := pgtemp.BinDir(); bin != "" {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatal(pgtemp.ErrNotInstalled)
	}
	t.Skip(pgtemp.ErrNotInstalled)
	return ""
}

// NewPostgreSQL starts a cluster of the test's own, stopped and removed
// when the test ends (for tests that stop and restart it).
func NewPostgreSQL(t testing.TB) *PostgreSQL {
	t.Helper()
	c, err := pgtemp.StartIn(pgBin(t), pgtemp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Remove() })
	return &PostgreSQL{Cluster: c}
}

var shared struct {
	once sync.Once
	p    *PostgreSQL
	err  error
}

// SharedPostgreSQL returns the test binary's cluster, started on first use.
// A package using it calls StopSharedPostgreSQL from TestMain after m.Run.
func SharedPostgreSQL(t testing.TB) *PostgreSQL {
	t.Helper()
	bin := pgBin(t)
	shared.once.Do(func() {
		var c *pgtemp.Cluster
		if c, shared.err = pgtemp.StartIn(bin, pgtemp.Options{}); shared.err == nil {
			shared.p = &PostgreSQL{Cluster: c}
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.p
}

// StopSharedPostgreSQL stops and removes the shared cluster, if started.
func StopSharedPostgreSQL() {
	if shared.p != nil {
		_ = shared.p.Remove()
	}
}

// StartPostgreSQL starts a cluster for a program that is not a test (the
// benchmarks), with fsync and synchronous commits on, as in production; the
// caller stops it with Remove.
func StartPostgreSQL() (*PostgreSQL, error) {
	c, err := pgtemp.Start(pgtemp.Options{Durable: true})
	if err != nil {
		return nil, err
	}
	return &PostgreSQL{Cluster: c}, nil
}

// Database creates a new, empty database and returns its DSN.
func (p *PostgreSQL) Database(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), p.dbs.Add(1))
	p.Exec(t, "postgres", "CREATE DATABASE "+name)
	return p.DSN(name)
}

// Exec runs sql in database db (a name, or a DSN).
func (p *PostgreSQL) Exec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := db
	if !strings.Contains(db, "://") {
		dsn = p.DSN(db)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
