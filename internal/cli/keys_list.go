package cli

// This file holds `portcullis keys list` and `expiring`: tables and JSON of
// keys, never a secret or a full digest.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/keys"
)

// keyRow is one key as list and expiring print it.
type keyRow struct {
	keys.Summary
	Allowed  *uint64    `json:"allowed,omitempty"`
	Denied   *uint64    `json:"denied,omitempty"`
	LastUsed *time.Time `json:"last_used,omitempty"`
}

func rows(es []*keys.Entry, now time.Time, lifetime time.Duration) []keyRow {
	out := make([]keyRow, 0, len(es))
	for _, e := range es {
		r := keyRow{Summary: e.Summarize(now, lifetime)}
		if r.Superuser {
			r.Tier += " (superuser)"
		}
		out = append(out, r)
	}
	return out
}

// printRows prints rs as a table, or as JSON; it fails when the output
// cannot be encoded (a time outside JSON's years 0–9999: the key is named)
// or written.
func printRows(w io.Writer, rs []keyRow, asJSON bool) error {
	if asJSON {
		b, err := json.MarshalIndent(struct {
			Keys []keyRow `json:"keys"`
		}{rs}, "", "  ")
		if err != nil {
			return jsonProblem(rs, err)
		}
		_, err = w.Write(append(b, '\n'))
		return err
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
	return tw.Flush()
}

// jsonProblem says which key's time JSON cannot hold (RFC 3339 has four
// digits for the year), and what to do.
func jsonProblem(rs []keyRow, err error) error {
	for _, r := range rs {
		for _, f := range []struct {
			name string
			t    *time.Time
		}{{"created", &r.Created}, {"expires", r.Expires}, {"last_used", r.LastUsed}} {
			if f.t != nil && (f.t.Year() < 0 || f.t.Year() > 9999) {
				return fmt.Errorf("key %s: %s %s is outside the years 0-9999 that JSON times can hold: "+
					"give the key an earlier expiry (or the policy a shorter key_lifetime), or leave out --json", r.ID, f.name, f.t.Format("2006-01-02"))
			}
		}
	}
	return fmt.Errorf("the keys cannot be written as JSON: %v", err)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runKeysList(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys list", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	admin := fs.String("admin", "", "a running server's admin address, to show each key's usage")
	pos, code, stop := parseKeysFlags(fs, args, stdout, stderr)
	if stop {
		return code
	}
	if len(pos) > 0 {
		return fail(stderr, "list", fmt.Errorf("unexpected %q: list takes flags only", pos[0]))
	}
	f, snap, done, err := openKeys(*policyPath, *keysPath)
	defer done()
	if *admin != "" && snap != nil && snap.KeyStore() != nil {
		// A replica counts the keys of files; the store's keys are counted
		// in the database, summed over every replica.
		return fail(stderr, "list", fmt.Errorf("--admin: %s keeps its keys in the key store, whose usage is counted in the database across "+
			"every replica, not by one server's /keys/usage: ask the key API (GET /v1/keys/{id}/usage), or leave out --admin", *policyPath))
	}
	var es []*keys.Entry
	if err == nil {
		es, err = f.Entries(context.Background())
	}
	if err != nil {
		return fail(stderr, "list", err)
	}
	rs := rows(es, time.Now(), f.Lifetime())
	if *admin != "" {
		u, err := keys.FetchReport(context.Background(), *admin)
		if err != nil {
			return fail(stderr, "list", fmt.Errorf("%w: usage from %s: %v", keys.ErrRefused, *admin, err))
		}
		for i := range rs {
			c := u[rs[i].ID]
			rs[i].Allowed, rs[i].Denied, rs[i].LastUsed = &c.Allowed, &c.Denied, c.LastUsed
		}
	}
	if err := printRows(stdout, rs, *asJSON); err != nil {
		return fail(stderr, "list", err)
	}
	return ExitOK
}

func runKeysExpiring(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys expiring", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	within := fs.String("within", "14d", "window, e.g. 14d")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, code, stop := parseKeysFlags(fs, args, stdout, stderr)
	if stop {
		return code
	}
	if len(pos) > 0 {
		return fail(stderr, "expiring", fmt.Errorf("unexpected %q: expiring takes flags only", pos[0]))
	}
	win, err := source.ParseDuration(*within)
	if err != nil {
		return fail(stderr, "expiring", fmt.Errorf("--within: %w", err))
	}
	f, _, done, err := openKeys(*policyPath, *keysPath)
	defer done()
	var es []*keys.Entry
	if err == nil {
		es, err = f.Entries(context.Background())
	}
	if err != nil {
		return fail(stderr, "expiring", err)
	}
	now := time.Now()
	var soon []*keys.Entry
	for _, e := range es {
		if exp := e.ExpiresAt(f.Lifetime()); !e.Disabled && !exp.IsZero() && now.Before(exp) && exp.Before(now.Add(win)) {
			soon = append(soon, e)
		}
	}
	sort.Slice(soon, func(i, j int) bool { return soon[i].ExpiresAt(f.Lifetime()).Before(soon[j].ExpiresAt(f.Lifetime())) })
	if err := printRows(stdout, rows(soon, now, f.Lifetime()), *asJSON); err != nil {
		return fail(stderr, "expiring", err)
	}
	return ExitOK
}
