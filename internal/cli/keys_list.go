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
		if r.State == keys.StateDisabled {
			r.State = "revoked"
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
		return ExitUsage
	}
	f, _, done, err := openKeys(*policyPath, *keysPath)
	defer done()
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
	printRows(stdout, rs, *asJSON)
	return ExitOK
}

func runKeysExpiring(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys expiring", flag.ContinueOnError)
	policyPath, keysPath := keysFlags(fs)
	within := fs.String("within", "14d", "window, e.g. 14d")
	asJSON := fs.Bool("json", false, "print JSON")
	if pos, ok := parseKeysFlags(fs, args, stderr); !ok || len(pos) > 0 {
		return ExitUsage
	}
	win, err := source.ParseDuration(*within)
	if err != nil {
		return fail(stderr, "expiring", err)
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
	printRows(stdout, rows(soon, now, f.Lifetime()), *asJSON)
	return ExitOK
}
