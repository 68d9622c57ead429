package authd_test

import (
	"errors"
	"fmt"
	stdnet "net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"authd/store"
	"authd/store/storetest"
)

// testJWTSecret stands in for the developer's .env: base64 of 32 bytes, as
// `openssl rand -base64 32` prints it.
const testJWTSecret = "dGVzdC1vbmx5LXNlY3JldC0zMi1ieXRlcy1sb25nISE="

// loadCompose loads compose.yaml the way `docker compose` does, with env as
// the only environment: neither the OS environment nor a local .env leaks in.
func loadCompose(t *testing.T, env ...string) (*types.Project, error) {
	t.Helper()
	return loadComposeProfiles(t, nil, env...)
}

// loadComposeProfiles is loadCompose as `docker compose --profile P up`
// for each of profiles.
func loadComposeProfiles(t *testing.T, profiles []string, env ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."),
		cli.WithEnv(env),
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatalf("compose project options: %v", err)
	}
	return opts.LoadProject(t.Context())
}

func mustLoadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	p, err := loadComposeProfiles(t, profiles, "JWT_SECRET="+testJWTSecret)
	if err != nil {
		t.Fatalf("load compose.yaml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return s
}

func env(t *testing.T, s types.ServiceConfig, key string) string {
	t.Helper()
	v, ok := s.Environment[key]
	if !ok || v == nil {
		t.Fatalf("service %s: environment %s is not set", s.Name, key)
	}
	return *v
}

func parseDBURL(t *testing.T, s types.ServiceConfig, key string) *url.URL {
	t.Helper()
	u, err := url.Parse(env(t, s, key))
	if err != nil {
		t.Fatalf("service %s: %s does not parse as a URL: %v", s.Name, key, err)
	}
	return u
}

// bindSource returns the host path bind-mounted at target in s.
func bindSource(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target {
			if v.Type != types.VolumeTypeBind {
				t.Fatalf("service %s: %s is mounted as %q, want a bind mount", s.Name, target, v.Type)
			}
			return v.Source
		}
	}
	t.Fatalf("service %s: nothing is mounted at %s", s.Name, target)
	return ""
}

func TestComposeRequiresJWTSecret(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"unset", nil},
		{"empty", []string{"JWT_SECRET="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadCompose(t, tc.env...)
			if err == nil {
				t.Fatal("compose.yaml loaded without JWT_SECRET; want the ${JWT_SECRET:?...} guard to fail")
			}
			for _, want := range []string{"JWT_SECRET", "openssl rand -base64 32"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error = %q, want it to mention %q", err, want)
				}
			}
		})
	}
}

// TestComposeServices: the demo user (demo/demo, a password published in
// this repository) is made only when asked for, with --profile demo.
func TestComposeServices(t *testing.T) {
	for _, tc := range []struct {
		profiles []string
		want     []string
	}{
		{nil, []string{"app-login", "authd", "caddy", "migrate", "postgres", "postgrest"}},
		{[]string{"demo"}, []string{"app-login", "authd", "caddy", "migrate", "postgres", "postgrest", "seed"}},
	} {
		got := mustLoadCompose(t, tc.profiles...).ServiceNames()
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("profiles %q: services = %q, want %q", tc.profiles, got, tc.want)
		}
	}
	if got := service(t, mustLoadCompose(t, "demo"), "seed").Profiles; !slices.Equal(got, []string{"demo"}) {
		t.Errorf("seed profiles = %q, want [demo]", got)
	}
}

// TestComposeJWTSecretHasNoDefault reads the secrets before interpolation:
// each service must take JWT_SECRET from the environment through the
// guard, never from a literal or a ${JWT_SECRET:-default}.
func TestComposeJWTSecretHasNoDefault(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."),
		cli.WithInterpolation(false),
	)
	if err != nil {
		t.Fatalf("compose project options: %v", err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("load compose.yaml without interpolation: %v", err)
	}
	const want = "${JWT_SECRET:?set JWT_SECRET, e.g. openssl rand -base64 32}"
	for _, tc := range []struct{ svc, key string }{
		{"authd", "JWT_SECRET"},
		{"postgrest", "PGRST_JWT_SECRET"},
	} {
		if got := env(t, service(t, p, tc.svc), tc.key); got != want {
			t.Errorf("%s %s = %q, want %q", tc.svc, tc.key, got, want)
		}
	}
}

