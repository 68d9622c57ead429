package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"authd/token"
)

// BuildAuthd builds ./cmd/authd of the module the command runs in into
// dir and returns the binary, so that a run measures the code checked out
// rather than whatever authd is installed.
func BuildAuthd(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build authd: %w (or pass -authd)", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", errors.New("build authd: not inside the authd module (run from the repository, or pass -authd)")
	}
	bin := filepath.Join(dir, "authd")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/authd")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build authd: %w\n%s", err, out)
	}
	return bin, nil
}

// AuthdEnv is this process's environment without any authd, JWT or
// PostgREST setting, plus set: a developer's own AUTHD_* or DATABASE_URL
// must not leak into the server under test and change what is measured.
func AuthdEnv(set []string) []string {
	return FilterEnv(os.Environ(), set)
}

// FilterEnv is environ (KEY=value entries) without the AUTHD_*, JWT_*,
// PGRST_* and DATABASE_URL entries, plus set; AuthdEnv applies it to this
// process's environment.
func FilterEnv(environ, set []string) []string {
	var env []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AUTHD_") || strings.HasPrefix(k, "JWT_") || strings.HasPrefix(k, "PGRST_") || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, set...)
}

// Migrate runs `authd migrate up` with env, as an operator would, so that
// the schema under test is the one authd ships.
func Migrate(ctx context.Context, bin string, env []string) error {
	cmd := exec.CommandContext(ctx, bin, "migrate", "up")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("authd migrate up: %w\n%s", err, out)
	}
	return nil
}

// CreateAPIKey makes plan for role, at rpm requests per minute, and
// creates a key of it with `authd apikey create`, as an operator would;
// it returns the key, which the CLI prints once. env must name the
// database (DATABASE_URL).
func CreateAPIKey(ctx context.Context, bin string, env []string, pool *pgxpool.Pool, plan, role string, rpm int) (string, error) {
	if _, err := pool.Exec(ctx, `insert into auth.plan (name, role, requests_per_minute) values ($1, $2, $3)`,
		plan, role, rpm); err != nil {
		return "", fmt.Errorf("create plan %s: %w", plan, err)
	}
	cmd := exec.CommandContext(ctx, bin, "apikey", "create", "--plan", plan)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("authd apikey create: %w\n%s", err, stderr.String())
	}
	if k, ok := apiKeyFromOutput(stdout.String()); ok {
		return k, nil
	}
	// Not echoed: stdout holds the key if the format merely changed.
	return "", errors.New("authd apikey create: no \"key: authd_…\" line in its output")
}

// apiKeyFromOutput finds the well-formed key on a "key:" line of
// `authd apikey create`'s output.
func apiKeyFromOutput(out string) (string, bool) {
	for _, line := range strings.Split(out, "\n") {
		if k, ok := strings.CutPrefix(line, "key:"); ok {
			k = strings.TrimSpace(k)
			if _, _, ok := token.ParseAPIKey(k); ok {
				return k, true
			}
		}
	}
	return "", false
}

// Server is one `authd serve` process started by StartServer.
type Server struct {
	Addr    string // host:port on 127.0.0.1
	LogPath string // its standard output and error

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // set before exited is closed
}

// StartServer runs `authd serve` with env on a free loopback port, its
// output in logPath, and returns once GET /readyz answers 200 (authd
// has its database; /healthz answers before), so that no measurement
// includes the start-up. The server is not tied to ctx:
// Stop ends it with SIGTERM, as production does, to let it drain.
func StartServer(ctx context.Context, bin string, env []string, logPath string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start authd: find a free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start authd: %w", err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(slices.Clone(env), "AUTHD_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start authd: %w", err)
	}
	s := &Server{cmd: cmd, Addr: addr, LogPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(s.exited)
	}()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		var why string
		select {
		case <-s.exited:
			why = fmt.Sprintf("authd exited (%v)", s.waitErr)
		case <-ctx.Done():
			why = ctx.Err().Error()
		case <-time.After(50 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
			why = "GET /readyz did not answer 200 within 30s"
		}
		_ = s.Stop()
		return nil, fmt.Errorf("start authd: %s\n%s", why, s.LogTail())
	}
}

// PID is the server's process id, for reading its CPU and memory in /proc.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Exited says whether the server has already ended, and why (the error
// of its wait): a run that fails because authd died should say so.
func (s *Server) Exited() (bool, error) {
	select {
	case <-s.exited:
		return true, s.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits for authd to drain and exit; after 15 s it
// kills it and says so. Stopping a stopped server does nothing.
func (s *Server) Stop() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("authd did not stop within 15s of SIGTERM; killed")
	}
}

// LogTail is the last 4000 bytes of the server's log: enough to show why
// it failed without burying the error.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.LogPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// LogProblems summarises the WARN and ERROR lines authd logged, "" if
// none: a run whose requests all succeeded can still hide server-side
// trouble, which the report should mention.
func (s *Server) LogProblems() string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return ""
	}
	return logProblems(string(b))
}

// logProblems is LogProblems on the log's text.
func logProblems(log string) string {
	var n int
	var first string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			if n == 0 {
				first = line
			}
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("authd logged %d warning/error line(s); the first: %s", n, first)
}
