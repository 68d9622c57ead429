package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// authdEnv is this process's environment without AUTHD_*, JWT_*, PGRST_*
// and DATABASE_URL, plus set: a developer's own settings must not change
// what is measured.
func authdEnv(set []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "AUTHD_") && !strings.HasPrefix(k, "JWT_") && !strings.HasPrefix(k, "PGRST_") && k != "DATABASE_URL" {
			env = append(env, kv)
		}
	}
	return append(env, set...)
}

// Server is one `authd serve` process.
type Server struct {
	Addr    string // 127.0.0.1:port
	LogPath string // its standard output and error

	cmd     *exec.Cmd
	exited  chan struct{} // closed once waited for
	waitErr error
}

// startServer runs `authd serve` on a free loopback port and returns once
// GET /readyz answers 200, so that no measurement includes start-up. It is
// not tied to ctx: Stop ends it with SIGTERM, as production does.
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
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(env, "AUTHD_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start authd: %w", err)
	}
	s := &Server{cmd: cmd, Addr: addr, LogPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	c := NewClient(addr, 1)
	defer c.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c.Get(ctx, "/readyz", "", "", "") == nil {
			return s, nil
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

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop sends SIGTERM and waits for authd to drain; after 15 s it kills it.
func (s *Server) Stop() error {
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

// LogTail is the log's last 4000 bytes: why it failed, not buried.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b[max(len(b)-4000, 0):])
}

// LogProblems counts the WARN and ERROR lines authd logged, "" if none: a
// run whose requests all succeeded can still hide server-side trouble.
func (s *Server) LogProblems() string {
	b, _ := os.ReadFile(s.LogPath)
	var n int
	var first string
	for _, line := range strings.Split(string(b), "\n") {
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