func TestComposeSharedJWTSecret(t *testing.T) {
	p := mustLoadCompose(t)
	authd := service(t, p, "authd")
	postgrest := service(t, p, "postgrest")
	for _, tc := range []struct {
		svc       types.ServiceConfig
		key, want string
	}{
		{authd, "JWT_SECRET", testJWTSecret},
		{authd, "JWT_SECRET_IS_BASE64", "true"},
		{postgrest, "PGRST_JWT_SECRET", testJWTSecret},
		{postgrest, "PGRST_JWT_SECRET_IS_BASE64", "true"},
	} {
		if got := env(t, tc.svc, tc.key); got != tc.want {
			t.Errorf("%s %s = %q, want %q", tc.svc.Name, tc.key, got, tc.want)
		}
	}
}

func TestComposeAuthdWiring(t *testing.T) {
	p := mustLoadCompose(t, "demo")
	postgres := service(t, p, "postgres")
	pgPassword := env(t, postgres, "POSTGRES_PASSWORD")
	pgDB := env(t, postgres, "POSTGRES_DB")
	appLogin := service(t, p, "app-login")
	appUser, appPassword := env(t, appLogin, "AUTHD_DB_USER"), env(t, appLogin, "AUTHD_DB_PASSWORD")

	for _, tc := range []struct {
		name           string
		command        []string
		restart        string
		dependsOn      []string
		condition      string
		user, password string
	}{
		// The migrations and the seed run as the owner of the schema;
		// serve as the least-privileged login role app-login makes.
		{"migrate", []string{"migrate", "up"}, "no", []string{"postgres"}, types.ServiceConditionHealthy, "postgres", pgPassword},
		{"seed", []string{"seed"}, "no", []string{"migrate"}, types.ServiceConditionCompletedSuccessfully, "postgres", pgPassword},
		{"authd", []string{"serve"}, "", []string{"migrate", "app-login"}, types.ServiceConditionCompletedSuccessfully, appUser, appPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := service(t, p, tc.name)
			if !slices.Equal(s.Command, tc.command) {
				t.Errorf("command = %q, want %q", s.Command, tc.command)
			}
			if s.Restart != tc.restart {
				t.Errorf("restart = %q, want %q", s.Restart, tc.restart)
			}
			for _, on := range tc.dependsOn {
				dep, ok := s.DependsOn[on]
				if !ok {
					t.Errorf("depends_on = %v, want it to include %s", s.DependsOn, on)
				} else if dep.Condition != tc.condition {
					t.Errorf("depends_on %s condition = %q, want %q", on, dep.Condition, tc.condition)
				}
			}

			// Built from this repository's Dockerfile, not pulled.
			if s.Build == nil {
				t.Fatalf("build is not set, want the repository's Dockerfile")
			}
			wd, err := os.Getwd()
			if err != nil {
				t.Fatal(err)
			}
			if s.Build.Context != wd {
				t.Errorf("build context = %q, want %q", s.Build.Context, wd)
			}
			if s.Build.Dockerfile != "Dockerfile" {
				t.Errorf("build dockerfile = %q, want %q", s.Build.Dockerfile, "Dockerfile")
			}

			u := parseDBURL(t, s, "DATABASE_URL")
			if u.Hostname() != "postgres" {
				t.Errorf("DATABASE_URL host = %q, want %q", u.Hostname(), "postgres")
			}
			if got := u.User.Username(); got != tc.user {
				t.Errorf("DATABASE_URL user = %q, want %q", got, tc.user)
			}
			if got, _ := u.User.Password(); got != tc.password {
				t.Errorf("DATABASE_URL password = %q, want %q", got, tc.password)
			}
			if got := strings.TrimPrefix(u.Path, "/"); got != pgDB {
				t.Errorf("DATABASE_URL database = %q, want POSTGRES_DB %q", got, pgDB)
			}
		})
	}

	authd := service(t, p, "authd")
	if got, want := env(t, authd, "AUTHD_ADDR"), ":3001"; got != want {
		t.Errorf("authd AUTHD_ADDR = %q, want %q", got, want)
	}
	if appUser == "postgres" {
		t.Errorf("authd serve logs in as %q, the superuser; want a member of authd_app", appUser)
	}
	if _, ok := authd.DependsOn["seed"]; ok {
		t.Errorf("authd depends on seed, which runs only with --profile demo")
	}
	// Caddy serves plain HTTP here: a Secure cookie would never come back.
	if got, want := env(t, authd, "AUTHD_COOKIE_SECURE"), "false"; got != want {
		t.Errorf("authd AUTHD_COOKIE_SECURE = %q, want %q", got, want)
	}

	// app-login runs after the migrations (they create authd_app), as the
	// superuser, on the compose database.
	if dep, ok := appLogin.DependsOn["migrate"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("app-login depends_on = %v, want migrate with %q", appLogin.DependsOn, types.ServiceConditionCompletedSuccessfully)
	}
	for key, want := range map[string]string{"PGHOST": "postgres", "PGUSER": "postgres", "PGPASSWORD": pgPassword, "PGDATABASE": pgDB} {
		if got := env(t, appLogin, key); got != want {
			t.Errorf("app-login %s = %q, want %q", key, got, want)
		}
	}
}

