package store

// This file holds usage across replicas: counted in memory, flushed in one
// batched statement.

import (
	"cmp"
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lastUsedEvery is how seldom a key's last_used_at is written: at most once
// per this, per replica.
const lastUsedEvery = 3 * time.Minute

type dayKey struct {
	id  string
	day int64 // days since 1970-01-01, UTC
}

func dayOf(t time.Time) int64 { return t.Unix() / 86400 }

func dayString(day int64) string { return time.Unix(day*86400, 0).UTC().Format(time.DateOnly) }

type counts struct{ allowed, denied int64 }

// dayCounts are one key's checks on one day not flushed yet.
type dayCounts struct{ allowed, denied atomic.Int64 }

// detailKey is one row of usage by tenant, user and key ("" for none).
type detailKey struct {
	day               int64
	tenant, user, key string
}

// detailCounts are one detail row's checks, and the units the allowed ones
// cost, not flushed yet.
type detailCounts struct{ allowed, denied, units atomic.Int64 }

// Usage counts checks per key and day in memory and flushes them in one
// statement: the day's counts added to the store's, last_used_at moved
// forward (never back), at most every lastUsedEvery per key. No check
// writes to the database, and none takes a lock: the counters are atomics
// in sync.Maps, so recording scales with the cores. It is safe for
// concurrent use.
type Usage struct {
	pool *pgxpool.Pool

	pending sync.Map // dayKey → *dayCounts
	used    sync.Map // key id → *atomic.Int64: its newest use, Unix nanoseconds
	detail  sync.Map // detailKey → *detailCounts

	mu      sync.Mutex           // one flush at a time; guards what follows
	written map[string]time.Time // when last_used_at was last written
	wrote   map[string]int64     // the use it was written with
}

// NewUsage returns a Usage flushing to pool.
func NewUsage(pool *pgxpool.Pool) *Usage {
	return &Usage{pool: pool, written: map[string]time.Time{}, wrote: map[string]int64{}}
}

// Record counts one check of key id at now.
func (u *Usage) Record(id string, allowed bool, now time.Time) {
	k := dayKey{id: id, day: dayOf(now)}
	v, ok := u.pending.Load(k)
	if !ok {
		// Copies: id may be a string over a key index's arena, which the
		// map would keep after the index is replaced.
		k.id = strings.Clone(id)
		v, _ = u.pending.LoadOrStore(k, new(dayCounts))
	}
	c := v.(*dayCounts)
	if allowed {
		c.allowed.Add(1)
	} else {
		c.denied.Add(1)
	}
	l, ok := u.used.Load(id)
	if !ok {
		l, _ = u.used.LoadOrStore(strings.Clone(id), new(atomic.Int64))
	}
	last, at := l.(*atomic.Int64), now.UnixNano()
	for old := last.Load(); at > old && !last.CompareAndSwap(old, at); old = last.Load() {
	}
}

// RecordDetail counts one check by the tenant it acted for, the user and
// the key (any may be ""), with the units it cost when allowed.
func (u *Usage) RecordDetail(tenant, user, key string, allowed bool, units int64, now time.Time) {
	k := detailKey{day: dayOf(now), tenant: tenant, user: user, key: key}
	v, ok := u.detail.Load(k)
	if !ok {
		k.tenant, k.user, k.key = strings.Clone(tenant), strings.Clone(user), strings.Clone(key)
		v, _ = u.detail.LoadOrStore(k, new(detailCounts))
	}
	c := v.(*detailCounts)
	if allowed {
		c.allowed.Add(1)
		c.units.Add(units)
	} else {
		c.denied.Add(1)
	}
}

// Pending returns the counts of key id not flushed yet, by day.
func (u *Usage) Pending(id string) map[string]counts {
	out := map[string]counts{}
	u.pending.Range(func(k, v any) bool {
		if dk := k.(dayKey); dk.id == id {
			c := v.(*dayCounts)
			if a, d := c.allowed.Load(), c.denied.Load(); a != 0 || d != 0 {
				out[dayString(dk.day)] = counts{a, d}
			}
		}
		return true
	})
	return out
}

// Flush writes the pending counts in one statement and returns how many
// (key, day) counts it wrote. On failure they are kept for the next flush.
func (u *Usage) Flush(ctx context.Context, now time.Time) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	type taken struct {
		c    *dayCounts
		a, d int64
	}
	var took []taken
	var ids, days []string
	var allowed, denied []int64
	u.pending.Range(func(k, v any) bool {
		dk, c := k.(dayKey), v.(*dayCounts)
		a, d := c.allowed.Swap(0), c.denied.Swap(0)
		switch {
		case a != 0 || d != 0:
			took = append(took, taken{c, a, d})
			ids, days = append(ids, dk.id), append(days, dayString(dk.day))
			allowed, denied = append(allowed, a), append(denied, d)
		case dk.day < dayOf(now)-1:
			// Nothing counted since the last flush, and no check records a
			// day this old: drop it.
			u.pending.CompareAndDelete(k, v)
		}
		return true
	})
	type takenDetail struct {
		c       *detailCounts
		a, d, n int64
	}
	var tookDetail []takenDetail
	var dDays, dTenants, dUsers, dKeys []string
	var dAllowed, dDenied, dUnits []int64
	u.detail.Range(func(k, v any) bool {
		dk, c := k.(detailKey), v.(*detailCounts)
		a, d, n := c.allowed.Swap(0), c.denied.Swap(0), c.units.Swap(0)
		switch {
		case a != 0 || d != 0:
			tookDetail = append(tookDetail, takenDetail{c, a, d, n})
			dDays, dTenants, dUsers, dKeys = append(dDays, dayString(dk.day)), append(dTenants, dk.tenant), append(dUsers, dk.user), append(dKeys, dk.key)
			dAllowed, dDenied, dUnits = append(dAllowed, a), append(dDenied, d), append(dUnits, n)
		case dk.day < dayOf(now)-1:
			u.detail.CompareAndDelete(k, v)
		}
		return true
	})
	var luIDs []string
	var luAt []time.Time
	var luNanos []int64
	u.used.Range(func(k, v any) bool {
		id, at := k.(string), v.(*atomic.Int64).Load()
		if at > u.wrote[id] && now.Sub(u.written[id]) >= lastUsedEvery {
			luIDs, luAt, luNanos = append(luIDs, id), append(luAt, time.Unix(0, at).UTC()), append(luNanos, at)
		}
		return true
	})
	if len(ids) == 0 && len(luIDs) == 0 && len(dDays) == 0 {
		return 0, nil
	}
	_, err := u.pool.Exec(ctx, `WITH used AS (
			INSERT INTO portcullis_usage (key_id, day, allowed, denied)
			SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[])
			ON CONFLICT (key_id, day) DO UPDATE SET allowed = portcullis_usage.allowed + excluded.allowed,
				denied = portcullis_usage.denied + excluded.denied
		), detail AS (
			INSERT INTO portcullis_usage_detail (day, tenant, user_id, key_id, allowed, denied, units)
			SELECT * FROM unnest($7::date[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[])
			ON CONFLICT (day, tenant, user_id, key_id) DO UPDATE SET allowed = portcullis_usage_detail.allowed + excluded.allowed,
				denied = portcullis_usage_detail.denied + excluded.denied, units = portcullis_usage_detail.units + excluded.units
		)
		UPDATE portcullis_keys k SET last_used_at = u.at FROM unnest($5::text[], $6::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`,
		ids, days, allowed, denied, luIDs, luAt, dDays, dTenants, dUsers, dKeys, dAllowed, dDenied, dUnits)
	if err != nil {
		for _, t := range took { // keep them for the next flush
			t.c.allowed.Add(t.a)
			t.c.denied.Add(t.d)
		}
		for _, t := range tookDetail {
			t.c.allowed.Add(t.a)
			t.c.denied.Add(t.d)
			t.c.units.Add(t.n)
		}
		return 0, err
	}
	for i, id := range luIDs {
		u.written[id], u.wrote[id] = now, luNanos[i]
	}
	return len(ids) + len(dDays), nil
}

