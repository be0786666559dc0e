// Package pgtemp starts throwaway PostgreSQL clusters from the machine's own
// PostgreSQL binaries: initdb into a temporary folder (as the postgres user
// when running as root, since initdb refuses root), the server on a free
// loopback port with its socket in that folder, and everything removed
// when the cluster is. The test kit, the benchmarks and `portcullis demo`
// use it.
//
// It owns starting, stopping and removing such a cluster; it must never
// touch a cluster it did not create, and knows nothing of what is stored.
package pgtemp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled says the machine has no PostgreSQL server binaries.
var ErrNotInstalled = errors.New("PostgreSQL is not installed (no initdb found by pg_config --bindir or under /usr/lib/postgresql/*/bin): " +
	"run scripts/install-deps.sh, or install your distribution's postgresql package")

// Options say how a cluster runs.
type Options struct {
	// Durable keeps fsync, full page writes and synchronous commits on, as
	// in production (benchmarks of writes); off, the cluster is faster and
	// a crash may lose it, which a throwaway cluster does not mind.
	Durable bool
	// MaxConnections is PostgreSQL's max_connections; 0 means 200.
	MaxConnections int
}

// Cluster is one throwaway cluster. Its methods are safe for concurrent
// use, except that Start, Stop and Remove must not race each other.
type Cluster struct {
	bin  string   // the server binaries' folder
	dir  string   // data, socket and log
	port int      // on 127.0.0.1
	as   []string // runuser prefix when running as root
	opts Options
}

// BinDir returns the folder of the PostgreSQL server binaries (pg_config's
// bindir, else the newest /usr/lib/postgresql/*/bin, where Debian's
// postgresql package puts them), or "" when none is installed.
func BinDir() string {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if bin := strings.TrimSpace(string(out)); fileExists(filepath.Join(bin, "initdb")) {
			return bin
		}
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestVersion := "", -1
	for _, p := range m {
		// /usr/lib/postgresql/<major>/bin/initdb: the highest major wins
		// (a string sort would put 9 after 15).
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		if err == nil && v > bestVersion {
			best, bestVersion = filepath.Dir(p), v
		}
	}
	return best
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Start creates a cluster in a new temporary folder and starts it. The
// caller removes it with Remove. It fails with ErrNotInstalled when the
// machine has no PostgreSQL, and with initdb's or pg_ctl's own output
// otherwise.
func Start(opts Options) (*Cluster, error) {
	bin := BinDir()
	if bin == "" {
		return nil, ErrNotInstalled
	}
	return StartIn(bin, opts)
}

// StartIn is Start with the binaries of folder bin.
func StartIn(bin string, opts Options) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "portcullis-pg-")
	if err != nil {
		return nil, fmt.Errorf("a folder for PostgreSQL: %w", err)
	}
	c := &Cluster{bin: bin, dir: dir, opts: opts}
	if c.opts.MaxConnections == 0 {
		c.opts.MaxConnections = 200
	}
	if err := c.runAsPostgres(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if out, err := c.run("initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D", c.data()); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb in %s: %v\n%s", c.data(), err, out)
	}
	// A port free now; PostgreSQL cannot listen on port 0. Another process
	// taking it first is retried with the next free one.
	for try := 0; ; try++ {
		if c.port, err = freePort(); err == nil {
			if err = c.Start(); err == nil {
				return c, nil
			}
		}
		if try == 5 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// runAsPostgres arranges, when this process is root, for the cluster to run
// as the postgres user (initdb refuses root), owning its folder.
func (c *Cluster) runAsPostgres() error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root, PostgreSQL must run as the postgres user (initdb refuses root), and there is none: %w; "+
			"install the postgresql package (it creates the user), or run as another user", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(c.dir, 0o755); err != nil {
		return err
	}
	if err := os.Chown(c.dir, uid, gid); err != nil {
		return err
	}
	c.as = []string{"runuser", "-u", "postgres", "--"}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	argv := append(append(append([]string(nil), c.as...), filepath.Join(c.bin, name)), args...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

// Dir returns the cluster's folder (data, socket, log); Remove deletes it.
func (c *Cluster) Dir() string { return c.dir }

// Port returns the cluster's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Start starts the server (again, after Stop), waiting until it accepts
// connections (pg_ctl -w).
func (c *Cluster) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=%d", c.port, c.dir, c.opts.MaxConnections)
	if !c.opts.Durable {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	out, err := c.run("pg_ctl", "-w", "-t", "60", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-o", opts, "start")
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the server (fast shutdown: connections are cut).
func (c *Cluster) Stop() error {
	if out, err := c.run("pg_ctl", "-w", "-D", c.data(), "-m", "fast", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Remove stops the server, if it runs, and deletes its folder. Both are
// tried; the error joins what failed.
func (c *Cluster) Remove() error {
	var stopErr error
	if fileExists(filepath.Join(c.data(), "postmaster.pid")) {
		stopErr = c.Stop()
	}
	rmErr := os.RemoveAll(c.dir)
	if rmErr != nil {
		rmErr = fmt.Errorf("removing %s: %w", c.dir, rmErr)
	}
	return errors.Join(stopErr, rmErr)
}

// DSN returns a connection string for database db.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// CreateDatabase creates the empty database name (letters, digits and _)
// and returns its DSN.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	for _, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return "", fmt.Errorf("database name %q: want lower-case letters, digits and _", name)
		}
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("CREATE DATABASE %s: %w", name, err)
	}
	return c.DSN(name), nil
}
