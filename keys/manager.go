package keys

// This file holds Manager: what `portcullis keys` does to keys, wherever
// they live (a keys file, or a key store).

import (
	"context"
	"time"
)

// Manager changes and lists the keys of one place. Implementations say in
// their errors where they are; a change they refuse is ErrRefused.
type Manager interface {
	// Where names the place ("keys.yaml", "the key store"), for messages.
	Where() string
	// Lifetime is the default lifetime of a key without an expiry.
	Lifetime() time.Duration
	// Add adds e.
	Add(ctx context.Context, e *Entry) error
	// Rotate gives key id the digest d; the old value works for overlap.
	Rotate(ctx context.Context, id string, d Digest, overlap time.Duration, now time.Time) error
	// FinishRotation ends key id's overlap.
	FinishRotation(ctx context.Context, id string) error
	// Revoke disables (or, with remove, deletes) the keys m selects.
	Revoke(ctx context.Context, m Match, remove bool) ([]string, error)
	// Entries returns every key (never a deleted one).
	Entries(ctx context.Context) ([]*Entry, error)
}

var _ Manager = Location{}

// Where returns the keys file's path.
func (l Location) Where() string { return l.Path }

// Lifetime returns the policy's key_lifetime (0 for a file alone).
func (l Location) Lifetime() time.Duration { return l.KeyLifetime }

// Add adds e to the keys file.
func (l Location) Add(_ context.Context, e *Entry) error {
	return l.Editor().Edit(func(kl *List) error { kl.Add(e); return nil })
}

// Rotate gives key id the digest d in the keys file.
func (l Location) Rotate(_ context.Context, id string, d Digest, overlap time.Duration, now time.Time) error {
	return l.Editor().Edit(func(kl *List) error { return kl.Rotate(id, d, overlap, now) })
}

// FinishRotation ends key id's overlap in the keys file.
func (l Location) FinishRotation(_ context.Context, id string) error {
	return l.Editor().Edit(func(kl *List) error { return kl.FinishRotation(id) })
}

// Revoke disables (or deletes) the keys m selects in the keys file.
func (l Location) Revoke(_ context.Context, m Match, remove bool) (ids []string, err error) {
	err = l.Editor().Edit(func(kl *List) error { ids, err = kl.Revoke(m, remove); return err })
	return ids, err
}

// Entries returns the keys file's keys.
func (l Location) Entries(context.Context) ([]*Entry, error) { return l.entries() }
