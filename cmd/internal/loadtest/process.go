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
	"strings"
	"syscall"
	"time"

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

// authdEnv is this process's environment without any authd, JWT or
// PostgREST setting, plus set: a developer's own AUTHD_* or DATABASE_URL
// must not leak into the server under test and change what is measured.
func authdEnv(set []string) []string { return filterEnv(os.Environ(), set) }

// filterEnv is environ without the AUTHD_*, JWT_*, PGRST_* and
// DATABASE_URL entries, plus set.
func filterEnv(environ, set []string) []string {
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

// runAuthd runs bin with args and env and returns its standard output;
// on failure the error holds its standard error.
func runAuthd(ctx context.Context, bin string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("authd %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
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

// Server is one `authd serve` process started by Harness.Start.
type Server struct {
	Addr    string // host:port on 127.0.0.1
	LogPath string // its standard output and error

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // set before exited is closed
}

// startServer runs `authd serve` with env on a free loopback port, its
// output in logPath, and returns once GET /readyz answers 200 (authd has
// its database), so that no measurement includes the start-up. The server
// is not tied to ctx: Stop ends it with SIGTERM, as production does.
func startServer(ctx context.Context, bin string, env []string, logPath string) (*Server, error) {
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
	cmd.Env = append(env, "AUTHD_ADDR="+addr)
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

// Exited says whether the server has already ended, and why: a run that
// fails because authd died should say so.
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
	if exited, _ := s.Exited(); exited {
		return nil
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
	return string(b[max(len(b)-4000, 0):])
}

// LogProblems summarises the WARN and ERROR lines authd logged, "" if
// none: a run whose requests all succeeded can still hide server-side
// trouble, which the report should mention.
func (s *Server) LogProblems() string {
	b, _ := os.ReadFile(s.LogPath)
	return logProblems(string(b))
}

func logProblems(log string) string {
	var n int
	var first string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			if n++; n == 1 {
				first = line
			}
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("authd logged %d warning/error line(s); the first: %s", n, first)
}
