package policy

import "github.com/portcullis/portcullis/cache"

// SetSource replaces the key source of issuer id, for tests that need a
// source misbehaving in ways no real one can be made to on loopback.
func SetSource(s *Snapshot, id string, src cache.Source) { s.issuers[id].source = src }
