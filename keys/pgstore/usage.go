package pgstore

// This file holds usage across replicas: counted in memory, flushed in one
// batched statement.

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// lastUsedEvery is how seldom a key's last_used_at is written: at most once
// per this, per replica.
const lastUsedEvery = 3 * time.Minute

type dayKey struct {
	id  string
	day string // 2006-01-02, UTC
}

type counts struct{ allowed, denied int64 }

// Usage counts checks per key and day in memory and flushes them in one
// statement: the day's counts added to the store's, last_used_at moved
// forward (never back), at most every lastUsedEvery per key. No check
// writes to the database. It is safe for concurrent use.
type Usage struct {
	pool *pgxpool.Pool

	mu       sync.Mutex
	pending  map[dayKey]counts
	lastUsed map[string]time.Time // newest use not yet written
	written  map[string]time.Time // when last_used_at was last written
}

// NewUsage returns a Usage flushing to pool.
func NewUsage(pool *pgxpool.Pool) *Usage {
	return &Usage{pool: pool, pending: map[dayKey]counts{}, lastUsed: map[string]time.Time{}, written: map[string]time.Time{}}
}

// Record counts one check of key id at now.
func (u *Usage) Record(id string, allowed bool, now time.Time) {
	now = now.UTC()
	k := dayKey{id: id, day: now.Format(time.DateOnly)}
	u.mu.Lock()
	c := u.pending[k]
	if allowed {
		c.allowed++
	} else {
		c.denied++
	}
	u.pending[k] = c
	if now.After(u.lastUsed[id]) {
		u.lastUsed[id] = now
	}
	u.mu.Unlock()
}

// Pending returns the counts of key id not flushed yet, by day.
func (u *Usage) Pending(id string) map[string]counts {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[string]counts{}
	for k, c := range u.pending {
		if k.id == id {
			out[k.day] = c
		}
	}
	return out
}

// Flush writes the pending counts in one statement. On failure they are
// kept for the next flush.
func (u *Usage) Flush(ctx context.Context, now time.Time) error {
	u.mu.Lock()
	pending := u.pending
	u.pending = map[dayKey]counts{}
	var ids, days []string
	var allowed, denied []int64
	for k, c := range pending {
		ids, days = append(ids, k.id), append(days, k.day)
		allowed, denied = append(allowed, c.allowed), append(denied, c.denied)
	}
	var luIDs []string
	var luAt []time.Time
	for id, at := range u.lastUsed {
		if now.Sub(u.written[id]) >= lastUsedEvery {
			luIDs, luAt = append(luIDs, id), append(luAt, at)
		}
	}
	u.mu.Unlock()
	if len(ids) == 0 && len(luIDs) == 0 {
		return nil
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
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil {
		for k, c := range pending { // keep them for the next flush
			p := u.pending[k]
			u.pending[k] = counts{p.allowed + c.allowed, p.denied + c.denied}
		}
		return err
	}
	for i, id := range luIDs {
		u.written[id] = now
		if !u.lastUsed[id].After(luAt[i]) {
			delete(u.lastUsed, id)
		}
	}
	return nil
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

// WithPending adds the counts of u not flushed yet to days (this replica's
// most recent checks), keeping them ordered.
func (u *Usage) WithPending(id string, days []Day) []Day {
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