// Day is one day's usage of a key.
type Day struct {
	Date    string `json:"date"`
	Allowed int64  `json:"allowed"`
	Denied  int64  `json:"denied"`
}

// Days returns key id's flushed usage by day, oldest first, from since on.
func (s *Store) Days(ctx context.Context, id string, since time.Time) ([]Day, error) {
	rows, err := s.pool.Query(ctx, `SELECT to_char(day, 'YYYY-MM-DD'), allowed, denied FROM portcullis_usage
		WHERE key_id = $1 AND day >= $2::date ORDER BY day`, id, since.UTC().Format(time.DateOnly))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Day
	for rows.Next() {
		var d Day
		if err := rows.Scan(&d.Date, &d.Allowed, &d.Denied); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Days returns key id's usage by day from since on, as s holds it with
// u's counts not flushed yet (this replica's most recent checks) added,
// oldest first. It reads both between two flushes, so a count is never
// missed (taken by a flush, not yet committed) nor counted twice.
func (u *Usage) Days(ctx context.Context, s *Store, id string, since time.Time) ([]Day, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	days, err := s.Days(ctx, id, since)
	if err != nil {
		return nil, err
	}
	return u.withPending(id, days), nil
}

// withPending adds the counts of u not flushed yet to days, keeping them
// ordered.
func (u *Usage) withPending(id string, days []Day) []Day {
	pend := u.Pending(id)
	for i := range days {
		if c, ok := pend[days[i].Date]; ok {
			days[i].Allowed += c.allowed
			days[i].Denied += c.denied
			delete(pend, days[i].Date)
		}
	}
	for day, c := range pend {
		days = append(days, Day{Date: day, Allowed: c.allowed, Denied: c.denied})
	}
	sortDays(days)
	return days
}

func sortDays(days []Day) {
	sort.Slice(days, func(i, j int) bool { return days[i].Date < days[j].Date })
}

// UsageQuery selects rows of usage by day, tenant, user and key: each
// filter left empty matches any; From and To are UTC days, inclusive.
// GroupBy names the columns rows are told apart by (any of date, tenant,
// user, key); the others are summed over.
type UsageQuery struct {
	Tenant, User, Key string
	From, To          time.Time
	GroupBy           []string
}

// UsageRow is one row of usage; the columns outside the query's GroupBy
// are empty.
type UsageRow struct {
	Date    string `json:"date,omitempty"`
	Tenant  string `json:"tenant,omitempty"`
	User    string `json:"user,omitempty"`
	Key     string `json:"key,omitempty"`
	Allowed int64  `json:"allowed"`
	Denied  int64  `json:"denied"`
	Units   int64  `json:"units"`
}

// usageColumns are the columns a query may group by, by name.
var usageColumns = map[string]string{"date": "to_char(day, 'YYYY-MM-DD')", "tenant": "tenant", "user": "user_id", "key": "key_id"}

// UsageRows answers q from what was flushed, and u's counts not flushed
// yet (this replica's most recent checks), read between two flushes.
// Rows are ordered by their columns.
func (u *Usage) UsageRows(ctx context.Context, s *Store, q UsageQuery) ([]UsageRow, error) {
	var cols []string
	for _, g := range []string{"date", "tenant", "user", "key"} {
		if slices.Contains(q.GroupBy, g) {
			cols = append(cols, g)
		}
	}
	sel := make([]string, 4)
	for i, g := range []string{"date", "tenant", "user", "key"} {
		sel[i] = "''"
		if slices.Contains(cols, g) {
			sel[i] = usageColumns[g]
		}
	}
	group := ""
	if len(cols) > 0 {
		var g []string
		for _, c := range cols {
			g = append(g, usageColumns[c])
		}
		group = "GROUP BY " + strings.Join(g, ", ")
	}
	if u != nil {
		u.mu.Lock()
		defer u.mu.Unlock()
	}
	rows, err := s.pool.Query(ctx, `SELECT `+strings.Join(sel, ", ")+`, coalesce(sum(allowed), 0), coalesce(sum(denied), 0), coalesce(sum(units), 0)
		FROM portcullis_usage_detail
		WHERE day BETWEEN $1::date AND $2::date AND ($3 = '' OR tenant = $3) AND ($4 = '' OR user_id = $4) AND ($5 = '' OR key_id = $5)
		`+group, q.From.UTC().Format(time.DateOnly), q.To.UTC().Format(time.DateOnly), q.Tenant, q.User, q.Key)
	if err != nil {
		return nil, err
	}
	byRow := map[UsageRow]*UsageRow{}
	var r UsageRow
	var a, d, n int64
	if _, err := pgx.ForEachRow(rows, []any{&r.Date, &r.Tenant, &r.User, &r.Key, &a, &d, &n}, func() error {
		if a == 0 && d == 0 { // an empty sum (no rows, no group)
			return nil
		}
		byRow[r] = &UsageRow{Date: r.Date, Tenant: r.Tenant, User: r.User, Key: r.Key, Allowed: a, Denied: d, Units: n}
		return nil
	}); err != nil {
		return nil, err
	}
	if u != nil {
		from, to := dayOf(q.From), dayOf(q.To)
		u.detail.Range(func(k, v any) bool {
			dk, c := k.(detailKey), v.(*detailCounts)
			if dk.day < from || dk.day > to || (q.Tenant != "" && dk.tenant != q.Tenant) || (q.User != "" && dk.user != q.User) || (q.Key != "" && dk.key != q.Key) {
				return true
			}
			a, d, n := c.allowed.Load(), c.denied.Load(), c.units.Load()
			if a == 0 && d == 0 {
				return true
			}
			var key UsageRow
			if slices.Contains(cols, "date") {
				key.Date = dayString(dk.day)
			}
			if slices.Contains(cols, "tenant") {
				key.Tenant = dk.tenant
			}
			if slices.Contains(cols, "user") {
				key.User = dk.user
			}
			if slices.Contains(cols, "key") {
				key.Key = dk.key
			}
			row := byRow[key]
			if row == nil {
				row = &UsageRow{Date: key.Date, Tenant: key.Tenant, User: key.User, Key: key.Key}
				byRow[key] = row
			}
			row.Allowed, row.Denied, row.Units = row.Allowed+a, row.Denied+d, row.Units+n
			return true
		})
	}
	out := make([]UsageRow, 0, len(byRow))
	for _, row := range byRow {
		out = append(out, *row)
	}
	slices.SortFunc(out, func(x, y UsageRow) int {
		return cmp.Or(cmp.Compare(x.Date, y.Date), cmp.Compare(x.Tenant, y.Tenant), cmp.Compare(x.User, y.User), cmp.Compare(x.Key, y.Key))
	})
	return out, nil
}
