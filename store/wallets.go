package store

// This file holds the wallets: their changes (a version each, on the feed),
// the Bank replicas take units from and settle with (no version: no other
// replica needs to know), refills and the lease that charges the holds of
// a replica that stopped.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/credits"
)

// The wallets' errors. A change that returns one changed nothing.
var (
	ErrNoWallet  = fmt.Errorf("%w", credits.ErrNoWallet)
	ErrIdemClash = fmt.Errorf("%w: the idempotency key was used with another body", ErrConflict)
)

// Refill is a wallet's refill: the balance is topped up to Amount at
// 00:00 UTC every day, or on Day (1 to 28) of every month.
type Refill struct {
	Amount int64
	Every  string // "day" or "month"
	Day    int    // with "month"
}

// Wallet is a wallet as the API shows it.
type Wallet struct {
	Tenant     string
	Balance    int64 // what can still be admitted: granted and refilled, less charged and held
	Held       int64 // what replicas hold now
	Refill     *Refill
	NextRefill time.Time // zero: none
	SpentToday int64     // charged this UTC day
	Forfeited  int64     // units of holds dropped after their lease (their replica stopped), all time
	Version    int64
	Since      int64 // the version that created it (a wallet deleted and made again is another)
}

// nextRefill returns the first refill time of r after now (zero for none).
func nextRefill(r *Refill, now time.Time) time.Time {
	if r == nil {
		return time.Time{}
	}
	now = now.UTC()
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	if r.Every == "day" {
		return day.AddDate(0, 0, 1)
	}
	next := time.Date(now.Year(), now.Month(), r.Day, 0, 0, 0, 0, time.UTC)
	if !next.After(now) {
		next = next.AddDate(0, 1, 0)
	}
	return next
}

const walletColumns = `w.tenant, w.balance, coalesce(w.refill_amount, 0), coalesce(w.refill_every, ''), coalesce(w.refill_day, 0),
	w.next_refill_at, CASE WHEN w.spent_day = (now() AT TIME ZONE 'UTC')::date THEN w.spent_today ELSE 0 END,
	(SELECT coalesce(sum(units), 0) FROM portcullis_wallet_holds h WHERE h.tenant = w.tenant), w.forfeited, w.version, w.created_version`

func scanWallet(row pgx.Row) (Wallet, error) {
	var w Wallet
	var amount int64
	var every string
	var day int
	var next *time.Time
	err := row.Scan(&w.Tenant, &w.Balance, &amount, &every, &day, &next, &w.SpentToday, &w.Held, &w.Forfeited, &w.Version, &w.Since)
	if err != nil {
		return w, err
	}
	if every != "" {
		w.Refill = &Refill{Amount: amount, Every: every, Day: day}
	}
	w.NextRefill = deref(next)
	return w, nil
}

// GetWallet returns tenant's wallet.
func (s *Store) GetWallet(ctx context.Context, tenant string) (Wallet, error) {
	w, err := scanWallet(s.pool.QueryRow(ctx, "SELECT "+walletColumns+" FROM portcullis_wallets w WHERE w.tenant = $1 AND w.deleted_at IS NULL", tenant))
	if errors.Is(err, pgx.ErrNoRows) {
		return w, ErrNoWallet
	}
	return w, err
}

// PutWallet creates tenant's wallet (with a zero balance) or changes its
// refill (when setRefill; refill nil: none), and reports whether it was
// created. Setting a refill grants nothing at once.
func (s *Store) PutWallet(ctx context.Context, tenant string, refill *Refill, setRefill bool, by string, now time.Time) (Wallet, bool, error) {
	var out Wallet
	var created bool
	_, err := s.changeLogged(ctx, by, func(tx pgx.Tx, v int64) ([]logged, error) {
		var live bool
		err := tx.QueryRow(ctx, "SELECT deleted_at IS NULL FROM portcullis_wallets WHERE tenant = $1 FOR UPDATE", tenant).Scan(&live)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			created = true
		case err != nil:
			return nil, err
		default:
			created = !live
		}
		if created {
			if _, err := tx.Exec(ctx, `INSERT INTO portcullis_wallets (tenant, balance, created_at, created_by, version, created_version) VALUES ($1, 0, $2, $3, $4, $4)
				ON CONFLICT (tenant) DO UPDATE SET balance = 0, deleted_at = NULL, created_at = $2, created_by = $3, version = $4, created_version = $4, forfeited = 0,
					refill_amount = NULL, refill_every = NULL, refill_day = NULL, next_refill_at = NULL, spent_today = 0, spent_day = NULL`,
				tenant, now, by, v); err != nil {
				return nil, err
			}
		}
		if setRefill {
			var amount *int64
			var every *string
			var day *int
			if refill != nil {
				amount, every = &refill.Amount, &refill.Every
				if refill.Every == "month" {
					day = &refill.Day
				}
			}
			if _, err := tx.Exec(ctx, `UPDATE portcullis_wallets SET refill_amount = $2, refill_every = $3, refill_day = $4,
				next_refill_at = $5, version = $6 WHERE tenant = $1`, tenant, amount, every, day, nullTime(nextRefill(refill, now)), v); err != nil {
				return nil, err
			}
		} else if !created {
			if _, err := tx.Exec(ctx, "UPDATE portcullis_wallets SET version = $2 WHERE tenant = $1", tenant, v); err != nil {
				return nil, err
			}
		}
		var err2 error
		out, err2 = scanWallet(tx.QueryRow(ctx, "SELECT "+walletColumns+" FROM portcullis_wallets w WHERE w.tenant = $1", tenant))
		op := "update"
		if created {
			op = "create"
		}
		return []logged{{"wallet", tenant, op}}, err2
	})
	return out, created, err
}

