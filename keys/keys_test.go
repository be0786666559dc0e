package keys_test

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/keys"
)

// TestIndex: a key and its previous values are found by digest, each old
// value expiring no later than the key; a digest given twice is refused and
// named; Len counts keys, not values.
func TestIndex(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	b := keys.NewIndexBuilder(2)
	e := &keys.Entry{ID: "app", Digest: keys.DigestOf("new"), Tenant: "org_2f9c", Tier: "service", Created: now,
		Previous: []keys.Previous{{Digest: keys.DigestOf("old"), Expires: now.Add(time.Hour)}}}
	if taken, _ := b.Add(e, "acme", 30*24*time.Hour); taken != "" {
		t.Fatalf("refused: %s", taken)
	}
	dup := &keys.Entry{ID: "other", Digest: keys.DigestOf("x"), Previous: []keys.Previous{{Digest: keys.DigestOf("old")}}}
	if taken, field := b.Add(dup, "", 0); taken != "app" || field != ".previous[0].sha256" {
		t.Fatalf("a repeated digest: taken %q field %q", taken, field)
	}
	x := b.Build()
	if x.Len() != 1 || !x.HasTenant("acme") || x.HasTenant("org_2f9c") {
		t.Fatalf("len %d, tenants acme %v alias %v", x.Len(), x.HasTenant("acme"), x.HasTenant("org_2f9c"))
	}
	k, ok := x.Lookup(keys.DigestOf("new"))
	if !ok || k.ID != "app" || k.Tenant != "acme" || k.Rotated || !k.Expires().Equal(now.Add(30*24*time.Hour)) {
		t.Fatalf("new value: %+v %v", k, ok)
	}
	old, ok := x.Lookup(keys.DigestOf("old"))
	if !ok || !old.Rotated || old.ExpiredAt(now) || !old.ExpiredAt(now.Add(time.Hour)) {
		t.Fatalf("old value: %+v %v", old, ok)
	}
	if _, ok := x.Lookup(keys.DigestOf("x")); ok {
		t.Fatal("a refused entry was indexed")
	}
}

func TestEntryState(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		e        keys.Entry
		lifetime time.Duration
		want     string
	}{
		{keys.Entry{Created: now.Add(-time.Hour)}, 0, keys.StateActive},
		{keys.Entry{Created: now.Add(-time.Hour), Disabled: true}, 0, keys.StateDisabled},
		{keys.Entry{Created: now.Add(-48 * time.Hour)}, 24 * time.Hour, keys.StateExpired},
		{keys.Entry{Created: now.Add(-48 * time.Hour), Expires: now.Add(time.Hour)}, 24 * time.Hour, keys.StateActive},
		{keys.Entry{Created: now, Previous: []keys.Previous{{Expires: now.Add(time.Minute)}}}, 0, keys.StateRotating},
	} {
		if got := tc.e.State(now, tc.lifetime); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.e, got, tc.want)
		}
	}
}

// TestNewAndFormat: a minted key is the prefix, 43 base62 characters and
// a 6-character checksum, never twice the same, well formed, and refused
// as soon as any character changes; its entry line carries the digest,
// not the key.
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func TestNewAndFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, err := keys.New(keys.DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		rest, ok := strings.CutPrefix(k, keys.DefaultPrefix)
		if !ok || len(rest) != 49 || strings.Trim(rest, base62) != "" || seen[k] || !keys.WellFormed(k) {
			t.Fatalf("minted %q", k)
		}
		seen[k] = true
		for i := len(keys.DefaultPrefix); i < len(k); i++ {
			for _, c := range base62 {
				if byte(c) != k[i] && keys.WellFormed(k[:i]+string(c)+k[i+1:]) {
					t.Fatalf("%q with position %d changed to %c passes the checksum", k, i, c)
				}
			}
		}
	}
	line := keys.FormatEntry(&keys.Entry{ID: "ci", Digest: keys.DigestOf("secret"), Tenant: "acme", Tier: "service",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	if !strings.Contains(line, keys.DigestOf("secret").String()) || strings.Contains(line, "secret,") ||
		!strings.HasPrefix(line, "- {") || !strings.Contains(line, "2026-01-02T03:04:05Z") {
		t.Fatalf("entry %q", line)
	}
}

// TestOlderFormatsAreWellFormed: keys of other formats are left to the
// look-up: the 43-character keys minted before checksums, other prefixes,
// the 40-character customer keys.
func TestOlderFormatsAreWellFormed(t *testing.T) {
	for _, k := range []string{keys.DefaultPrefix + strings.Repeat("a", 43), "0123456789012345678901234567890123456789",
		"sk_test_" + strings.Repeat("Z", 49), keys.DefaultPrefix + strings.Repeat("a", 50), ""} {
		if !keys.WellFormed(k) {
			t.Errorf("%q refused", k)
		}
	}
	if keys.WellFormed(keys.DefaultPrefix + strings.Repeat("a", 49)) {
		t.Error("an invented key in the minted format passed")
	}
}
