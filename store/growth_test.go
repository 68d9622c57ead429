package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"authd/store"
	"authd/store/storetest"
)

// TestRefreshUsesTokenIndex: with 100,000 refresh tokens stored, each
// statement of a refresh finds its token through the token_hash unique
// index, never by reading the table. That is why refresh costs the same
// however many tokens are stored: docs/performance.md's Growth table,
// measured once by load, is guarded here by the plan.
func TestRefreshUsesTokenIndex(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	// Sessions of four tokens, three spent by rotation and one live, as
	// real chains look; stored by COPY, since 100,000 refreshes would take
	// minutes.
	const tokens, perSession = 100_000, growthPerSession
	storeTokens(t, db, tokens)

	for name, s := range store.RefreshSQL {
		var plan []struct{ Plan planNode }
		if err := db.Pool().QueryRow(ctx, "explain (format json) "+s.SQL, refreshArgs(name, s.Params, growthHash(perSession-1), growthHash(tokens))...).Scan(&plan); err != nil {
			t.Fatalf("%s: explain: %v", name, err)
		}
		var scans []string
		plan[0].Plan.walk(func(n planNode) {
			if n.Relation == "refresh_token" && n.Type != "ModifyTable" {
				scans = append(scans, n.Type+" using "+n.Index)
			}
		})
		if len(scans) == 0 {
			t.Errorf("%s: no scan of refresh_token in its plan", name)
		}
		for _, s := range scans {
			// A rotation updates the token it found by its id; the
			// contested one also reads the token's siblings, by their
			// session.
			if s != "Index Scan using refresh_token_token_hash_key" &&
				(name == "check" || s != "Index Scan using refresh_token_pkey") &&
				(name != "rotate contested" || s != "Index Scan using refresh_token_session_idx") {
				t.Errorf("%s reads refresh_token by %s, want Index Scan using refresh_token_token_hash_key", name, s)
			}
		}
	}
}

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan.
type planNode struct {
	Type     string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Index    string     `json:"Index Name"`
	Loops    float64    `json:"Actual Loops"`
	Plans    []planNode `json:"Plans"`
}

// walk calls f on n and every node below it.
func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// refreshArgs are the arguments of the refresh statement name, of params
// parameters: a rotation's (either) the live token's hash, the new hash
// and the TTL in seconds; the check's the hash and the grace in seconds.
func refreshArgs(name string, params int, hash, next []byte) []any {
	if name == "check" {
		return []any{hash, 10.0}
	}
	return []any{hash, next, 3600.0}[:params]
}

// growthPerSession is how many tokens storeTokens puts in a session: three
// spent by rotation and the live one, last.
const growthPerSession = 4

// growthHash is the hash of storeTokens' token i.
func growthHash(i int) []byte {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
	return h[:]
}

// storeTokens stores n refresh tokens of user alice (whom it adds) by
// COPY, in sessions of growthPerSession, and analyzes the tables. Token
// i's hash is growthHash(i); the live ones are those with
// i % growthPerSession == growthPerSession-1.
func storeTokens(t testing.TB, db *store.DB, n int) {
	t.Helper()
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	expires, spent := time.Now().Add(24*time.Hour), time.Now()
	s := 0
	sessions := pgx.CopyFromFunc(func() ([]any, error) {
		if s == n/growthPerSession {
			return nil, nil
		}
		s++
		return []any{sessionID(s - 1), "alice", expires}, nil
	})
	i := 0
	rows := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		row := []any{growthHash(i), sessionID(i / growthPerSession), expires, &spent, "rotated"}
		if i++; i%growthPerSession == 0 {
			row[3], row[4] = nil, nil
		}
		return row, nil
	})
	err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "session"}, []string{"id", "username", "expires_at"}, sessions); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "refresh_token"}, []string{"token_hash", "session_id", "expires_at", "revoked_at", "revoked_reason"}, rows)
		return err
	})
	if err != nil {
		t.Fatalf("copy %d tokens: %v", n, err)
	}
	if _, err := db.Pool().Exec(ctx, "analyze auth.session, auth.refresh_token"); err != nil {
		t.Fatal(err)
	}
}

// sessionID is session s's id in storeTokens: a uuid made from s.
func sessionID(s int) uuid.UUID {
	var id uuid.UUID
	binary.BigEndian.PutUint64(id[8:], uint64(s)+1)
	id[6], id[8] = 0x40, id[8]&0x3f|0x80 // version 4, RFC 4122 variant
	return id
}

