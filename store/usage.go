package store

// This file holds usage across replicas: counted in memory, flushed in one
// batched statement.

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	if len(ids) == 0 && len(luIDs) == 0 {
		return 0, nil
	}
	_, err := u.pool.Exec(ctx, `WITH used AS (
			INSERT INTO portcullis_usage (key_id, day, allowed, denied)
			SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[])
			ON CONFLICT (key_id, day) DO UPDATE SET allowed = portcullis_usage.allowed + excluded.allowed,
				denied = portcullis_usage.denied + excluded.denied
		)
		UPDATE portcullis_keys k SET last_used_at = u.at FROM unnest($5::text[], $6::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`,
		ids, days, allowed, denied, luIDs, luAt)
	if err != nil {
		for _, t := range took { // keep them for the next flush
			t.c.allowed.Add(t.a)
			t.c.denied.Add(t.d)
		}
		return 0, err
	}
	for i, id := range luIDs {
		u.written[id], u.wrote[id] = now, luNanos[i]
	}
	return len(ids), nil
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
