package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/store/storetest"
	"authd/token"
)

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, v := range n {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	lat := ms(50, 10, 40, 20, 30, 60, 70, 80, 90, 100) // unsorted on purpose
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{
		{0, 10 * time.Millisecond}, // the minimum, not index -1
		{0.5, 50 * time.Millisecond},
		{0.9, 90 * time.Millisecond},
		{0.99, 100 * time.Millisecond}, // nearest rank rounds up
		{1, 100 * time.Millisecond},
	} {
		if got := Percentile(lat, c.p); got != c.want {
			t.Errorf("Percentile(p=%g) = %s, want %s", c.p, got, c.want)
		}
	}
	if lat[0] != 50*time.Millisecond {
		t.Error("Percentile sorted its argument in place")
	}
	if got := Percentile(nil, 0.99); got != 0 {
		t.Errorf("Percentile(nil) = %s, want 0", got)
	}
}

func TestMS(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0.00 ms", 1234567 * time.Nanosecond: "1.23 ms", 2 * time.Second: "2000.00 ms"} {
		if got := MS(d); got != want {
			t.Errorf("MS(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestAuthdEnv: a developer's own authd, JWT and PostgREST settings do
// not reach the server under test; everything else does.
func TestAuthdEnv(t *testing.T) {
	for k, v := range map[string]string{"AUTHD_ADDR": ":9999", "JWT_SECRET": "leaked", "PGRST_JWT_SECRET": "leaked", "DATABASE_URL": "postgres://prod",
		"DATABASE_URL_OTHER": "kept", "MY_AUTHD_THING": "kept", "LOADTEST_KEEP": "yes"} {
		t.Setenv(k, v)
	}
	env := authdEnv([]string{"AUTHD_LOG_LEVEL=warn", "DATABASE_URL=postgres://bench"})
	for _, kv := range env[:len(env)-2] {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AUTHD_") || strings.HasPrefix(k, "JWT_") || strings.HasPrefix(k, "PGRST_") || k == "DATABASE_URL" {
			t.Errorf("authdEnv kept %q", kv)
		}
	}
	for _, kv := range []string{"DATABASE_URL_OTHER=kept", "MY_AUTHD_THING=kept", "LOADTEST_KEEP=yes"} {
		if !slices.Contains(env, kv) {
			t.Errorf("authdEnv dropped %q", kv)
		}
	}
	if !slices.Equal(env[len(env)-2:], []string{"AUTHD_LOG_LEVEL=warn", "DATABASE_URL=postgres://bench"}) {
		t.Errorf("authdEnv does not end with the settings given: %q", env)
	}
}

// TestProcSelf reads this process, which certainly exists, as the
// harness reads authd.
func TestProcSelf(t *testing.T) {
	// Burn a little CPU so that the count cannot be zero.
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	if cpu, comm, err := ProcCPU(os.Getpid()); err != nil || cpu <= 0 || comm == "" {
		t.Errorf("ProcCPU(self) = %s, %q, %v", cpu, comm, err)
	}
	if rss, err := RSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("RSS(self) = %d, %v", rss, err)
	}
	if busy, idle, err := MachineCPU(); err != nil || busy <= 0 || idle < 0 {
		t.Errorf("MachineCPU = %s, %s, %v", busy, idle, err)
	}
	if _, _, err := ProcCPU(-1); err == nil {
		t.Error("ProcCPU(-1): no error")
	}
}

func TestLogProblems(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "authd.log")
	for log, want := range map[string]string{
		`{"time":"t","level":"INFO","msg":"serving"}
{"time":"t","level":"WARN","msg":"slow query"}
{"time":"t","level":"ERROR","msg":"pool closed"}
`: `authd logged 2 warning/error line(s); the first: {"time":"t","level":"WARN","msg":"slow query"}`,
		`{"level":"INFO","msg":"a WARN in the text is not a level"}`: "",
	} {
		if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := (&Server{LogPath: path}).LogProblems(); got != want {
			t.Errorf("LogProblems = %q, want %q", got, want)
		}
	}
	if got := (&Server{LogPath: filepath.Join(dir, "none")}).LogProblems(); got != "" {
		t.Errorf("LogProblems of a missing log = %q", got)
	}
	big := strings.Repeat("x", 5000) + "the end"
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	if tail := (&Server{LogPath: path}).LogTail(); len(tail) != 4000 || !strings.HasSuffix(tail, "the end") {
		t.Errorf("LogTail: %d bytes ending %q", len(tail), tail[max(len(tail)-10, 0):])
	}
}