// BenchmarkRefreshGrowth: one refresh at a time (its latency, with the
// commit), with AUTHD_GROWTH_TOKENS refresh tokens stored (a comma list;
// default 1000,1000000), each size in a database of its own, and the
// bytes auth.refresh_token and its indexes take per stored token (and
// auth.session per session), measured before the refreshes. 10 million
// tokens take about 4 GB and ten minutes to store:
//
//	AUTHD_GROWTH_TOKENS=1000,1000000,10000000 go test -run '^$' -bench RefreshGrowth -benchtime 3000x -timeout 60m ./store
func BenchmarkRefreshGrowth(b *testing.B) {
	sizes := os.Getenv("AUTHD_GROWTH_TOKENS")
	if sizes == "" {
		sizes = "1000,1000000"
	}
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < growthPerSession {
			b.Fatalf("AUTHD_GROWTH_TOKENS: %q is not a number of tokens", f)
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			db := storetest.NewDB(b)
			storeTokens(b, db, n)
			ctx := context.Background()
			var tokenBytes, sessionBytes int64
			if err := db.Pool().QueryRow(ctx, `select pg_total_relation_size('auth.refresh_token'), pg_total_relation_size('auth.session')`).Scan(&tokenBytes, &sessionBytes); err != nil {
				b.Fatal(err)
			}
			live := n / growthPerSession
			b.ResetTimer()
			for k := range b.N {
				// Each live token once, spread over the table; past them,
				// the children just made.
				s := (k * 7919) % live
				old := growthHash(s*growthPerSession + growthPerSession - 1)
				if k >= live {
					old = growthHash(n + k - live)
				}
				if _, err := db.Refresh(ctx, old, growthHash(n+k), time.Hour, 0); err != nil {
					b.Fatalf("refresh %d: %v", k, err)
				}
			}
			// After the timed loop: ResetTimer drops reported metrics.
			b.ReportMetric(float64(tokenBytes)/float64(n), "bytes/token")
			b.ReportMetric(float64(sessionBytes)/float64(n/growthPerSession), "bytes/session")
		})
	}
}

// BenchmarkPurgeExpired: what the purge job costs per expired refresh
// token it deletes (in its batches of 1,000, sessions with them), with
// 100,000 expired tokens in 25,000 sessions per run.
//
//	go test -run '^$' -bench PurgeExpired -benchtime 3x ./store
func BenchmarkPurgeExpired(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	var rows int64
	for range b.N {
		b.StopTimer()
		db := storetest.NewDB(b)
		storeTokens(b, db, n)
		if _, err := db.Pool().Exec(ctx, `update auth.refresh_token set expires_at = now() - interval '1 minute'`); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for {
			p, err := db.PurgeBatch(ctx, 1000)
			if err != nil {
				b.Fatal(err)
			}
			rows += p.Sessions + p.Tokens
			if p.Sessions < 1000 && p.Tokens < 1000 {
				break
			}
		}
	}
	if rows == 0 {
		b.Fatal("the purge deleted nothing")
	}
	// Every token went, most with their session (by cascade).
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/token")
}

