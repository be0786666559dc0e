package keys_test

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/keys"
)

// TestUsageTrack: checks are counted per key id; a new index keeps the
// counts of the keys it still has and drops the others.
func TestUsageTrack(t *testing.T) {
	index := func(ids ...string) *keys.Index {
		b := keys.NewIndexBuilder(len(ids))
		for _, id := range ids {
			b.Add(&keys.Entry{ID: id, Digest: keys.DigestOf(id), Tier: "service"}, "acme", 0)
		}
		return b.Build()
	}
	u := keys.NewUsage()
	now := time.Now()
	x := index("a", "b", "c")
	for _, id := range []string{"a", "a", "b"} {
		k, _ := x.Lookup(keys.DigestOf(id)) // ids as checks see them: over the index's arena
		u.Record(k.ID, true, now)
	}
	u.Record("", false, now)
	u.Track(index("a", "c"))
	got := map[string]uint64{}
	for _, k := range u.Report().Keys {
		got[k.ID] = k.Allowed
	}
	if len(got) != 1 || got["a"] != 2 {
		t.Fatalf("after b was removed: %v, want only a with 2", got)
	}
}