func TestComposeDockerfile(t *testing.T) {
	src, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}
	for _, want := range []string{
		"FROM golang:1.26 AS build",
		"CGO_ENABLED=0 go build -trimpath",
		"-o /authd ./cmd/authd",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		`ENTRYPOINT ["/authd"]`,
		`CMD ["serve"]`,
		"EXPOSE 3001",
	} {
		if !strings.Contains(string(src), want) {
			t.Errorf("Dockerfile does not contain %q", want)
		}
	}

	ignore, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatalf("read .dockerignore: %v", err)
	}
	var patterns []string
	for _, line := range strings.Split(string(ignore), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	if !slices.Contains(patterns, ".env") {
		t.Errorf(".dockerignore does not exclude %q: the JWT secret would reach the build context", ".env")
	}
}

func TestComposePostgres(t *testing.T) {
	p := mustLoadCompose(t)
	s := service(t, p, "postgres")
	if got, want := s.Image, "postgres:15"; got != want {
		t.Errorf("postgres image = %q, want %q", got, want)
	}
	if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "pg_isready") {
		t.Errorf("postgres healthcheck = %+v, want a pg_isready test", s.HealthCheck)
	}

	var dataVolume string
	for _, v := range s.Volumes {
		if v.Target == "/var/lib/postgresql/data" {
			if v.Type != types.VolumeTypeVolume {
				t.Errorf("postgres data mount type = %q, want %q", v.Type, types.VolumeTypeVolume)
			}
			dataVolume = v.Source
		}
	}
	if _, ok := p.Volumes[dataVolume]; dataVolume == "" || !ok {
		t.Errorf("postgres data volume = %q, want a named volume declared under volumes: (have %v)", dataVolume, p.VolumeNames())
	}

	initdb := bindSource(t, s, "/docker-entrypoint-initdb.d")
	script, err := os.ReadFile(filepath.Join(initdb, "00-roles.sql"))
	if err != nil {
		t.Fatalf("initdb script: %v", err)
	}
	sql := strings.Join(strings.Fields(strings.ToLower(string(script))), " ")
	for _, want := range []string{
		"create role anon nologin",
		"create role authenticator login noinherit password",
		"grant anon to authenticator",
		// The password is the one compose gives the container, the same
		// one PostgREST logs in with (TestComposePostgREST).
		"\\getenv authenticator_password authenticator_password",
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("%s does not contain %q", filepath.Join(initdb, "00-roles.sql"), want)
		}
	}
}

func TestComposePostgREST(t *testing.T) {
	p := mustLoadCompose(t)
	s := service(t, p, "postgrest")
	if !strings.HasPrefix(s.Image, "postgrest/postgrest:v12.") {
		t.Errorf("postgrest image = %q, want a pinned postgrest/postgrest:v12.x.y", s.Image)
	}
	for _, tc := range []struct{ key, want string }{
		{"PGRST_DB_ANON_ROLE", "anon"},
		{"PGRST_DB_SCHEMAS", "public"},
	} {
		if got := env(t, s, tc.key); got != tc.want {
			t.Errorf("postgrest %s = %q, want %q", tc.key, got, tc.want)
		}
	}

	u := parseDBURL(t, s, "PGRST_DB_URI")
	if u.Hostname() != "postgres" {
		t.Errorf("PGRST_DB_URI host = %q, want %q", u.Hostname(), "postgres")
	}
	if got, want := u.User.Username(), "authenticator"; got != want {
		t.Errorf("PGRST_DB_URI user = %q, want %q", got, want)
	}
	// authd grants user roles to this role; it must be the one PostgREST
	// logs in as.
	if got, want := env(t, service(t, p, "authd"), "AUTHD_AUTHENTICATOR_ROLE"), u.User.Username(); got != want {
		t.Errorf("authd AUTHD_AUTHENTICATOR_ROLE = %q, want PGRST_DB_URI's user %q", got, want)
	}
	if got, want := u.User.String(), "authenticator:"+env(t, service(t, p, "postgres"), "AUTHENTICATOR_PASSWORD"); got != want {
		t.Errorf("PGRST_DB_URI credentials = %q, want the postgres service's AUTHENTICATOR_PASSWORD: %q", got, want)
	}
	if dep, ok := s.DependsOn["migrate"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("postgrest depends_on = %v, want migrate with %q", s.DependsOn, types.ServiceConditionCompletedSuccessfully)
	}
}

