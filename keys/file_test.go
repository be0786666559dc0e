package keys_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/keys"
)

// TestJSONStreamAcrossBatches: a JSON keys file is decoded on one goroutine
// while its entries are checked and added on the caller's, in batches; the
// caller still sees every entry in file order, each problem located at its
// own entry's line, and a decoding error ends the file after every entry
// before it was added, however the entries fall into batches.
func TestJSONStreamAcrossBatches(t *testing.T) {
	const n, badDigest, unknownField = 1000, 300, 700
	var b strings.Builder
	b.WriteString(`{"version": 1, "keys": [` + "\n")
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		digest := keys.DigestOf(fmt.Sprint("k", i)).String()
		extra := ""
		switch i {
		case badDigest:
			digest = "not-hex"
		case unknownField:
			extra = `, "colour": "red"`
		}
		fmt.Fprintf(&b, `{"id": "k%d", "sha256": %q, "tier": "admin", "created": "2026-11-01"%s}`, i, digest, extra)
	}
	b.WriteString("\n]}\n")
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var p source.Problems
	var got []int
	keys.ReadFile(path, &p, keys.ReadOptions{}, func(e *keys.Entry, at keys.At) {
		if want := fmt.Sprint("k", at.Index); e.ID != want {
			t.Fatalf("entry %d is %q, want %q", at.Index, e.ID, want)
		}
		got = append(got, at.Index)
	})
	if len(got) != unknownField {
		t.Fatalf("%d entries added, want the %d before the undecodable one", len(got), unknownField)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("entry %d added as number %d: out of order", v, i)
		}
	}
	err := p.Err()
	if err == nil {
		t.Fatal("no problems")
	}
	for _, want := range []string{
		fmt.Sprintf("keys.json:%d: keys[%d].sha256: ", badDigest+2, badDigest),
		fmt.Sprintf("keys.json:%d: keys[%d]: unknown field \"colour\"", unknownField+2, unknownField),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems %q lack %q", err, want)
		}
	}
}
