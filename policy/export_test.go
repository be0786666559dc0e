package policy

import (
	"github.com/portcullis/portcullis/authn"
	"github.com/portcullis/portcullis/cache"
)

// SetSource replaces the key source of issuer id, for tests that need a
// source misbehaving in ways no real one can be made to on loopback. The
// snapshot's verifier and requirements are rebuilt around the new issuer.
func SetSource(s *Snapshot, id string, src cache.Source) {
	list := s.verifier.Issuers()
	for i, is := range list {
		if is.ID() != id {
			continue
		}
		cfg := is.Config()
		cfg.Source = src
		list[i] = authn.NewIssuer(cfg)
		for _, t := range s.tiers.list {
			for j := range t.reqs {
				if t.reqs[j].issuer == is {
					t.reqs[j].issuer = list[i]
				}
			}
		}
	}
	s.verifier = authn.NewVerifier(list, DefaultMaxTokenBytes, DefaultClockSkew)
}
