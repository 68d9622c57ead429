package authd_test

// The README is tested: its curl session, and the API-key walkthrough in
// docs/gateways.md, run as written — bash and curl, the authd binary on
// PATH — against a live `authd serve` on a fresh PostgreSQL database that
// `authd migrate up` and `authd seed` prepared, as `make run` does.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"authd/store/storetest"
)

// readmeURL is the line by which the documents name authd's address; the
// test points it at the server it started, and changes nothing else.
const readmeURL = "AUTHD=http://localhost:3001"

// sessions are the documents' sections whose sh blocks run, in this order,
// in one shell.
var sessions = []struct{ file, heading string }{
	{"README.md", "## The curl session"},
	{"docs/gateways.md", "### Try an API key"},
}

// block is a fenced code block of a Markdown file.
type block struct {
	info  string // the fence's info string: sh, http, json, …
	text  string
	where string // file:line of the opening fence
	// after is true when only blank lines separate it from the block before.
	after bool
}

// step is an sh block to run and what its output must show.
type step struct {
	code, where string
	want        []string // lines of the output block that follows it; … matches anything
	wantWhere   string
}

// readBlocks returns the fenced blocks under heading in file, up to the
// next heading of the same or a higher level; every block of the file for
// heading "". Lines inside fences are never headings.
func readBlocks(t *testing.T, file, heading string) []block {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	level := strings.IndexByte(heading, ' ')
	in, found := heading == "", heading == ""
	var (
		blocks []block
		fenced bool
		cur    *block
		body   []string
		blank  = true // only blank lines since the last block
		n      int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		if fenced {
			if strings.HasPrefix(line, "```") {
				fenced = false
				if in {
					cur.text = strings.Join(body, "\n") + "\n"
					blocks = append(blocks, *cur)
				}
				blank = true
				continue
			}
			body = append(body, line)
			continue
		}
		if info, ok := strings.CutPrefix(line, "```"); ok {
			fenced, body = true, nil
			cur = &block{info: strings.TrimSpace(info), where: fmt.Sprintf("%s:%d", file, n), after: blank && len(blocks) > 0}
			continue
		}
		if strings.HasPrefix(line, "#") {
			l := strings.IndexByte(line, ' ')
			if line == heading {
				in, found = true, true
			} else if in && l > 0 && l <= level && strings.Trim(line[:l], "#") == "" {
				in = false
			}
		}
		if strings.TrimSpace(line) != "" {
			blank = false
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("%s has no heading %q", file, heading)
	}
	return blocks
}

// steps pairs each sh block with the output block right after it, if any.
func steps(t *testing.T, blocks []block) []step {
	t.Helper()
	var out []step
	prevSh := false
	for _, b := range blocks {
		switch {
		case b.info == "sh":
			out = append(out, step{code: b.text, where: b.where})
		case b.after && prevSh:
			s := &out[len(out)-1]
			s.want = strings.Split(strings.TrimRight(b.text, "\n"), "\n")
			s.wantWhere = b.where
		}
		prevSh = b.info == "sh"
	}
	return out
}

// lineMatcher turns a shown output line into a pattern: "…" stands for
// anything (a token, a date, an id), the rest must be there as written.
func lineMatcher(line string) *regexp.Regexp {
	parts := strings.Split(line, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// showsInOrder reports the first line of want that got does not show,
// in order; "" when all are there.
func showsInOrder(got string, want []string) string {
	lines := strings.Split(strings.ReplaceAll(got, "\r\n", "\n"), "\n")
	i := 0
	for _, w := range want {
		re := lineMatcher(w)
		for i < len(lines) && !re.MatchString(lines[i]) {
			i++
		}
		if i == len(lines) {
			return w
		}
		i++
	}
	return ""
}

func TestReadmeMatcher(t *testing.T) {
	got := "HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\nSet-Cookie: access_token=eyJabc; Path=/; Max-Age=3600\r\nDate: x\r\n\r\n"
	for _, tc := range []struct {
		want    []string
		missing string
	}{
		{[]string{"HTTP/1.1 204 No Content", "Set-Cookie: access_token=eyJ…; Path=/; Max-Age=3600"}, ""},
		{[]string{"HTTP/1.1 200 OK"}, "HTTP/1.1 200 OK"},
		{[]string{"Set-Cookie: access_token=eyJ…; Path=/; Max-Age=60"}, "Set-Cookie: access_token=eyJ…; Path=/; Max-Age=60"},
		// Order counts: the status line comes first.
		{[]string{"Cache-Control: no-store", "HTTP/1.1 204 No Content"}, "HTTP/1.1 204 No Content"},
	} {
		if m := showsInOrder(got, tc.want); m != tc.missing {
			t.Errorf("showsInOrder(%q): got missing %q, want %q", tc.want, m, tc.missing)
		}
	}
}

// TestReadme runs the documents' sessions and checks that each command
// succeeds and that its output shows the statuses, headers and bodies the
// documents show after it.
func TestReadme(t *testing.T) {
	for _, prog := range []string{"bash", "curl", "sed", "psql"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("%s is not installed; the README's commands need it", prog)
		}
	}
	var all []step
	for _, s := range sessions {
		st := steps(t, readBlocks(t, s.file, s.heading))
		checks := 0
		for _, x := range st {
			if x.want != nil {
				checks++
			}
		}
		if len(st) == 0 || checks == 0 {
			t.Fatalf("%s %q: %d sh blocks, %d with output shown; want some of each", s.file, s.heading, len(st), checks)
		}
		all = append(all, st...)
	}

	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "authd"), "./cmd/authd").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/authd: %v\n%s", err, out)
	}
	dbURL := storetest.NewEmptyURL(t)
	env := []string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"DATABASE_URL=" + dbURL,
	}
	for _, args := range [][]string{{"migrate", "up"}, {"seed"}} {
		cmd := exec.Command(filepath.Join(bin, "authd"), args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("authd %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	base := startReadmeServer(t, filepath.Join(bin, "authd"), env)

	// One shell runs every block, so variables and files carry over as in a
	// terminal; a marker line before each block splits the output. -e stops
	// at the first failing command, -u at an undefined variable.
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	const marker = "::readme-step::"
	substituted := 0
	for i, s := range all {
		code := s.code
		if strings.Contains(code, readmeURL+"\n") {
			code = strings.ReplaceAll(code, readmeURL+"\n", "AUTHD=http://"+u.Host+"\n")
			substituted++
		}
		// The newline first: curl leaves a body without one.
		fmt.Fprintf(&script, "printf '\\n%s%d\\n'; printf '\\n%s%d\\n' >&2\n%s", marker, i, marker, i, code)
	}
	if substituted == 0 {
		t.Fatalf("no block sets %s: the session would not know where authd is", readmeURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Env, cmd.Dir = env, t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()

	outs := splitSteps(stdout.String(), marker, len(all))
	errs := splitSteps(stderr.String(), marker, len(all))
	for i, s := range all {
		if outs[i] == nil {
			break // the shell stopped before this block
		}
		ran := i+1 < len(all) && outs[i+1] != nil || runErr == nil
		if !ran {
			var errOut string
			if errs[i] != nil {
				errOut = *errs[i]
			}
			t.Fatalf("the block at %s failed (%v):\n%s\nstdout:\n%s\nstderr:\n%s", s.where, runErr, s.code, *outs[i], errOut)
		}
		if s.want == nil {
			continue
		}
		if missing := showsInOrder(*outs[i], s.want); missing != "" {
			t.Errorf("the block at %s printed no line %q (in the order %s shows them); its output:\n%s", s.where, missing, s.wantWhere, *outs[i])
		}
	}
	if runErr != nil && outs[len(all)-1] == nil {
		t.Fatalf("the session stopped before its last block: %v\nstderr:\n%s", runErr, stderr.String())
	}
}

// splitSteps cuts a shell's output at the marker lines; a nil entry is a
// block that never started.
func splitSteps(out, marker string, n int) []*string {
	parts := make([]*string, n)
	cur := -1
	var b strings.Builder
	flush := func() {
		if cur >= 0 {
			s := b.String()
			parts[cur] = &s
		}
		b.Reset()
	}
	for _, line := range strings.SplitAfter(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), marker); ok {
			if i, err := strconv.Atoi(rest); err == nil && i >= 0 && i < n {
				flush()
				cur = i
				continue
			}
		}
		b.WriteString(line)
	}
	flush()
	return parts
}

// startReadmeServer runs `authd serve` on a port of 127.0.0.1 that the
// kernel picks (AUTHD_ADDR=127.0.0.1:0, so no other test can take it
// first), reads the address from its JSON "authd ready" log line, and
// returns its base URL once /readyz answers 200.
func startReadmeServer(t *testing.T, bin string, env []string) string {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(env[:len(env):len(env)],
		"JWT_SECRET=readme-test-secret-0123456789-abcdefgh",
		"AUTHD_ADDR=127.0.0.1:0",
		// Plain HTTP, as with `make run`: cookies without Secure, so
		// that the walkthrough's curl sends them back.
		"AUTHD_COOKIE_SECURE=false",
	)
	// A file, not a buffer: the process writes it while the test may read.
	logPath := filepath.Join(t.TempDir(), "authd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	output := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("authd serve did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("authd serve output:\n%s", output())
		}
	})

	// readyAddr is the address of the "authd ready" line, once logged.
	readyAddr := func() string {
		for _, line := range strings.Split(output(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "authd ready" {
				return l.Addr
			}
		}
		return ""
	}
	c := &http.Client{Timeout: 2 * time.Second}
	// Start-up takes well under 2 s on a busy machine; a minute is a bound
	// on a hung start only.
	deadline := time.Now().Add(time.Minute)
	var last error
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("authd serve exited before it was ready: %v\n%s", err, output())
		default:
		}
		if addr := readyAddr(); addr != "" {
			base := "http://" + addr
			resp, err := c.Get(base + "/readyz")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return base
				}
				err = fmt.Errorf("GET /readyz: %s", resp.Status)
			}
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("authd serve was not ready within a minute (last: %v)\n%s", last, output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDocsCurlCommands checks every curl command in the sh blocks of the
// README and docs/, run by TestReadme or not, for what breaks on Debian
// bookworm's curl 7.88: --show-headers (curl 8.10 and later), and JSON
// sent without its Content-Type (curl then sends a form, and authd answers
// 404 PGRST202). jq is not in a stock Debian, so no block may need it.
func TestDocsCurlCommands(t *testing.T) {
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"README.md"}, files...)
	jsonBody := regexp.MustCompile(`(--data|--data-raw|-d)\s+['"]\{`)
	jq := regexp.MustCompile(`(^|[|;&(]\s*|\s)jq\s`)
	curls := 0
	for _, file := range files {
		for _, b := range readBlocks(t, file, "") {
			if b.info != "sh" {
				continue
			}
			// One command per logical line: join the backslash continuations.
			for _, cmd := range strings.Split(strings.ReplaceAll(b.text, "\\\n", " "), "\n") {
				if jq.MatchString(cmd) {
					t.Errorf("%s: %q needs jq, which a stock Debian lacks", b.where, cmd)
				}
				if !strings.Contains(cmd, "curl ") {
					continue
				}
				curls++
				if strings.Contains(cmd, "--show-headers") {
					t.Errorf("%s: %q: --show-headers needs curl 8.10; use -i", b.where, cmd)
				}
				if jsonBody.MatchString(cmd) && !strings.Contains(cmd, "Content-Type: application/json") {
					t.Errorf("%s: %q sends JSON without -H 'Content-Type: application/json'", b.where, cmd)
				}
			}
		}
	}
	if curls < 10 {
		t.Errorf("found %d curl commands in README.md and docs/; want the session's and more", curls)
	}
}