func TestComposeCaddy(t *testing.T) {
	p := mustLoadCompose(t)
	s := service(t, p, "caddy")
	if got, want := s.Image, "caddy:2"; got != want {
		t.Errorf("caddy image = %q, want %q", got, want)
	}
	var published []string
	for _, port := range s.Ports {
		published = append(published, fmt.Sprintf("%s->%d", port.Published, port.Target))
	}
	if !slices.Contains(published, "8000->80") {
		t.Errorf("caddy ports = %q, want 8000->80", published)
	}

	path := bindSource(t, s, "/etc/caddy/Caddyfile")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("Caddyfile mounted into caddy: %v", err)
	}
	caddyfile := string(src)
	site := caddyBlock(t, caddyfile, ":80")

	// No client may claim an identity: the site drops both headers before
	// any route (forward_auth then sets them from authd's answer).
	top := topLevel(site)
	for _, want := range []string{"request_header -X-Auth-User", "request_header -X-Auth-Role"} {
		if !slices.Contains(top, want) {
			t.Errorf("site :80 does not strip a client's identity header: no top-level line %q (have %q)", want, top)
		}
	}
	// authd's verdict replaced the cookie-to-header copy: PostgREST gets
	// the Authorization header authd returns, never one made from a cookie.
	if strings.Contains(caddyfile, "{cookie.access_token}") {
		t.Errorf("Caddyfile still copies the access_token cookie into a header; forward_auth replaces that")
	}

	// The port authd listens on in compose.
	authdPort := strings.TrimPrefix(env(t, service(t, p, "authd"), "AUTHD_ADDR"), ":")
	authdUpstream := "authd:" + authdPort
	for _, tc := range []struct {
		block     string
		upstream  string
		protected bool
	}{
		{"handle /rpc/login", authdUpstream, false},
		{"handle /rpc/refresh_token", authdUpstream, false},
		{"handle /rpc/logout", authdUpstream, false},
		{"handle_path /rest/*", "postgrest:3000", true},
		{"handle /rpc/*", "postgrest:3000", true},
	} {
		t.Run(tc.block, func(t *testing.T) {
			body := blockIn(t, site, tc.block)
			if want := "reverse_proxy " + tc.upstream; !slices.Contains(topLevel(body), want) {
				t.Errorf("%s block = %q, want a line %q", tc.block, body, want)
			}
			opener := "forward_auth " + authdUpstream
			hasAuth := slices.Contains(body, opener+" {")
			if hasAuth != tc.protected {
				t.Fatalf("%s has %q: got %v, want %v (block %q)", tc.block, opener, hasAuth, tc.protected, body)
			}
			if !tc.protected {
				return
			}
			fa := blockIn(t, body, opener)
			for _, want := range []string{"uri /auth/verify", "copy_headers Authorization X-Auth-User X-Auth-Role"} {
				if !slices.Contains(fa, want) {
					t.Errorf("%s: forward_auth block = %q, want a line %q", tc.block, fa, want)
				}
			}
		})
	}

	// Anything else is the login page, from the mounted deploy/web.
	fallback := blockIn(t, site, "handle")
	if !slices.Contains(fallback, "file_server") {
		t.Errorf("catch-all handle = %q, want file_server", fallback)
	}
	var root string
	for _, line := range fallback {
		if r, ok := strings.CutPrefix(line, "root * "); ok {
			root = r
		}
	}
	if root == "" {
		t.Fatalf("catch-all handle = %q, want a root * line", fallback)
	}
	web := bindSource(t, s, root)
	if want, _ := filepath.Abs(filepath.Join("deploy", "web")); web != want {
		t.Errorf("%s is mounted from %q, want %q", root, web, want)
	}
	if page, err := os.ReadFile(filepath.Join(web, "index.html")); err != nil {
		t.Errorf("login page: %v", err)
	} else if !strings.Contains(string(page), "/rpc/login") {
		t.Errorf("%s does not post to /rpc/login", filepath.Join(web, "index.html"))
	}
	if !s.Volumes[slices.IndexFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == root })].ReadOnly {
		t.Errorf("%s is mounted read-write, want :ro", root)
	}
}

// caddyBlock returns the trimmed, non-comment lines inside the Caddyfile
// block opened by the line "opener {", nested blocks included.
func caddyBlock(t *testing.T, caddyfile, opener string) []string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(caddyfile, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return blockIn(t, lines, opener)
}

