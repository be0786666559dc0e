package store

// This file holds the token page's sessions: one-time codes and the
// sessions they are traded for, shared by every replica (a console's
// requests may reach any of them).

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/keys"
)

// ErrNoSession is returned for a code that is unknown, used or expired,
// and for a session that is unknown, ended or expired.
var ErrNoSession = errors.New("no such session")

// Session is a signed-in user of the token page.
type Session struct {
	User, Tenant string
	CSRF         keys.Digest // of the CSRF token its calls must carry
	ExpiresAt    time.Time
}

// OpenCode records a one-time code (by its digest) that opens a session for
// user (and tenant, "" for none) until expires.
func (s *Store) OpenCode(ctx context.Context, code keys.Digest, user, tenant, by string, expires time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO portcullis_session_codes (digest, user_id, tenant, created_by, expires_at)
		VALUES ($1, $2, $3, $4, $5)`, code.Bytes(), user, nullString(tenant), by, expires)
	return err
}

// Exchange uses code (once: a second exchange finds it used) and starts a
// session, known by the digest of its cookie, lasting life from now.
func (s *Store) Exchange(ctx context.Context, code, session, csrf keys.Digest, now time.Time, life time.Duration) (Session, error) {
	var out Session
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var tenant *string
		var by string
		err := tx.QueryRow(ctx, `UPDATE portcullis_session_codes SET used_at = $2
			WHERE digest = $1 AND used_at IS NULL AND expires_at > $2 RETURNING user_id, tenant, created_by`,
			code.Bytes(), now).Scan(&out.User, &tenant, &by)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoSession
		}
		if err != nil {
			return err
		}
		out.Tenant, out.CSRF, out.ExpiresAt = derefString(tenant), csrf, now.Add(life)
		_, err = tx.Exec(ctx, `INSERT INTO portcullis_sessions (digest, csrf_digest, user_id, tenant, created_by, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, session.Bytes(), csrf.Bytes(), out.User, tenant, by, now, out.ExpiresAt)
		return err
	})
	return out, err
}

// Session returns the live session whose cookie has digest d.
func (s *Store) Session(ctx context.Context, d keys.Digest, now time.Time) (Session, error) {
	var out Session
	var tenant *string
	var csrf []byte
	err := s.pool.QueryRow(ctx, `SELECT user_id, tenant, csrf_digest, expires_at FROM portcullis_sessions
		WHERE digest = $1 AND expires_at > $2`, d.Bytes(), now).Scan(&out.User, &tenant, &csrf, &out.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return out, ErrNoSession
	}
	if err != nil {
		return out, err
	}
	out.Tenant = derefString(tenant)
	copy(out.CSRF[:], csrf)
	return out, nil
}

// EndSession ends the session whose cookie has digest d (logout).
func (s *Store) EndSession(ctx context.Context, d keys.Digest) error {
	_, err := s.pool.Exec(ctx, "DELETE FROM portcullis_sessions WHERE digest = $1", d.Bytes())
	return err
}

// pruneSessions removes expired codes and sessions.
func pruneSessions(ctx context.Context, tx pgx.Tx, now time.Time) error {
	if _, err := tx.Exec(ctx, "DELETE FROM portcullis_session_codes WHERE expires_at < $1", now); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "DELETE FROM portcullis_sessions WHERE expires_at < $1", now)
	return err
}

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