// TestDocsLinks checks that every relative link in the README and docs/
// names a file of the repository and, after #, a heading of that file, as
// GitHub makes anchors of them.
func TestDocsLinks(t *testing.T) {
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"README.md"}, files...)
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	links := 0
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(withoutCode(string(text)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			path, anchor, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), path)
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s: link %q: %v", file, target, err)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !slices.Contains(anchors(t, dest), anchor) {
				t.Errorf("%s: link %q: %s has no heading with anchor #%s", file, target, dest, anchor)
			}
		}
	}
	if links < 20 {
		t.Errorf("found %d relative links; want the README's contents and more", links)
	}
}

// withoutCode drops fenced blocks and inline code, where "](" is no link.
func withoutCode(text string) string {
	code := regexp.MustCompile("`[^`]*`")
	var b strings.Builder
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			b.WriteString(code.ReplaceAllString(line, "") + "\n")
		}
	}
	return b.String()
}

// anchors are the ids GitHub gives the headings of a Markdown file:
// lowercase, punctuation dropped, spaces made hyphens.
func anchors(t *testing.T, file string) []string {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
	var out []string
	fenced := false
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		h, ok := strings.CutPrefix(line, "#")
		if fenced || !ok {
			continue
		}
		h = strings.TrimSpace(strings.TrimLeft(h, "#"))
		out = append(out, strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-"))
	}
	return out
}
