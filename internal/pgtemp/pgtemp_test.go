package pgtemp

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStartCreateRemove: a cluster starts from the machine's binaries (as
// the postgres user when root), takes a database, and Remove stops it and
// deletes its folder.
func TestStartCreateRemove(t *testing.T) {
	bin := BinDir()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal(ErrNotInstalled)
		}
		t.Skip(ErrNotInstalled)
	}
	c, err := StartIn(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := c.CreateDatabase(ctx, "demo")
	if err != nil {
		_ = c.Remove()
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		_ = c.Remove()
		t.Fatal(err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("SELECT 1: %d %v", one, err)
	}
	conn.Close(ctx)
	if _, err := c.CreateDatabase(ctx, "Robert'); DROP"); err == nil {
		t.Error("a database name that is not an identifier was accepted")
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", c.Dir(), err)
	}
	if conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port()))); err == nil {
		conn.Close()
		t.Errorf("port %d still answers after Remove", c.Port())
	}
	if err := c.Remove(); err != nil {
		t.Errorf("a second Remove: %v", err)
	}
}