func TestAPIKeyFromOutput(t *testing.T) {
	_, key, _, err := token.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	out := "id:      abc\nplan:    authd-bench\nkey:     " + key + "\nshown once\n"
	if got, ok := apiKeyFromOutput(out); !ok || got != key {
		t.Errorf("apiKeyFromOutput = %q, %v; want the key", got, ok)
	}
	// A "key:" line that holds no well-formed key is not taken.
	if got, ok := apiKeyFromOutput("key: authd_not-a-key\n"); ok {
		t.Errorf("apiKeyFromOutput took %q", got)
	}
}

func TestPgURL(t *testing.T) {
	got, err := PgURL("postgres://postgres:secret@127.0.0.1:5432/postgres?sslmode=disable", func(u *url.URL, q url.Values) {
		u.Path = "/authd_bench_x"
		q.Set("application_name", "authd-bench")
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://postgres:secret@127.0.0.1:5432/authd_bench_x?application_name=authd-bench&sslmode=disable"; got != want {
		t.Errorf("PgURL = %q, want %q", got, want)
	}
	for _, bad := range []string{"http://x/y", "postgres://user:p@ss word@host:bad/db", "host=localhost"} {
		_, err := PgURL(bad, func(*url.URL, url.Values) {})
		if err == nil {
			t.Errorf("PgURL(%q): no error", bad)
		} else if strings.Contains(err.Error(), "p@ss") {
			t.Errorf("PgURL(%q): the error repeats the URL: %v", bad, err)
		}
	}
}

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		err    error
		code   int
		stderr string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{fmt.Errorf("storm: %w", context.Canceled), 1, "authd-x: interrupted; cleaned up\n"},
		{errors.New("3 request(s) failed"), 1, "authd-x: 3 request(s) failed\n"},
	} {
		var b bytes.Buffer
		if code := exitCode("authd-x", c.err, &b); code != c.code || b.String() != c.stderr {
			t.Errorf("exitCode(%v) = %d, %q; want %d, %q", c.err, code, b.String(), c.code, c.stderr)
		}
	}
}

func TestAddFlags(t *testing.T) {
	t.Setenv(AdminURLEnv, "")
	t.Setenv(DBPrefixEnv, "")
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.AdminURL != DefaultAdminURL || c.Authd != "" || c.DBPrefix != "" || c.LogLevel != "warn" {
		t.Errorf("defaults: %+v", c)
	}
	t.Setenv(AdminURLEnv, "postgres://ci@db/postgres")
	t.Setenv(DBPrefixEnv, "ci7_")
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"-authd", "/tmp/authd", "-server-env", "AUTHD_X=1=2"}); err != nil {
		t.Fatal(err)
	}
	if c.AdminURL != "postgres://ci@db/postgres" || c.Authd != "/tmp/authd" || c.DBPrefix != "ci7_" || !slices.Equal(c.ServerEnv, []string{"AUTHD_X=1=2"}) {
		t.Errorf("from $%s, $%s and -authd: %+v", AdminURLEnv, DBPrefixEnv, c)
	}
}

func TestLatencies(t *testing.T) {
	var l Latencies
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%10 == 0 {
				err = fmt.Errorf("boom %d", i%30) // three distinct messages
			}
			l.Add(time.Duration(i)*time.Millisecond, err)
		}()
	}
	wg.Wait()
	if l.Len() != 100 || len(l.Durations()) != 100 || l.Errors() != 10 {
		t.Errorf("Len %d, Durations %d, Errors %d; want 100, 100, 10", l.Len(), len(l.Durations()), l.Errors())
	}
	if s := l.Samples(); len(s) != 3 {
		t.Errorf("Samples = %q, want the 3 distinct messages", s)
	}
	for i := range 10 {
		l.Add(0, fmt.Errorf("other %d", i))
	}
	if s := l.Samples(); len(s) != maxSamples {
		t.Errorf("%d samples kept, want %d", len(s), maxSamples)
	}

	lat, errs := l.Take()
	if len(lat) != 110 || errs != 20 {
		t.Errorf("Take = %d durations, %d errors; want 110, 20", len(lat), errs)
	}
	if l.Len() != 0 || l.Errors() != 0 || len(l.Samples()) != maxSamples {
		t.Errorf("after Take: Len %d, Errors %d, %d samples; want 0, 0 and the samples kept", l.Len(), l.Errors(), len(l.Samples()))
	}
	l.Add(time.Second, nil)
	if lat, errs := l.Take(); len(lat) != 1 || lat[0] != time.Second || errs != 0 {
		t.Errorf("second Take = %v, %d", lat, errs)
	}
}

// The pacer tests run in synctest bubbles: the schedule keeps its clock
// whatever the machine's load.

func TestPacerDropsWhenBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 1000/s for 20 ms is 20 slots; two calls that hang for the whole
		// window take two of them, and the other 18 find no room.
		release := make(chan struct{})
		time.AfterFunc(time.Second, func() { close(release) })
		var calls atomic.Int64
		dropped := Pacer{Rate: 1000, MaxInflight: 2}.Run(context.Background(), time.Now(), 20*time.Millisecond, func(context.Context) {
			calls.Add(1)
			<-release
		})
		if calls.Load() != 2 || dropped != 18 {
			t.Errorf("%d calls, %d dropped; want 2, 18", calls.Load(), dropped)
		}
		select {
		case <-release:
		default:
			t.Error("Run returned before its calls did")
		}
	})
}

func TestPacerCatchUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A schedule that started a second ago: without MaxLag the missed
		// slots are all sent at once, with it they are dropped.
		var calls atomic.Int64
		count := func(context.Context) { calls.Add(1) }
		start := time.Now().Add(-time.Second)
		Pacer{Rate: 100, MaxInflight: 1000}.Run(context.Background(), start, time.Second+20*time.Millisecond, count)
		if n := calls.Load(); n != 102 {
			t.Errorf("no MaxLag: %d calls, want the 102 slots (100 of them late)", n)
		}
		calls.Store(0)
		Pacer{Rate: 100, MaxInflight: 1000, MaxLag: 100 * time.Millisecond}.Run(context.Background(), start, time.Second+20*time.Millisecond, count)
		if n := calls.Load(); n < 1 || n > 10 {
			t.Errorf("MaxLag 100ms: %d calls, want the first and the few slots left after it", n)
		}
	})
}

func TestPacerUntilCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		var calls atomic.Int64
		done := make(chan int64)
		go func() {
			done <- Pacer{Rate: 200, MaxInflight: 4, MaxLag: time.Second}.Run(ctx, time.Now(), 0, func(context.Context) { calls.Add(1) })
		}()
		select {
		case dropped := <-done:
			if n := calls.Load(); n < 1 || n > 11 || dropped != 0 {
				t.Errorf("%d calls, %d dropped in 50 ms at 200/s; want about 10, none dropped", n, dropped)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run with d = 0 did not return when its context ended")
		}
		if n := (Pacer{Rate: 0, MaxInflight: 1}).Run(context.Background(), time.Now(), time.Hour, func(context.Context) { t.Error("called at rate 0") }); n != 0 {
			t.Errorf("rate 0: %d dropped", n)
		}
	})
}

func TestClient(t *testing.T) {
	const exposition = `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 12
authd_db_pool_connections{state="idle"} 3
authd_logins_total{result="shed"} 1.5e+03
not_a_number NaNish

`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/rpc/login":
			var in map[string]string
			if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &in) != nil || in["user_"] != "u" || in["pass"] != Password {
				http.Error(w, "bad login request", http.StatusBadRequest)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: "access_token", Value: "acc", Path: "/"})
			http.SetCookie(w, &http.Cookie{Name: "refresh_token", Value: "ref", Path: RefreshPath})
			http.SetCookie(w, &http.Cookie{Name: "refresh_token", Value: "wrong-path", Path: "/rpc/logout"})
			w.WriteHeader(http.StatusNoContent)
		case "/rpc/logout":
			if r.Header.Get("Cookie") != "access_token=acc; refresh_token=ref" {
				http.Error(w, "bad cookies", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		case "/auth/verify":
			if r.Header.Get("X-API-Key") != "k" || len(body) != 0 || r.Header.Get("Content-Type") != "" {
				http.Error(w, "  no key  \n", http.StatusUnauthorized)
				return
			}
			w.Header().Set("X-Auth-Role", "bench")
			w.Header().Set("Authorization", "Bearer x")
			_, _ = io.WriteString(w, strings.Repeat("x", 10000)) // read to the end
		case "/metrics":
			_, _ = io.WriteString(w, exposition)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"), 4)
	defer c.Close()
	ctx := context.Background()

	s, err := c.Login(ctx, "u")
	if err != nil || s != (Session{Refresh: "ref", Access: "acc"}) {
		t.Errorf("Login = %+v, %v; want ref, acc", s, err)
	}
	if err := c.Logout(ctx, s); err != nil {
		t.Errorf("Logout with both cookies: %v", err)
	}
	if _, err := SessionCookies(http.Header{}, "login"); err == nil {
		t.Error("SessionCookies of no cookies: no error")
	}
	if err := c.Get(ctx, "/auth/verify", "X-API-Key", "k", "bench"); err != nil {
		t.Errorf("Get: %v", err)
	}
	if err := c.Get(ctx, "/auth/verify", "X-API-Key", "k", "other"); err == nil {
		t.Error("Get with another role: no error")
	}
	err = c.Get(ctx, "/auth/verify", "X-API-Key", "secret-key", "bench")
	if want := "GET /auth/verify: status 401, want 200: no key"; err == nil || err.Error() != want {
		t.Errorf("Get with a wrong status: %v, want %q", err, want)
	}
	if err != nil && strings.Contains(err.Error(), "secret-key") {
		t.Error("the error repeats the credential")
	}
	if status, _, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/nothing"}); status != http.StatusNotFound || err != nil {
		t.Errorf("Do without Want: %d, %v; want 404 and no error", status, err)
	}

	m, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"go_goroutines": 12, `authd_db_pool_connections{state="idle"}`: 3, `authd_logins_total{result="shed"}`: 1500}
	if len(m) != len(want) {
		t.Errorf("Metrics = %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %g, want %g", k, m[k], v)
		}
	}
	c.Base += "/nothing"
	if _, err := c.Metrics(ctx); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("Metrics of a 404: %v", err)
	}
}