// blockIn returns the lines inside the first block of lines opened by
// "opener {".
func blockIn(t *testing.T, lines []string, opener string) []string {
	t.Helper()
	start := slices.Index(lines, opener+" {")
	if start < 0 {
		t.Fatalf("Caddyfile has no block %q", opener+" {")
	}
	var body []string
	depth := 1
	for _, l := range lines[start+1:] {
		if strings.HasSuffix(l, "{") {
			depth++
		}
		if l == "}" {
			depth--
			if depth == 0 {
				return body
			}
		}
		body = append(body, l)
	}
	t.Fatalf("Caddyfile block %q is not closed", opener)
	return nil
}

// topLevel returns the lines of a block's body that are not inside a
// nested block (the openers of nested blocks included).
func topLevel(body []string) []string {
	var out []string
	depth := 0
	for _, l := range body {
		if depth == 0 {
			out = append(out, l)
		}
		if strings.HasSuffix(l, "{") {
			depth++
		}
		if l == "}" {
			depth--
		}
	}
	return out
}

// TestComposeAppLogin runs app-login's command, as compose does, on a
// freshly migrated database: twice, since it runs on every `up`. Its role
// then logs in, reads and writes authd's tables and may change nothing in
// the schema: only authd_app's grants.
func TestComposeAppLogin(t *testing.T) {
	t.Parallel()
	s := service(t, mustLoadCompose(t), "app-login")
	if s.Image != service(t, mustLoadCompose(t), "postgres").Image {
		t.Errorf("app-login image = %q, want the postgres service's (its psql)", s.Image)
	}
	script := bindSource(t, s, "/app-login.sql")
	args := slices.Clone(s.Command)
	if i := slices.Index(args, "/app-login.sql"); i < 0 {
		t.Fatalf("app-login command %q does not run /app-login.sql", args)
	} else {
		args[i] = script
	}

	dbURL := storetest.NewEmptyURL(t)
	ctx := t.Context()
	db, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := db.Migrator()
	if err == nil {
		_, err = p.Up(ctx)
	}
	db.Close()
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}

	role := storetest.Prefix() + "login_" + storetest.Unique()
	t.Cleanup(func() {
		if !t.Failed() {
			storetest.Exec(t, storetest.AdminURL(), "drop role if exists "+pgx.Identifier{role}.Sanitize())
		}
	})
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		cmd := exec.CommandContext(ctx, args[0], append(args[1:], "-d", dbURL)...)
		cmd.Env = append(os.Environ(), "AUTHD_DB_USER="+role, "AUTHD_DB_PASSWORD="+env(t, s, "AUTHD_DB_PASSWORD"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	}

	u.User = url.User(role)
	conn := storetest.Connect(t, u.String())
	var n int
	if err := conn.QueryRow(ctx, `select count(*) from auth.user`).Scan(&n); err != nil {
		t.Errorf("read auth.user as %s: %v", role, err)
	}
	if _, err := conn.Exec(ctx, `delete from auth.session`); err != nil {
		t.Errorf("delete from auth.session as %s: %v", role, err)
	}
	var pgErr *pgconn.PgError
	if _, err := conn.Exec(ctx, `create table auth.x (i int)`); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("create table auth.x as %s: got %v, want 42501", role, err)
	}
}

// TestComposeTrustsCaddyAlone: authd believes X-Forwarded-For only from
// Caddy, whose address on the compose network is fixed, inside the
// network's fixed subnet.
func TestComposeTrustsCaddyAlone(t *testing.T) {
	p := mustLoadCompose(t)
	caddy := service(t, p, "caddy")
	net, ok := caddy.Networks["default"]
	if !ok || net == nil || net.Ipv4Address == "" {
		t.Fatalf("caddy has no fixed address on the default network: %+v", caddy.Networks)
	}
	if got := env(t, service(t, p, "authd"), "AUTHD_TRUSTED_PROXIES"); got != net.Ipv4Address {
		t.Errorf("AUTHD_TRUSTED_PROXIES = %q, want caddy's address %s alone", got, net.Ipv4Address)
	}
	ipam := p.Networks["default"].Ipam.Config
	if len(ipam) != 1 {
		t.Fatalf("default network IPAM config = %+v, want one fixed subnet", ipam)
	}
	_, subnet, err := stdnet.ParseCIDR(ipam[0].Subnet)
	if err != nil || !subnet.Contains(stdnet.ParseIP(net.Ipv4Address)) {
		t.Errorf("caddy's %s is not in the network's subnet %q (%v)", net.Ipv4Address, ipam[0].Subnet, err)
	}
}
