package testkit

// This file holds throwaway PostgreSQL clusters for tests: initdb into a
// temporary folder, the server on a free loopback port and a socket in that
// folder, fsync off; stopped and removed when the test (or the test
// binary) ends.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgreSQL is one throwaway cluster. Its methods are safe for concurrent
// use.
type PostgreSQL struct {
	bin  string // the server binaries' folder
	dir  string // data and socket
	port int
	as   []string // runuser prefix when running as root
	dbs  atomic.Int32
	// durable keeps fsync and synchronous commits on (benchmarks of
	// writes); tests turn them off.
	durable bool
}

// findPGBin returns the folder of the server binaries (Debian's postgresql
// package, which scripts/install-deps.sh installs), or "" when none is
// installed.
func findPGBin() string {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if bin := strings.TrimSpace(string(out)); fileExists(filepath.Join(bin, "initdb")) {
			return bin
		}
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		return filepath.Dir(m[len(m)-1])
	}
	return ""
}

// pgBin is findPGBin for a test: missing under CI fails the test;
// elsewhere it skips it.
func pgBin(t testing.TB) string {
	t.Helper()
	if bin := findPGBin(); bin != "" {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatal("PostgreSQL is not installed: scripts/install-deps.sh installs it")
	}
	t.Skip("PostgreSQL not installed (scripts/install-deps.sh installs it)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// NewPostgreSQL starts a cluster of the test's own, stopped and removed
// when the test ends (for tests that stop and restart it).
func NewPostgreSQL(t testing.TB) *PostgreSQL {
	t.Helper()
	p, err := startPostgreSQL(pgBin(t), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.remove)
	return p
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
	shared.once.Do(func() { shared.p, shared.err = startPostgreSQL(bin, false) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.p
}

// StopSharedPostgreSQL stops and removes the shared cluster, if started.
func StopSharedPostgreSQL() {
	if shared.p != nil {
		shared.p.remove()
	}
}

// StartPostgreSQL starts a cluster for a program that is not a test (the
// benchmarks), with fsync and synchronous commits on, as in production; the
// caller stops it with Remove.
func StartPostgreSQL() (*PostgreSQL, error) {
	bin := findPGBin()
	if bin == "" {
		return nil, fmt.Errorf("PostgreSQL is not installed: scripts/install-deps.sh installs it")
	}
	return startPostgreSQL(bin, true)
}

// Remove stops the cluster and removes its folder.
func (p *PostgreSQL) Remove() { p.remove() }

func startPostgreSQL(bin string, durable bool) (*PostgreSQL, error) {
	dir, err := os.MkdirTemp("", "portcullis-pg-")
	if err != nil {
		return nil, err
	}
	p := &PostgreSQL{bin: bin, dir: dir, durable: durable}
	if os.Geteuid() == 0 { // initdb refuses root: run the cluster as postgres
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		p.as = []string{"runuser", "-u", "postgres", "--"}
	}
	if out, err := p.run("initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D", p.data()); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// A port free now; PostgreSQL cannot listen on port 0. Another process
	// taking it first is retried with the next free one.
	for try := 0; ; try++ {
		if p.port, err = freePort(); err == nil {
			if err = p.Start(); err == nil {
				return p, nil
			}
		}
		if try == 5 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (p *PostgreSQL) data() string { return filepath.Join(p.dir, "data") }

func (p *PostgreSQL) run(name string, args ...string) ([]byte, error) {
	argv := append(append(append([]string(nil), p.as...), filepath.Join(p.bin, name)), args...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

// Start starts the server (again, after Stop), waiting until it accepts
// connections (pg_ctl -w).
func (p *PostgreSQL) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", p.port, p.dir)
	if !p.durable {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	out, err := p.run("pg_ctl", "-w", "-t", "60", "-D", p.data(), "-l", filepath.Join(p.dir, "log"), "-o", opts, "start")
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the server (fast shutdown: connections are cut).
func (p *PostgreSQL) Stop() error {
	if out, err := p.run("pg_ctl", "-w", "-D", p.data(), "-m", "fast", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

func (p *PostgreSQL) remove() {
	_ = p.Stop()
	os.RemoveAll(p.dir)
}

// DSN returns a connection string for database db.
func (p *PostgreSQL) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// Database creates a new, empty database and returns its DSN.
func (p *PostgreSQL) Database(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), p.dbs.Add(1))
	p.Exec(t, "postgres", "CREATE DATABASE "+name)
	return p.DSN(name)
}

// Exec runs sql in database db.
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