func TestHarnessCloseOrder(t *testing.T) {
	var order []int
	h := &Harness{}
	for i := range 3 {
		h.Defer(func() { order = append(order, i) })
	}
	h.Close()
	h.Close() // once only
	if !slices.Equal(order, []int{2, 1, 0}) {
		t.Errorf("cleanups ran in order %v, want 2 1 0", order)
	}
}

// TestSetupFailure: a Setup that fails part way (a URL that is not
// postgres://; a -db-prefix that PostgreSQL would cut short) removes what
// it had made and returns no harness.
func TestSetupFailure(t *testing.T) {
	for _, c := range []struct {
		adminURL, prefix, want string
	}{
		{"http://not-postgres/", "", "-admin-url: want a postgres:// URL"},
		{storetest.AdminURL(), strings.Repeat("p", 40), "-db-prefix"},
	} {
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		var logged []string
		h, err := Setup(context.Background(), Config{
			Name: "authd-bench", AdminURL: c.adminURL, DBPrefix: c.prefix,
			Authd: "/nonexistent/authd", // no build
			Logf:  func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) },
		})
		if h != nil || err == nil || !strings.HasPrefix(err.Error(), c.want) || (c.prefix == "" && err.Error() != c.want) {
			t.Errorf("Setup = %v, %v; want no harness and a %q error", h, err, c.want)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("left behind in TMPDIR: %v", left)
		}
		if len(logged) != 0 {
			t.Errorf("logged %q, want nothing (no build, no database)", logged)
		}
	}
}

// TestSetupAndClose makes a harness on the real PostgreSQL server
// ($AUTHD_TEST_DATABASE_URL or the local default), as the commands do,
// and checks that Close drops the database and role again, after the
// caller's own cleanups.
func TestSetupAndClose(t *testing.T) {
	adminURL, prefix := storetest.AdminURL(), storetest.Prefix()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := Setup(ctx, Config{Name: "authd-loadtest", AdminURL: adminURL, DBPrefix: prefix, Authd: "/prebuilt/authd", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			h.Close()
		}
	}()
	if h.Bin != "/prebuilt/authd" || !strings.HasPrefix(h.DBName, prefix+"authd_loadtest_") || !strings.HasPrefix(h.Role, prefix+"authd_loadtest_role_") {
		t.Errorf("harness: bin %q, database %q, role %q", h.Bin, h.DBName, h.Role)
	}
	if fi, err := os.Stat(h.Tmp); err != nil || !fi.IsDir() {
		t.Errorf("temporary directory %q: %v", h.Tmp, err)
	}
	exists := func() (db, role bool) {
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(ctx, `select exists (select from pg_database where datname = $1), exists (select from pg_roles where rolname = $2)`,
			h.DBName, h.Role).Scan(&db, &role); err != nil {
			t.Fatal(err)
		}
		return db, role
	}
	if db, role := exists(); !db || !role {
		t.Fatalf("after Setup: database %v, role %v; want both", db, role)
	}
	// The database is usable at DBURL, and a connection the caller left
	// open does not stop the drop (with (force)).
	conn, err := pgx.Connect(ctx, h.DBURL)
	if err != nil {
		t.Fatalf("connect to DBURL: %v", err)
	}
	var callerCleanedUp bool
	h.Defer(func() { callerCleanedUp = true })

	h.Close()
	closed = true
	_ = conn.Close(context.Background())
	if !callerCleanedUp {
		t.Error("Close did not run the caller's cleanup")
	}
	if db, role := exists(); db || role {
		t.Errorf("after Close: database %v, role %v; want neither", db, role)
	}
	if _, err := os.Stat(h.Tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory after Close: %v", err)
	}
}