// TestRoleCheckIsInlined: refresh's statements check the user's role
// through auth.role_refusals, which PostgreSQL inlines into their kept
// plans. Through auth.role_refusal (a function with its own search_path,
// which the planner cannot inline) the check's body was planned again at
// every execution: more than half of PostgreSQL's CPU per refresh.
func TestRoleCheckIsInlined(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	for name, s := range store.RefreshSQL {
		rows, err := db.Pool().Query(ctx, "explain (verbose) "+s.SQL, refreshArgs(name, s.Params, storetest.TokenHash("a"), storetest.TokenHash("b"))...)
		if err != nil {
			t.Fatalf("%s: explain: %v", name, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: explain: %v", name, err)
		}
		plan := strings.Join(lines, "\n")
		if strings.Contains(plan, "role_refusal(") || !strings.Contains(plan, "pg_has_role") {
			t.Errorf("%s: the role check is not inlined into the plan:\n%s", name, plan)
		}
	}
}

// TestRotatePlanIsKept: refresh's happy path is planned once per
// connection and its plan kept (pg_prepared_statements counts the
// executions that ran the generic plan), whatever the tables hold. When
// one statement served both paths through a switch parameter, sessions
// holding dozens of unspent tokens made the kept plan look dearer than
// planning anew, and PostgreSQL planned the statement at every refresh:
// four to five times the backend's CPU.
func TestRotatePlanIsKept(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	// 200 sessions of 60 unspent tokens, and the statistics that say so.
	if _, err := db.Pool().Exec(ctx, `
		insert into auth.session (id, username, expires_at)
		select gen_random_uuid(), 'alice', now() + interval '1 day' from generate_series(1, 200);
		insert into auth.refresh_token (token_hash, session_id, expires_at)
		select sha256(convert_to(s.id::text || n, 'UTF8')), s.id, now() + interval '1 day'
		  from auth.session s, generate_series(1, 60) n;
		analyze auth.session, auth.refresh_token`); err != nil {
		t.Fatal(err)
	}
	var session uuid.UUID
	if err := db.Pool().QueryRow(ctx, "select id from auth.session limit 1").Scan(&session); err != nil {
		t.Fatal(err)
	}
	cur := storetest.TokenHash("start")
	if _, err := db.Pool().Exec(ctx, "insert into auth.refresh_token (token_hash, session_id, expires_at) values ($1, $2, now() + interval '1 day')", cur, session); err != nil {
		t.Fatal(err)
	}

	conn, err := db.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	sql := store.RefreshSQL["rotate"].SQL
	const n = 20
	for i := range n {
		next := storetest.TokenHash(fmt.Sprint("next", i))
		if tag, err := conn.Exec(ctx, sql, cur, next, 3600.0); err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("rotation %d: %q, %v; want 1 row", i, tag, err)
		}
		cur = next
	}
	var generic, custom int64
	if err := conn.QueryRow(ctx, "select generic_plans, custom_plans from pg_prepared_statements where statement = $1", sql).Scan(&generic, &custom); err != nil {
		t.Fatalf("the rotate statement among the connection's prepared statements: %v", err)
	}
	// PostgreSQL plans the first five executions for their parameters,
	// then compares.
	if custom > 5 || generic < n-5 {
		t.Errorf("%d rotations on one connection: %d with the kept plan, %d planned anew; want at least %d kept", n, generic, custom, n-5)
	}
}

// TestLoginPlansAreKept: the two statements of a login (the failure
// reserved with the user read, before the compare; the session opened
// with the failure given back, after it) are planned once per connection
// and their plans kept, as refresh's are (TestRotatePlanIsKept). A login's
// PostgreSQL CPU is its share of the CPUs that bcrypt does not get
// (docs/performance.md, "Logins and the work beside them"). Planned
// again at every execution (plan_cache_mode=force_custom_plan, which
// this test fails), the two cost the backend 1.40–1.45 ms of CPU a login
// against 0.52–0.62 ms, 2,000 logins one after another on one
// connection.
func TestLoginPlansAreKept(t *testing.T) {
	t.Parallel()
	db := storetest.NewDBOneConnection(t) // every statement on one connection
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	th := store.LoginThrottle{Limit: 1000, PerSecond: 1}
	const n = 20
	for i := range n {
		wait, u, found, err := db.ReserveLoginFailureAndLoadUser(ctx, "alice", th, time.Now())
		if err != nil || wait != 0 || !found {
			t.Fatalf("login %d: reserve and read alice: wait %s, found %v, %v", i, wait, found, err)
		}
		release := &store.LoginRelease{Username: "alice", Throttle: th, Now: time.Now()}
		client := store.LoginClient{Addr: "10.0.0.1", UserAgent: "Go-http-client/1.1"}
		if _, err := db.StartSessionFrom(ctx, u, client, storetest.TokenHash(fmt.Sprint("login", i)), time.Hour, 24*time.Hour, false, release); err != nil {
			t.Fatalf("login %d: start a session: %v", i, err)
		}
	}
	rows, err := db.Pool().Query(ctx, "select statement, generic_plans, custom_plans from pg_prepared_statements where generic_plans + custom_plans >= $1", n)
	if err != nil {
		t.Fatal(err)
	}
	type stmt struct {
		SQL             string
		Generic, Custom int64
	}
	stmts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stmt])
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) != 2 {
		t.Fatalf("%d logins on one connection: %d statements ran %d times or more, want the login's 2: %v", n, len(stmts), n, stmts)
	}
	for _, s := range stmts {
		// PostgreSQL plans the first five executions for their
		// parameters, then compares.
		if s.Custom > 5 || s.Generic < n-5 {
			t.Errorf("%d logins on one connection: %d ran the kept plan, %d were planned anew; want at least %d kept, of:\n%s", n, s.Generic, s.Custom, n-5, s.SQL)
		}
	}
}