// DeleteWallet deletes tenant's wallet: the tenant is unmetered from then
// on. What replicas hold of it is dropped.
func (s *Store) DeleteWallet(ctx context.Context, tenant, by string) (int64, error) {
	return s.changeLogged(ctx, by, func(tx pgx.Tx, v int64) ([]logged, error) {
		tag, err := tx.Exec(ctx, "UPDATE portcullis_wallets SET deleted_at = now(), version = $2 WHERE tenant = $1 AND deleted_at IS NULL", tenant, v)
		if err != nil {
			return nil, err
		}
		if tag.RowsAffected() == 0 {
			return nil, ErrNoWallet
		}
		if _, err := tx.Exec(ctx, "DELETE FROM portcullis_wallet_holds WHERE tenant = $1", tenant); err != nil {
			return nil, err
		}
		return []logged{{"wallet", tenant, "delete"}}, nil
	})
}

// Grant adds units (negative: takes them) to tenant's wallet, once per
// idempotency key: the same key again with the same units and note
// changes nothing and answers the first grant's balance and version
// (replayed true); with another body it is ErrIdemClash. A refused grant
// does not use its key.
func (s *Store) Grant(ctx context.Context, tenant string, units int64, key, note, by string) (balance, version int64, replayed bool, err error) {
	var since int64
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		e := tx.QueryRow(ctx, "SELECT created_version FROM portcullis_wallets WHERE tenant = $1 AND deleted_at IS NULL", tenant).Scan(&since)
		if errors.Is(e, pgx.ErrNoRows) {
			return ErrNoWallet
		} else if e != nil {
			return e
		}
		var gotUnits, gotBalance, gotVersion int64
		var gotNote string
		e = tx.QueryRow(ctx, "SELECT units, note, balance, version FROM portcullis_wallet_grants WHERE tenant = $1 AND since = $2 AND idempotency_key = $3",
			tenant, since, key).Scan(&gotUnits, &gotNote, &gotBalance, &gotVersion)
		switch {
		case e == nil && (gotUnits != units || gotNote != note):
			return ErrIdemClash
		case e == nil:
			balance, version, replayed = gotBalance, gotVersion, true
			return nil
		case !errors.Is(e, pgx.ErrNoRows):
			return e
		}
		return nil
	})
	if err != nil || replayed {
		return balance, version, replayed, err
	}
	version, err = s.changeLogged(ctx, by, func(tx pgx.Tx, v int64) ([]logged, error) {
		e := tx.QueryRow(ctx, `UPDATE portcullis_wallets SET balance = balance + $2, version = $3 WHERE tenant = $1 AND deleted_at IS NULL
			AND created_version = $4 RETURNING balance`, tenant, units, v, since).Scan(&balance)
		if errors.Is(e, pgx.ErrNoRows) {
			return nil, ErrNoWallet
		}
		if e != nil {
			return nil, e
		}
		if _, e := tx.Exec(ctx, `INSERT INTO portcullis_wallet_grants (tenant, since, idempotency_key, units, note, balance, version)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, tenant, since, key, units, note, balance, v); e != nil {
			if isUnique(e) { // the same key, granted concurrently: refuse this one, the caller retries and is answered
				return nil, fmt.Errorf("%w: a grant with this idempotency key is being made", ErrConflict)
			}
			return nil, e
		}
		return []logged{{"wallet", tenant, "grant"}}, nil
	})
	return balance, version, false, err
}

// Take is credits.Bank's: want units from tenant's wallet into replica's
// hold, but never more than a quarter of its balance (so near exhaustion
// the blocks shrink and one replica does not hold what others need), at
// least min while the balance covers it, none under min.
func (s *Store) Take(ctx context.Context, replica, tenant string, min, want int64) (int64, int64, int64, error) {
	// One statement, so one round trip: the wallet's row locked, then the
	// hold's (the order Settle and ChargeStale keep).
	var took, balance, since int64
	err := s.pool.QueryRow(ctx, `WITH t AS (
			SELECT tenant, created_version, CASE WHEN balance < $2 THEN 0::bigint ELSE greatest($2::bigint, least($3::bigint, balance / 4)) END AS n
			FROM portcullis_wallets WHERE tenant = $1 AND deleted_at IS NULL FOR UPDATE
		), u AS (
			UPDATE portcullis_wallets w SET balance = w.balance - t.n FROM t WHERE w.tenant = t.tenant RETURNING t.n, w.balance, t.created_version
		), h AS (
			INSERT INTO portcullis_wallet_holds (tenant, replica, units, renewed_at) SELECT $1, $4, n, now() FROM u WHERE n > 0
			ON CONFLICT (tenant, replica) DO UPDATE SET units = portcullis_wallet_holds.units + excluded.units, renewed_at = now()
		)
		SELECT n, balance, created_version FROM u`, tenant, min, want, replica).Scan(&took, &balance, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, 0, ErrNoWallet
	}
	return took, balance, since, err
}

// Settle is credits.Bank's: each hold's spending leaves its hold (charged:
// spent today), what it returns goes back to the balance, debt is charged
// to the balance; and every hold of replica is renewed. A settlement for
// a wallet since deleted (or deleted and made again: another Since)
// changes nothing.
func (s *Store) Settle(ctx context.Context, replica string, seq int64, list []credits.Settlement) error {
	tenants := make([]string, len(list))
	since, spent, returned, debt := make([]int64, len(list)), make([]int64, len(list)), make([]int64, len(list)), make([]int64, len(list))
	for i, st := range list {
		tenants[i], since[i], spent[i], returned[i], debt[i] = st.Tenant, st.Since, st.Spent, st.Returned, st.Debt
	}
	// One batch: one round trip and one implicit transaction, so the
	// wallets' rows are locked only while the server runs it. Wallets
	// first, in one order, then holds: as Take, ChargeStale and
	// DeleteWallet do, so no two of them wait on each other. The claim of
	// seq makes a retry of a settlement that committed change nothing.
	b := &pgx.Batch{}
	b.Queue(`SELECT FROM portcullis_wallets WHERE tenant IN
		(SELECT tenant FROM portcullis_wallet_holds WHERE replica = $1 UNION SELECT unnest($2::text[]))
		ORDER BY tenant FOR UPDATE`, replica, tenants)
	b.Queue(`WITH claim AS (
			INSERT INTO portcullis_wallet_replicas (replica, settled, at) VALUES ($1, $2, now())
			ON CONFLICT (replica) DO UPDATE SET settled = excluded.settled, at = now()
			WHERE portcullis_wallet_replicas.settled < excluded.settled
			RETURNING 1
		), s AS (
			SELECT * FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) AS s(tenant, since, spent, returned, debt)
			WHERE EXISTS (SELECT FROM claim)
		), w AS (
			UPDATE portcullis_wallets w SET balance = w.balance + s.returned - s.debt,
				spent_today = CASE WHEN w.spent_day = (now() AT TIME ZONE 'UTC')::date THEN w.spent_today ELSE 0 END + s.spent + s.debt,
				spent_day = (now() AT TIME ZONE 'UTC')::date
			FROM s WHERE w.tenant = s.tenant AND w.created_version = s.since AND w.deleted_at IS NULL
			RETURNING w.tenant
		)
		UPDATE portcullis_wallet_holds h SET units = greatest(h.units - s.spent - s.returned, 0), renewed_at = now()
		FROM s WHERE h.tenant = s.tenant AND h.replica = $1
			AND EXISTS (SELECT FROM portcullis_wallets w WHERE w.tenant = s.tenant AND w.created_version = s.since AND w.deleted_at IS NULL)`,
		replica, seq, tenants, since, spent, returned, debt)
	b.Queue("DELETE FROM portcullis_wallet_holds WHERE replica = $1 AND units = 0", replica)
	b.Queue("UPDATE portcullis_wallet_holds SET renewed_at = now() WHERE replica = $1", replica)
	return s.pool.SendBatch(ctx, b).Close()
}

// ChargeStale drops every hold not renewed for lease, counting its units
// forfeited (its replica stopped, and may have admitted all of them; the
// balance stopped counting them when they were taken, so nothing is
// overspent), and returns how many units it dropped.
func (s *Store) ChargeStale(ctx context.Context, lease time.Duration) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Wallets first, in one order, then holds (see Settle).
		if _, err := tx.Exec(ctx, `SELECT FROM portcullis_wallets WHERE tenant IN
			(SELECT tenant FROM portcullis_wallet_holds WHERE renewed_at < now() - $1::interval) ORDER BY tenant FOR UPDATE`, lease.String()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM portcullis_wallet_replicas WHERE at < now() - interval '1 day'"); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `WITH gone AS (DELETE FROM portcullis_wallet_holds WHERE renewed_at < now() - $1::interval RETURNING tenant, units),
			charged AS (UPDATE portcullis_wallets w SET forfeited = w.forfeited + g.units
				FROM (SELECT tenant, sum(units) AS units FROM gone GROUP BY tenant) g WHERE w.tenant = g.tenant)
			SELECT coalesce(sum(units), 0) FROM gone`, lease.String()).Scan(&n)
	})
	return n, err
}

// RefillDue tops up every wallet whose refill is due at now to its amount
// (never down) and moves its next refill on, as one change, and returns
// how many it refilled.
func (s *Store) RefillDue(ctx context.Context, now time.Time) (int, error) {
	var due bool
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT FROM portcullis_wallets WHERE deleted_at IS NULL AND next_refill_at <= $1)", now).Scan(&due); err != nil || !due {
		return 0, err // most of the time: nothing due, and no change begun
	}
	var n int
	_, err := s.changeLogged(ctx, "refill", func(tx pgx.Tx, v int64) ([]logged, error) {
		rows, err := tx.Query(ctx, `SELECT tenant, refill_amount, refill_every, coalesce(refill_day, 0) FROM portcullis_wallets
			WHERE deleted_at IS NULL AND next_refill_at <= $1 FOR UPDATE SKIP LOCKED`, now)
		if err != nil {
			return nil, err
		}
		type due struct {
			tenant string
			r      Refill
		}
		var list []due
		var d due
		if _, err := pgx.ForEachRow(rows, []any{&d.tenant, &d.r.Amount, &d.r.Every, &d.r.Day}, func() error { list = append(list, d); return nil }); err != nil {
			return nil, err
		}
		var log []logged
		for _, d := range list {
			if _, err := tx.Exec(ctx, `UPDATE portcullis_wallets SET balance = greatest(balance, $2), next_refill_at = $3, version = $4
				WHERE tenant = $1`, d.tenant, d.r.Amount, nextRefill(&d.r, now), v); err != nil {
				return nil, err
			}
			log = append(log, logged{"wallet", d.tenant, "refill"})
		}
		n = len(list)
		if n == 0 {
			return nil, errNothing
		}
		return log, nil
	})
	if errors.Is(err, errNothing) {
		return 0, nil
	}
	return n, err
}

// errNothing rolls back a change that found nothing to do (no version
// taken).
var errNothing = errors.New("nothing to change")

// walletChanges reads the wallets changed after from up to to, for the
// mirror: tenant → its state, nil for a deleted one.
func walletChanges(ctx context.Context, tx pgx.Tx, from, to int64, all bool) (map[string]*credits.Wallet, error) {
	q := `SELECT tenant, version, created_version, next_refill_at, deleted_at IS NOT NULL FROM portcullis_wallets WHERE version > $1 AND version <= $2`
	if all {
		q = `SELECT tenant, version, created_version, next_refill_at, false FROM portcullis_wallets WHERE deleted_at IS NULL AND $1::bigint >= 0 AND $2::bigint >= 0`
	}
	rows, err := tx.Query(ctx, q, from, to)
	if err != nil {
		return nil, err
	}
	out := map[string]*credits.Wallet{}
	var tenant string
	var version, since int64
	var next *time.Time
	var deleted bool
	_, err = pgx.ForEachRow(rows, []any{&tenant, &version, &since, &next, &deleted}, func() error {
		if deleted {
			out[tenant] = nil
			return nil
		}
		out[tenant] = &credits.Wallet{Version: version, Since: since, NextRefill: deref(next)}
		return nil
	})
	return out, err
}

var _ credits.Bank = (*Store)(nil)
