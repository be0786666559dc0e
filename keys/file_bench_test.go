package keys_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/keys"
)

// BenchmarkLoadJSONKeys: reading and indexing a JSON keys file of 100,000
// keys, as the load of a policy's keys file does (go run ./bench measures a
// million in the real server).
func BenchmarkLoadJSONKeys(b *testing.B) {
	const n = 100_000
	path := filepath.Join(b.TempDir(), "keys.json")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprint(w, `{"version":1,"keys":[`)
	for i := range n {
		if i > 0 {
			fmt.Fprint(w, ",\n")
		}
		fmt.Fprintf(w, `{"id":"k%d","sha256":"%s","tenant":"acme","tier":"admin","created":"2026-11-01"}`, i, keys.DigestOf(fmt.Sprint("k", i)))
	}
	fmt.Fprint(w, "]}\n")
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.ReportAllocs()
	for b.Loop() {
		var p source.Problems
		ib := keys.NewIndexBuilder(keys.SizeHint(path))
		keys.ReadFile(path, &p, keys.ReadOptions{}, func(e *keys.Entry, _ keys.At) { ib.Add(e, e.Tenant, 0) })
		if err := p.Err(); err != nil {
			b.Fatal(err)
		}
		if x := ib.Build(); x.Len() != n {
			b.Fatalf("%d keys", x.Len())
		}
	}
}