// TestRefreshReadsByKeyWithoutStatistics: before PostgreSQL has analyzed
// the tables (a new database, autovacuum off, a restore or pg_upgrade not
// yet followed by ANALYZE), each statement of a refresh still reads the
// token, its session and its user by their keys, once. Joined plainly, the
// planner guessed that 1 session in 200 was unrevoked and started from
// the sessions, running the per-user role check for each of them: 5.9 ms
// of PostgreSQL's CPU a refresh with 560 sessions in make bench, growing
// with every session stored. Each plan is checked as the generic plan a
// pooled connection keeps and as a custom one.
func TestRefreshReadsByKeyWithoutStatistics(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	role := storetest.NewRole(t)
	// Sessions of 100 users with a live token each, as after a few hundred
	// logins; no statistics, and none gathered while the test runs.
	if _, err := db.Pool().Exec(ctx, `
		alter table auth.session set (autovacuum_enabled = false);
		alter table auth.refresh_token set (autovacuum_enabled = false);
		alter table auth.user set (autovacuum_enabled = false);
		insert into auth.user (username, password_hash, role)
		select 'user' || i, '$2a$04$' || repeat('a', 53), '`+role+`' from generate_series(1, 100) i;
		insert into auth.session (id, username, expires_at, client_addr, user_agent)
		select gen_random_uuid(), 'user' || (i % 100 + 1), now() + interval '1 day', '10.0.0.' || (i % 250), 'Go-http-client/1.1'
		  from generate_series(1, 600) i;
		insert into auth.refresh_token (token_hash, session_id, expires_at)
		select sha256(convert_to(id::text, 'UTF8')), id, now() + interval '1 day' from auth.session`); err != nil {
		t.Fatal(err)
	}
	var analyzed bool
	if err := db.Pool().QueryRow(ctx, `select bool_or(reltuples >= 0) from pg_class where oid in ('auth.session'::regclass, 'auth.user'::regclass, 'auth.refresh_token'::regclass)`).Scan(&analyzed); err != nil || analyzed {
		t.Fatalf("the tables have statistics (%v, %v): the test needs none", analyzed, err)
	}
	// The newest session's token: last in the table, as the sessions of
	// the users refreshing right after logging in are.
	var live []byte
	if err := db.Pool().QueryRow(ctx, `select t.token_hash from auth.refresh_token t join auth.session s on s.id = t.session_id order by s.ctid desc limit 1`).Scan(&live); err != nil {
		t.Fatal(err)
	}
	for name, s := range store.RefreshSQL {
		args := refreshArgs(name, s.Params, live, storetest.TokenHash("next"))
		for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
			var plan []struct{ Plan planNode }
			err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "set local plan_cache_mode = "+mode); err != nil {
					return err
				}
				if err := tx.QueryRow(ctx, "explain (analyze, format json) "+s.SQL, args...).Scan(&plan); err != nil {
					return err
				}
				return errRollback
			})
			if !errors.Is(err, errRollback) {
				t.Fatalf("%s, %s: explain analyze: %v", name, mode, err)
			}
			plan[0].Plan.walk(func(n planNode) {
				if (n.Relation == "session" || n.Relation == "user") && n.Type != "ModifyTable" {
					if !strings.HasPrefix(n.Type, "Index") || n.Loops > 1 {
						t.Errorf("%s, %s: reads %s by %s %s %v times, want once by its key", name, mode, n.Relation, n.Type, n.Index, n.Loops)
					}
				}
				// The token is found by its hash and spent by its id; the
				// contested rotation also reads its siblings by session.
				byIndex := strings.HasPrefix(n.Type, "Index") || n.Type == "Bitmap Heap Scan"
				if n.Relation == "refresh_token" && n.Type != "ModifyTable" && (!byIndex || n.Loops > 1) {
					t.Errorf("%s, %s: reads refresh_token by %s %s %v times, want once by an index", name, mode, n.Type, n.Index, n.Loops)
				}
				if n.Relation == "pg_authid" && n.Loops > 1 {
					t.Errorf("%s, %s: scans pg_authid %v times: the role check ran for more than the token's user", name, mode, n.Loops)
				}
			})
		}
	}
}

// errRollback ends a transaction whose work is only looked at.
var errRollback = errors.New("rolled back")
