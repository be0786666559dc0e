package testkit

import "testing"

func TestPostgreSQLStartsAndRestarts(t *testing.T) {
	p := NewPostgreSQL(t)
	dsn := p.Database(t)
	p.Exec(t, dsn, "CREATE TABLE x (a int)")
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	p.Exec(t, dsn, "INSERT INTO x VALUES (1)")
}
