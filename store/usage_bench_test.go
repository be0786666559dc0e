package store_test

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// BenchmarkRecord measures what counting one check costs a replica: its
// key's count and its detail row (tenant, user, key), from every core.
//
//	go test -run '^$' -bench Record -cpu 1,2 ./store
func BenchmarkRecord(b *testing.B) {
	u := store.NewUsage(nil)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u.Record("key_0hidqs2Cge1z1hkJ", true, now)
			u.RecordDetail("org-acme", "u-alice", "key_0hidqs2Cge1z1hkJ", true, 1, now)
		}
	})
}
