package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"authd/store"
	"authd/store/storetest"
)

// BenchmarkRefreshCommit: refresh chains rotated by 16 goroutines at
// once (each its own chain, as clients are), with group commit
// (grouped) and with one commit per rotation (alone). Run it with
//
//	go test -run '^$' -bench RefreshCommit -benchtime 5s ./store
func BenchmarkRefreshCommit(b *testing.B) {
	for _, mode := range []string{"grouped", "alone"} {
		b.Run(mode, func(b *testing.B) {
			db := storetest.NewDB(b)
			ctx := context.Background()
			storetest.AddUser(b, db, "alice", "pw")
			rotate := db.Refresh
			if mode == "alone" {
				rotate = func(ctx context.Context, o, n []byte, ttl, _ time.Duration) (store.Grant, error) {
					return db.RotateAlone(ctx, o, n, ttl)
				}
			}
			var chain atomic.Int64
			b.SetParallelism(8) // 8 × GOMAXPROCS goroutines: 16 on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := chain.Add(1)
				name := func(s int) string { return fmt.Sprint(mode, c, "-", s) }
				storetest.StartSession(b, db, "alice", name(0)) // once per goroutine
				for s := 0; pb.Next(); s++ {
					if _, err := rotate(ctx, storetest.TokenHash(name(s)), storetest.TokenHash(name(s+1)), time.Hour, 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if commits, rotations := db.RotationBatches(); commits > 0 {
				b.ReportMetric(float64(rotations)/float64(commits), "rotations/commit")
			}
		})
	}
}
