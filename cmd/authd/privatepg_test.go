package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// privatePG is a PostgreSQL cluster of the test's own, made from the
// installed binaries in t.TempDir(), so that the test may stop and start
// it (the machine's shared server is never touched). It listens on a free
// loopback port with trust authentication and is stopped at cleanup, pass
// or fail.
type privatePG struct {
	t      *testing.T
	pgCtl  string
	dir    string // the socket directory; data lives in dir/data
	data   string
	port   int
	prefix []string // runuser -u postgres -- when the test runs as root
}

// pgProgram finds a PostgreSQL program on PATH or, as Debian installs
// them, in the newest /usr/lib/postgresql/<version>/bin.
func pgProgram(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	best, bestVersion := "", -1.0
	for _, m := range matches {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(m))), 64)
		if err == nil && v > bestVersion {
			best, bestVersion = m, v
		}
	}
	return best
}

// newPrivatePG creates and starts a cluster.
func newPrivatePG(t *testing.T) *privatePG {
	t.Helper()
	initdb, pgCtl := pgProgram("initdb"), pgProgram("pg_ctl")
	if initdb == "" || pgCtl == "" {
		t.Fatal("initdb and pg_ctl are not on PATH nor in /usr/lib/postgresql/*/bin: install the PostgreSQL server package (apt-get install postgresql)")
	}
	p := &privatePG{t: t, pgCtl: pgCtl, dir: t.TempDir()}
	p.data = filepath.Join(p.dir, "data")
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: the cluster belongs to postgres,
		// which needs its way into the test's private temporary directory.
		giveToPostgres(t, p.dir)
		if err := os.Chmod(filepath.Dir(p.dir), 0o711); err != nil {
			t.Fatal(err)
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			t.Fatalf("running as root, the private cluster needs runuser: %v (install util-linux)", err)
		}
		p.prefix = []string{runuser, "-u", "postgres", "--"}
	}
	if out, err := p.command(initdb, "-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// Registered before the first start, so that a start that half worked
	// is stopped too.
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(p.data, "postmaster.pid")); err == nil {
			if out, err := p.command(p.pgCtl, "-D", p.data, "-m", "immediate", "-w", "stop"); err != nil {
				t.Errorf("stop the private cluster: %v\n%s", err, out)
			}
		}
		if t.Failed() {
			t.Logf("private cluster log:\n%s", p.logTail())
		}
	})
	// A free port now may be taken by the time the server binds it: try
	// another.
	var err error
	for range 3 {
		p.port = freePort(t)
		if err = p.startErr(); err == nil {
			return p
		}
	}
	t.Fatalf("start the private cluster: %v", err)
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// url is the superuser URL of database name.
func (p *privatePG) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, name)
}

// start starts the cluster again on its port and waits until it accepts
// connections (after crash recovery, following an immediate stop).
func (p *privatePG) start() {
	p.t.Helper()
	if err := p.startErr(); err != nil {
		p.t.Fatalf("start the private cluster: %v", err)
	}
}

func (p *privatePG) startErr() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", p.port, p.dir)
	if out, err := p.command(p.pgCtl, "-D", p.data, "-l", filepath.Join(p.dir, "server.log"), "-w", "-t", "30", "-o", opts, "start"); err != nil {
		return fmt.Errorf("%v\n%s\n%s", err, out, p.logTail())
	}
	return nil
}

// stop kills the cluster as a crash would: every backend exits at once,
// without a checkpoint, and the next start recovers from the WAL.
func (p *privatePG) stop() {
	p.t.Helper()
	if out, err := p.command(p.pgCtl, "-D", p.data, "-m", "immediate", "-w", "stop"); err != nil {
		p.t.Fatalf("stop the private cluster: %v\n%s", err, out)
	}
}

// command runs a PostgreSQL program as the cluster's owner, without the
// PG* variables of the test's environment.
func (p *privatePG) command(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := append(append(append([]string{}, p.prefix...), name), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = p.dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// pg_ctl start leaves the server running with its output in the log
	// file; should a child keep the pipe open, do not wait for it.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

func (p *privatePG) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "server.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// giveToPostgres makes user postgres the owner of paths, for the servers
// (initdb, PgBouncer) that refuse to run as root.
func giveToPostgres(t *testing.T, paths ...string) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root, this test runs its server as user postgres, who does not exist: %v (install the postgresql package)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range paths {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}
