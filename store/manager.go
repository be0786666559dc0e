package store

// This file holds Manager: `portcullis keys` on the key store.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/keys"
)

// Manager is keys.Manager on the store, for operators' commands: every
// change is made as by (the change log's "who").
type Manager struct {
	Store *Store
	By    string
}

var _ keys.Manager = Manager{}

func all(Key) bool { return true }

// refuse turns the store's refusals into keys.ErrRefused.
func refuse(err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrLimit) {
		return fmt.Errorf("%w: %v", keys.ErrRefused, err)
	}
	return err
}

// Where names the store.
func (m Manager) Where() string { return "the key store" }

// Lifetime is 0: store keys carry their effective expiry.
func (m Manager) Lifetime() time.Duration { return 0 }

// Add creates e in the store (a label defaults to its id). Superuser keys
// stay in files.
func (m Manager) Add(ctx context.Context, e *keys.Entry) error {
	if e.Superuser {
		return fmt.Errorf("%w: superuser keys live in the policy's keys file, not the key store", keys.ErrRefused)
	}
	label := e.Label
	if label == "" {
		label = e.ID
	}
	_, err := m.Store.Create(ctx, NewKey{ID: e.ID, User: e.User, Tenant: e.Tenant, Tier: e.Tier, Label: label,
		Description: e.Description, CreatedBy: m.By, Digest: e.Digest, CreatedAt: e.Created, ExpiresAt: e.Expires}, Limits{})
	return refuse(err)
}

// Rotate gives key id the digest d; the old value works for overlap.
func (m Manager) Rotate(ctx context.Context, id string, d keys.Digest, overlap time.Duration, now time.Time) error {
	_, err := m.Store.Refresh(ctx, id, Refresh{Digest: d, Overlap: overlap, Now: now}, m.By, all)
	return refuse(err)
}

// FinishRotation ends key id's overlap: its old value stops working.
func (m Manager) FinishRotation(ctx context.Context, id string) error {
	_, err := m.Store.change(ctx, "update", m.By, func(tx pgx.Tx, v int64) ([]string, error) {
		if _, err := lock(ctx, tx, id, all); err != nil {
			return nil, err
		}
		_, err := tx.Exec(ctx, `UPDATE portcullis_keys SET previous_digest = NULL, previous_expires_at = NULL, version = $2
			WHERE id = $1`, id, v)
		return []string{id}, err
	})
	return refuse(err)
}

// Revoke disables (or, with remove, deletes) the keys mt selects.
func (m Manager) Revoke(ctx context.Context, mt keys.Match, remove bool) ([]string, error) {
	var ids []string
	op := "disable"
	if remove {
		op = "delete"
	}
	_, err := m.Store.change(ctx, op, m.By, func(tx pgx.Tx, v int64) ([]string, error) {
		set := "disabled = true, previous_digest = NULL, previous_expires_at = NULL"
		if remove {
			set = "revoked_at = now()"
		}
		rows, err := tx.Query(ctx, `UPDATE portcullis_keys SET `+set+`, version = $1 WHERE revoked_at IS NULL
			AND ($2 = '' OR id = $2) AND ($3 = '' OR user_id = $3) AND ($4 = '' OR tenant = $4) RETURNING id`,
			v, mt.ID, mt.User, mt.Tenant)
		if err != nil {
			return nil, err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err == nil && len(ids) == 0 {
			return nil, fmt.Errorf("%w: no key matches", keys.ErrRefused)
		}
		return ids, err
	})
	return ids, err
}

// Entries returns every key of the store (not deleted ones).
func (m Manager) Entries(ctx context.Context) ([]*keys.Entry, error) {
	var out []*keys.Entry
	after := ""
	for {
		page, err := m.Store.List(ctx, Scope{All: true}, Filter{}, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, k := range page {
			e := &keys.Entry{ID: k.ID, Digest: k.Digest, Tenant: k.Tenant, User: k.User, Tier: k.Tier, Created: k.CreatedAt,
				Expires: k.ExpiresAt, Disabled: k.Disabled, Label: k.Label, Description: k.Description}
			if k.Previous != nil {
				e.Previous = []keys.Previous{*k.Previous}
			}
			out = append(out, e)
		}
		if len(page) < 1000 {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

// Import copies entries (a keys file's) into the store unchanged: digests,
// ids, bindings, tiers, times; one old value of a rotated key. It is one
// transaction: a taken id or digest refuses the whole import.
func (m Manager) Import(ctx context.Context, entries []*keys.Entry) (int64, error) {
	v, err := m.Store.change(ctx, "import", m.By, func(tx pgx.Tx, v int64) ([]string, error) {
		var ids []string
		for _, e := range entries {
			if e.Superuser {
				return nil, fmt.Errorf("%w: key %s is a superuser key: superuser keys stay in the policy's keys file", keys.ErrRefused, e.ID)
			}
			label := e.Label
			if label == "" {
				label = e.ID
			}
			var prev []byte
			var prevUntil *time.Time
			if n := len(e.Previous); n > 0 {
				p := e.Previous[n-1]
				prev, prevUntil = p.Digest[:], &p.Expires
			}
			_, err := tx.Exec(ctx, `INSERT INTO portcullis_keys (id, digest, start, user_id, tenant, tier, label, description,
				created_at, created_by, expires_at, disabled, previous_digest, previous_expires_at, version)
				VALUES ($1, $2, '', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
				e.ID, e.Digest[:], nullString(e.User), nullString(e.Tenant), e.Tier, label, e.Description, e.Created, m.By,
				nullTime(e.Expires), e.Disabled, prev, prevUntil, v)
			if isUnique(err) {
				return nil, fmt.Errorf("%w: key %s: its id or digest is in the store already", keys.ErrRefused, e.ID)
			}
			if err != nil {
				return nil, err
			}
			ids = append(ids, e.ID)
		}
		return ids, nil
	})
	return v, refuse(err)
}
