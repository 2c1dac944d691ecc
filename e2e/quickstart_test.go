package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/notarize/docker-notarize/internal/testutil"
)

// TestQuickstartFreshClone follows README.md's quickstart on a fresh clone
// of the repository, as a new user would: the commands are read from the
// README's fenced blocks (and the reset's inline code), so a README change
// that breaks them fails here. It runs, in order:
//
//   - "Set up": `make run` in the background (`make test` is skipped: it is
//     the whole suite);
//   - "Quickstart": make install, key generate, sign, verify (TRUSTED, exit 0),
//     untrust, verify (UNTRUSTED, exit 1), inspect, sign and verify a file;
//   - "Quickstart, continued": Ctrl-C of `make run` (everything it started
//     stops), crane, a local registry, `make run PROXY_FLAGS=…`, a signed pull
//     served and unsigned and untrusted ones refused through the proxy;
//   - the refused `docker pull` shown in the README, through a real dockerd,
//     compared with the README's text (… matches anything), and a served one;
//   - "Verify from anywhere": verify -o json for each verdict against the
//     README's exit-code table, and the README's `if verify …; then deploy`;
//   - the reset (`rm -rf .notarize; make run`): every command refused with a
//     message naming `docker notarize ledger trust`, and that command, with
//     the new key, as the way back;
//   - `make stop`.
//
// What differs from a user's machine: Docker Hub is out of reach here, so
// its images in the commands (alpine:3.20, busybox:1.36) are served by a
// local registry (127.0.0.1:PORT/library/…), and when the README's ports
// (7070, 5000, 5001) are taken they are mapped to free ones. Each comment
// of a command that states an outcome is checked: "(exit N)", a verdict
// word, "DENIED: … text …", "served"; "within a second" is retried for a
// few seconds (this machine is shared).
func TestQuickstartFreshClone(t *testing.T) {
	for _, tool := range []string{"git", "make", "go", "docker", "curl"} {
		requireTool(t, tool)
	}
	sock := startDockerd(t)
	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	if out, err := exec.Command("git", "clone", "--quiet", "--no-hardlinks", repoRoot(t), clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	readme, err := os.ReadFile(filepath.Join(clone, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := parseReadme(t, string(readme))

	// Docker Hub's images, served locally.
	hub := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(hub.Close)
	hubHost := strings.TrimPrefix(hub.URL, "http://")
	pushRunnable(t, hubHost+"/library/alpine:3.20")
	pushRunnable(t, hubHost+"/library/busybox:1.36")

	sh := newQuickShell(t, clone, work, sock, hubHost)
	ledgerURL := "http://" + sh.addr["127.0.0.1:7070"]

	// `make run` with its ledger's port taken fails fast: no banner, no
	// key generated, nothing started or written.
	busy, err := net.Listen("tcp", sh.addr["127.0.0.1:7070"])
	if err != nil {
		t.Fatal(err)
	}
	r := sh.run("make run")
	_ = busy.Close()
	if r.code == 0 || strings.Contains(r.stdout, "Stop: Ctrl-C") || !strings.Contains(r.stderr, "already in use") {
		t.Fatalf("make run with %s taken: exit %d, want a failure naming the port and no banner\n%s%s", sh.addr["127.0.0.1:7070"], r.code, r.stdout, r.stderr)
	}
	for _, f := range []string{".notarize/ledger", ".notarize/policy.yaml", ".notarize/run/stack.pid"} {
		if _, err := os.Stat(filepath.Join(clone, f)); err == nil {
			t.Fatalf("make run with a busy port left %s", f)
		}
	}

	// Set up, then the quickstart in "a second terminal".
	sh.runBlocks(doc.section("Set up"))
	if err := os.WriteFile(filepath.Join(clone, "release.tar.gz"), []byte("a release artifact\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh.runBlocks(doc.section("Quickstart: "))
	sh.runBlocks(doc.section("Quickstart, continued"))

	// The refused pull the README shows, through a real Docker daemon.
	if doc.refusedPull.cmd == "" {
		t.Fatal("README: no block showing a refused `$ docker pull`")
	}
	r = sh.run(doc.refusedPull.cmd)
	if r.code == 0 {
		t.Fatalf("%s: pulled; the README shows a refusal", doc.refusedPull.cmd)
	}
	if !matchesShown(doc.refusedPull.output, r.stdout+r.stderr) {
		t.Errorf("README shows for %q:\n%s\nthe docker CLI printed:\n%s%s(write it with the digest abbreviated, sha256:1234…abcd)",
			doc.refusedPull.cmd, doc.refusedPull.output, r.stdout, r.stderr)
	}
	// A served pull through the daemon: trust demo:signed again (a newer
	// statement than the untrust) and pull it by name through the proxy.
	sh.must(0, "docker notarize sign 127.0.0.1:5001/demo:signed")
	sh.must(0, "docker pull 127.0.0.1:5000/local/demo:signed")

	// Verify's JSON and exit codes, against the README's table.
	exits := doc.exitCodes()
	for _, tc := range []struct{ ref, verdict string }{
		{"127.0.0.1:5001/demo:signed", "TRUSTED"},
		{"127.0.0.1:5001/demo:unsigned", "UNKNOWN"},
	} {
		sh.checkVerdict(tc.ref, tc.verdict, exits)
	}
	sh.runDeployIf(doc, "127.0.0.1:5001/demo:signed", true)
	sh.must(0, "docker notarize untrust 127.0.0.1:5001/demo:signed")
	sh.checkVerdict("127.0.0.1:5001/demo:signed", "UNTRUSTED", exits)
	sh.runDeployIf(doc, "127.0.0.1:5001/demo:signed", false)

	// The reset, and the way back.
	reset, trust := doc.inline("rm -rf .notarize"), doc.inline("ledger trust URL --key NEWKEY")
	if reset == "" || trust == "" {
		t.Fatalf("README: no inline `rm -rf .notarize; make run` (%q) or `docker notarize ledger trust URL --key NEWKEY --force` (%q)", reset, trust)
	}
	sh.stack.ctrlC() // the user stops `make run`, then resets
	for part := range strings.SplitSeq(reset, ";") {
		sh.step(strings.TrimSpace(part), "")
	}
	r = sh.run("docker notarize verify 127.0.0.1:5001/demo:signed")
	if r.code == 0 || !strings.Contains(r.stderr, "docker notarize ledger trust") {
		t.Fatalf("after a reset: exit %d, want a refusal naming `docker notarize ledger trust`:\n%s%s", r.code, r.stdout, r.stderr)
	}
	sh.must(0, strings.NewReplacer("URL", ledgerURL, "NEWKEY", "./.notarize/ledger/ledger.pub").Replace(trust))
	sh.must(exits["UNKNOWN"], "docker notarize verify 127.0.0.1:5001/demo:signed") // a new, empty ledger
	if r := sh.must(0, "docker notarize ledger list"); !strings.Contains(r.stdout, ledgerURL) {
		t.Errorf("ledger list does not show %s:\n%s", ledgerURL, r.stdout)
	}

	sh.must(0, "make stop")
	sh.stack.waitStopped()
}

// requireTool skips the test loudly when tool is missing, or fails it under CI.
func requireTool(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (CI is set: not skipping)", tool)
		}
		skipLoudly(t, tool+" is not installed")
	}
}

// repoRoot is the repository this package is in.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// readmeDoc is README.md as the test reads it.
type readmeDoc struct {
	t        *testing.T
	sections map[string]string // by heading (without "## ")
	order    []string
	text     string
	// refusedPull is the block that shows a refused `$ docker pull`.
	refusedPull struct{ cmd, output string }
}

var fenceRE = regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```")

func parseReadme(t *testing.T, text string) *readmeDoc {
	d := &readmeDoc{t: t, sections: map[string]string{}, text: text}
	var cur string
	for line := range strings.SplitSeq(text, "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			cur = h
			d.order = append(d.order, h)
			continue
		}
		d.sections[cur] += line + "\n"
	}
	for _, m := range fenceRE.FindAllStringSubmatch(text, -1) {
		if cmd, ok := strings.CutPrefix(m[2], "$ docker pull "); ok && m[1] == "" {
			first, rest, _ := strings.Cut(cmd, "\n")
			d.refusedPull.cmd, d.refusedPull.output = "docker pull "+first, rest
		}
	}
	return d
}

// section returns the sh blocks of the first section whose heading starts
// with prefix.
func (d *readmeDoc) section(prefix string) []string {
	d.t.Helper()
	for _, h := range d.order {
		if strings.HasPrefix(h, prefix) {
			var blocks []string
			for _, m := range fenceRE.FindAllStringSubmatch(d.sections[h], -1) {
				if m[1] == "sh" {
					blocks = append(blocks, m[2])
				}
			}
			if len(blocks) == 0 {
				d.t.Fatalf("README section %q has no sh block", h)
			}
			return blocks
		}
	}
	d.t.Fatalf("README has no section %q…", prefix)
	return nil
}

var inlineRE = regexp.MustCompile("`([^`\n]+)`")

// inline returns the first inline code span containing s, or "".
func (d *readmeDoc) inline(s string) string {
	prose := strings.ReplaceAll(fenceRE.ReplaceAllString(d.text, ""), "\n", " ")
	for _, m := range inlineRE.FindAllStringSubmatch(prose, -1) {
		if strings.Contains(m[1], s) {
			return m[1]
		}
	}
	return ""
}

var exitRowRE = regexp.MustCompile("(?m)^\\| (\\d+) \\| `([A-Z]+)` \\|")

// exitCodes is the README's exit-code table: verdict → exit code.
func (d *readmeDoc) exitCodes() map[string]int {
	d.t.Helper()
	out := map[string]int{}
	for _, m := range exitRowRE.FindAllStringSubmatch(d.text, -1) {
		n, _ := strconv.Atoi(m[1])
		out[m[2]] = n
	}
	for _, v := range []string{"TRUSTED", "UNTRUSTED", "UNKNOWN", "UNSUPPORTED"} {
		if _, ok := out[v]; !ok {
			d.t.Fatalf("README's exit-code table lacks %s: %v", v, out)
		}
	}
	return out
}

// shortDigestRE is a digest as the README abbreviates it, sha256:c515…b043.
var shortDigestRE = regexp.MustCompile(`sha256:[0-9a-f]*…[0-9a-f]*`)

// matchesShown reports whether got shows what the README shows: the text
// with runs of white space as one space, "…" standing for anything (an
// abbreviated digest for any digest: the test's images are not the README's).
func matchesShown(shown, got string) bool {
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	got = norm(got)
	shown = shortDigestRE.ReplaceAllString(norm(shown), "sha256:…")
	for frag := range strings.SplitSeq(shown, "…") {
		frag = strings.TrimSpace(frag)
		i := strings.Index(got, frag)
		if i < 0 {
			return false
		}
		got = got[i+len(frag):]
	}
	return true
}

// quickShell runs README commands in the clone, as a user's shell would.
type quickShell struct {
	t     *testing.T
	dir   string
	env   map[string]string
	repl  *strings.Replacer
	addr  map[string]string // the README's addresses → the ones used
	stack *stackRun         // the `make run` running, if any
}

// newQuickShell returns a shell in dir with a HOME in work, the Docker daemon
// at sock ("": none) and Docker Hub's images at hubHost ("": none).
func newQuickShell(t *testing.T, dir, work, sock, hubHost string) *quickShell {
	home := filepath.Join(work, "home")
	sh := &quickShell{t: t, dir: dir, addr: map[string]string{}}
	var pairs []string
	if hubHost != "" {
		pairs = append(pairs, "alpine:3.20", hubHost+"/library/alpine:3.20", "busybox:1.36", hubHost+"/library/busybox:1.36")
	}
	for _, a := range []string{"127.0.0.1:7070", "127.0.0.1:5000", "127.0.0.1:5001"} {
		sh.addr[a] = a
		if !portFree(a) {
			sh.addr[a] = freeAddr(t)
			pairs = append(pairs, a, sh.addr[a])
		}
	}
	sh.repl = strings.NewReplacer(pairs...)
	sh.env = map[string]string{
		"HOME":             home,
		"DOCKER_CONFIG":    filepath.Join(home, ".docker"),
		"DOCKER_CLI_HINTS": "false",
		"PATH":             filepath.Join(home, "go", "bin") + ":" + os.Getenv("PATH"),
		"GOTOOLCHAIN":      "local",
		"LEDGER_ADDR":      sh.addr["127.0.0.1:7070"],
		"PROXY_ADDR":       sh.addr["127.0.0.1:5000"],
	}
	if sock != "" {
		sh.env["DOCKER_HOST"] = "unix://" + sock
	}
	if sh.addr["127.0.0.1:7070"] != "127.0.0.1:7070" {
		sh.env["NOTARIZE_LEDGER"] = "http://" + sh.addr["127.0.0.1:7070"]
	}
	// The Go caches and module proxy of this machine, so that builds and
	// `go install` are as quick as on a user's.
	for _, k := range []string{"GOMODCACHE", "GOCACHE", "GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GOFLAGS", "GOINSECURE"} {
		if out, err := exec.Command("go", "env", k).Output(); err == nil && strings.TrimSpace(string(out)) != "" {
			sh.env[k] = strings.TrimSpace(string(out))
		}
	}
	for _, k := range []string{"TMPDIR", "CI", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			sh.env[k] = v
		}
	}
	t.Cleanup(func() {
		if sh.stack != nil {
			sh.stack.ctrlC()
		}
	})
	return sh
}

func portFree(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func (sh *quickShell) command(line string) *exec.Cmd {
	cmd := exec.Command("bash", "-c", line)
	cmd.Dir = sh.dir
	for k, v := range sh.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// run runs one command line (its README addresses and images mapped).
func (sh *quickShell) run(line string) result {
	sh.t.Helper()
	line = sh.repl.Replace(line)
	cmd := sh.command(line)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		sh.t.Fatalf("%s: %v", line, err)
	}
	sh.t.Logf("$ %s   (exit %d, %v)", line, r.code, r.took.Round(time.Millisecond))
	return r
}

// must runs line and requires exit code want.
func (sh *quickShell) must(want int, line string) result {
	sh.t.Helper()
	r := sh.run(line)
	if r.code != want {
		sh.t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", line, r.code, want, r.stdout, r.stderr)
	}
	return r
}

// commentRE splits a command line from its comment: two spaces or more, #.
var commentRE = regexp.MustCompile(`\s{2,}#\s?`)

// runBlocks runs every line of blocks.
func (sh *quickShell) runBlocks(blocks []string) {
	sh.t.Helper()
	for _, b := range blocks {
		for line := range strings.SplitSeq(b, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			cmd, comment := line, ""
			if loc := commentRE.FindStringIndex(line); loc != nil {
				cmd, comment = line[:loc[0]], line[loc[1]:]
			}
			sh.step(strings.TrimSpace(cmd), comment)
		}
	}
}

var exitNoteRE = regexp.MustCompile(`\(exit (\d+)\)`)

// step runs one README command and checks what its comment says of it.
func (sh *quickShell) step(cmd, comment string) {
	sh.t.Helper()
	switch {
	case cmd == "make test":
		sh.t.Log("skipped: make test (the whole suite, not part of the quickstart)")
		return
	case strings.HasPrefix(cmd, "make run"):
		// The README's "Stop `make run` (Ctrl-C) and start it again".
		if sh.stack != nil {
			sh.stack.ctrlC()
		}
		sh.stack = sh.startStack(cmd)
		return
	case strings.HasPrefix(cmd, "export "):
		name, _, _ := strings.Cut(strings.TrimPrefix(cmd, "export "), "=")
		r := sh.must(0, cmd+"; printf %s \"$"+name+"\"")
		sh.env[name] = r.stdout
		return
	case strings.HasSuffix(cmd, "&"):
		sh.background(strings.TrimSuffix(cmd, "&"))
		return
	}
	want, denied := 0, strings.HasPrefix(comment, "DENIED")
	if m := exitNoteRE.FindStringSubmatch(comment); m != nil {
		want, _ = strconv.Atoi(m[1])
	}
	var fragments []string
	if denied {
		text := strings.TrimSuffix(strings.TrimPrefix(comment, "DENIED:"), ", within a second")
		text = strings.ReplaceAll(text, "…", "...")
		for f := range strings.SplitSeq(text, "...") {
			if f = strings.TrimSpace(f); f != "" {
				fragments = append(fragments, f)
			}
		}
		fragments = append(fragments, "DENIED")
	}
	if w, _, _ := strings.Cut(comment, " "); regexp.MustCompile(`^(TRUSTED|UNTRUSTED|UNKNOWN|UNSUPPORTED)$`).MatchString(w) {
		fragments = append(fragments, w)
	}
	check := func(r result) error {
		switch {
		case denied && r.code == 0:
			return errors.New("served; the README says DENIED")
		case !denied && r.code != want:
			return fmt.Errorf("exit %d, want %d", r.code, want)
		}
		for _, f := range fragments {
			if !strings.Contains(r.stdout+r.stderr, f) {
				return fmt.Errorf("output lacks %q", f)
			}
		}
		return nil
	}
	deadline := time.Now()
	if strings.Contains(comment, "within a second") {
		deadline = deadline.Add(5 * time.Second) // a shared machine's second
	}
	for {
		r := sh.run(cmd)
		err := check(r)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			sh.t.Fatalf("README: %s   # %s\n%v\nstdout:\n%s\nstderr:\n%s", cmd, comment, err, r.stdout, r.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// background starts cmd as `cmd &` would, stops it when the test ends, and
// waits until the addresses it names accept connections.
func (sh *quickShell) background(cmd string) {
	sh.t.Helper()
	cmd = sh.repl.Replace(strings.TrimSpace(cmd))
	c := sh.command("exec " + cmd)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out lockedBuffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		sh.t.Fatalf("%s &: %v", cmd, err)
	}
	sh.t.Logf("$ %s &", cmd)
	sh.t.Cleanup(func() {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		_ = c.Wait()
	})
	for _, a := range addrRE.FindAllString(cmd, -1) {
		waitFor(sh.t, cmd, func() bool { return !portFree(a) }, 30*time.Second, &out)
	}
}

func waitFor(t *testing.T, what string, ok func() bool, d time.Duration, out *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready in %v\n%s", what, d, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stackRun is a `make run` in the background, in its own process group as
// in a terminal.
type stackRun struct {
	sh     *quickShell
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

// startStack starts a `make run` line and waits for its banner.
func (sh *quickShell) startStack(line string) *stackRun {
	sh.t.Helper()
	line = sh.repl.Replace(line)
	c := sh.command("exec " + line)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	st := &stackRun{sh: sh, cmd: c, out: &lockedBuffer{}, exited: make(chan struct{})}
	c.Stdout, c.Stderr = st.out, st.out
	if err := c.Start(); err != nil {
		sh.t.Fatalf("%s: %v", line, err)
	}
	go func() { _ = c.Wait(); close(st.exited) }()
	sh.t.Logf("$ %s   (in the background)", line)
	deadline := time.After(10 * time.Minute) // the first one builds everything
	for !strings.Contains(st.out.String(), "Stop: Ctrl-C") {
		select {
		case <-st.exited:
			sh.t.Fatalf("%s exited:\n%s", line, st.out.String())
		case <-deadline:
			sh.t.Fatalf("%s: no banner in 10 minutes:\n%s", line, st.out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	// The banner lists only the configured upstreams.
	banner := st.out.String()[strings.LastIndex(st.out.String(), "serving only these upstreams:"):]
	if strings.Contains(line, "--upstream local=") && (!strings.Contains(banner, "local ") || strings.Contains(banner, "docker.io") || strings.Contains(banner, "registry-mirrors")) {
		sh.t.Errorf("%s: the banner lists other upstreams than local:\n%s", line, banner)
	}
	return st
}

// ctrlC sends SIGINT to the process group, as Ctrl-C in its terminal, and
// checks that everything it started stopped.
func (st *stackRun) ctrlC() {
	st.sh.t.Helper()
	_ = syscall.Kill(-st.cmd.Process.Pid, syscall.SIGINT)
	st.waitStopped()
}

// waitStopped waits for `make run` to exit and checks its processes are
// gone: the addresses are free and no pid file is left.
func (st *stackRun) waitStopped() {
	st.sh.t.Helper()
	select {
	case <-st.exited:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-st.cmd.Process.Pid, syscall.SIGKILL)
		st.sh.t.Fatalf("make run did not stop in 60 s:\n%s", st.out.String())
	}
	for _, a := range []string{st.sh.addr["127.0.0.1:7070"], st.sh.addr["127.0.0.1:5000"]} {
		waitFor(st.sh.t, "after make run stopped, "+a+" is free", func() bool { return portFree(a) }, 10*time.Second, st.out)
	}
	if pids, _ := filepath.Glob(filepath.Join(st.sh.dir, ".notarize", "run", "*.pid")); len(pids) > 0 {
		st.sh.t.Errorf("pid files left after make run stopped: %v", pids)
	}
	if st.sh.stack == st {
		st.sh.stack = nil
	}
}

// checkVerdict runs verify -o json on ref: its status is verdict, its exit
// code the README's for that verdict, in the JSON and of the process.
func (sh *quickShell) checkVerdict(ref, verdict string, exits map[string]int) {
	sh.t.Helper()
	r := sh.must(exits[verdict], "docker notarize verify -o json "+ref)
	var v struct {
		Status   string `json:"status"`
		ExitCode *int   `json:"exitCode"` // the process's, when the JSON carries it
		Digest   string `json:"digest"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		sh.t.Fatalf("verify -o json %s: %v\n%s", ref, err, r.stdout)
	}
	if v.Status != verdict || v.ExitCode != nil && *v.ExitCode != exits[verdict] || !strings.HasPrefix(v.Digest, "sha256:") {
		sh.t.Fatalf("verify -o json %s = %s, want status %s, exit code %d", ref, r.stdout, verdict, exits[verdict])
	}
}

// runDeployIf runs the README's `if docker notarize verify …; then deploy` with
// IMAGE=ref and a deploy that records its argument: it deploys only a
// trusted image.
func (sh *quickShell) runDeployIf(doc *readmeDoc, ref string, trusted bool) {
	sh.t.Helper()
	blocks := doc.section("Verify from anywhere")
	var line string
	for _, b := range blocks {
		if strings.Contains(b, "deploy") {
			line = strings.TrimSpace(b)
		}
	}
	if line == "" {
		sh.t.Fatal("README: no `if docker notarize verify …; then deploy` block")
	}
	deployed := filepath.Join(sh.dir, "deployed")
	_ = os.Remove(deployed)
	sh.must(0, fmt.Sprintf("deploy() { echo \"$1\" > %s; }; IMAGE=%s; %s", deployed, sh.repl.Replace(ref), line))
	_, err := os.Stat(deployed)
	if got := err == nil; got != trusted {
		sh.t.Fatalf("README's deploy-if-verified on %s: deployed %v, want %v", ref, got, trusted)
	}
}

// lockedBuffer is a bytes.Buffer safe for a process's output and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
