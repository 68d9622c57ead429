package natsauth_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"authd/store"
	"authd/store/storetest"
)

// BenchmarkConnect measures whole NATS connections through the callout —
// CONNECT, authorization request, decision, signed answer — for a token
// client (no bcrypt, no database but the cached grants) and a password
// client (bcrypt at authd's default cost, 10). It reports connections per
// second and the p99 connect time. Run it with:
//
//	go test -run '^$' -bench Connect ./natsauth
func BenchmarkConnect(b *testing.B) {
	st := newStack(b, stackOptions{bcryptCost: 10})
	role := storetest.NewRole(b)
	st.grant(b, role, store.NATSPubAllow, "bench.>")
	st.addUser(b, "bench", "bench-password", role)
	tok := st.token(b, "bench", role)

	for _, bc := range []struct {
		name string
		opt  nats.Option
	}{
		{"token", nats.Token(tok)},
		{"password", nats.UserInfo("bench", "bench-password")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			took := make([]time.Duration, 0, b.N)
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				nc, err := nats.Connect(st.ns.ClientURL(), bc.opt, nats.NoReconnect())
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
				nc.Close()
			}
			elapsed := time.Since(start)
			slices.Sort(took)
			b.ReportMetric(float64(len(took))/elapsed.Seconds(), "connects/s")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
