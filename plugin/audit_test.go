package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// fakeDaemon is a Docker daemon's image and container lists, as given: the
// injected fault is a daemon (DOCKER_HOST may be anyone's) that says what it
// likes. The real daemon is driven by e2e/audit_test.go.
type fakeDaemon struct {
	images     []image.Summary
	containers []container.Summary
	err        error
}

func (f *fakeDaemon) ImageList(context.Context, client.ImageListOptions) (client.ImageListResult, error) {
	return client.ImageListResult{Items: f.images}, f.err
}

func (f *fakeDaemon) ContainerList(_ context.Context, o client.ContainerListOptions) (client.ContainerListResult, error) {
	if !o.All {
		return client.ContainerListResult{}, fmt.Errorf("audit must list stopped containers too")
	}
	return client.ContainerListResult{Items: f.containers}, f.err
}

// auditRun is one audit run in-process against the harness's ledger and key
// store.
type auditRun struct {
	stdout, stderr string
	code           int
}

// audit runs runAudit with opts (root filled in) and stdin, on a terminal or not.
func (h *harness) audit(opts auditOptions, stdin string, tty bool) auditRun {
	h.t.Helper()
	return h.auditWith(h.t.Context(), nil, opts, stdin, tty)
}

// auditWith is audit under ctx, reaching the ledger through ledgerHTTP (nil: the default).
func (h *harness) auditWith(ctx context.Context, ledgerHTTP *http.Client, opts auditOptions, stdin string, tty bool) auditRun {
	h.t.Helper()
	var out, errOut bytes.Buffer
	dockerCli, err := command.NewDockerCli(
		command.WithInputStream(io.NopCloser(strings.NewReader(stdin))),
		command.WithOutputStream(&out),
		command.WithErrorStream(&errOut),
	)
	if err != nil {
		h.t.Fatal(err)
	}
	vars := map[string]string{EnvHome: h.home, EnvPassword: testPassword, EnvLedger: h.ledger.URL}
	opts.root = &rootOptions{ledgerURL: h.ledger.URL, env: env{
		lookupEnv:    func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		now:          h.now,
		keychain:     authn.NewMultiKeychain(),
		isTerminal:   func(int) bool { return tty },
		readPassword: func(int) ([]byte, error) { panic("no password prompt in tests") },
		ledgerHTTP:   ledgerHTTP,
	}}
	if opts.format == "" {
		opts.format = formatJSON
	}
	code, msg := Exit(runAudit(ctx, dockerCli, opts))
	if msg != "" {
		errOut.WriteString(msg + "\n")
	}
	return auditRun{stdout: out.String(), stderr: errOut.String(), code: code}
}

func (h *harness) mustAudit(want int, opts auditOptions) *auditOutput {
	h.t.Helper()
	r := h.audit(opts, "", false)
	if r.code != want {
		h.t.Fatalf("audit: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, want, r.stdout, r.stderr)
	}
	var o auditOutput
	if err := json.Unmarshal([]byte(r.stdout), &o); err != nil {
		h.t.Fatalf("audit output is not JSON: %v\n%s", err, r.stdout)
	}
	if o.SchemaVersion != 1 || o.ExitCode != want {
		h.t.Fatalf("schemaVersion %d exitCode %d, want 1 and %d", o.SchemaVersion, o.ExitCode, want)
	}
	return &o
}

// pushRandom pushes a random image as host/repo:tag and returns its digest.
func (h *harness) pushRandom(ref string) (v1.Image, notarize.Digest) {
	h.t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := remote.Write(mustRef(h.t, h.reg.host+"/"+ref), img, remote.WithContext(h.t.Context())); err != nil {
		h.t.Fatal(err)
	}
	return img, digestOf(h.t, img)
}

func subjectByRef(t *testing.T, o *auditOutput, ref string) auditSubject {
	t.Helper()
	for _, s := range o.Subjects {
		for _, r := range s.References {
			if r == ref {
				return s
			}
		}
	}
	t.Fatalf("no subject with reference %s in %+v", ref, o.Subjects)
	return auditSubject{}
}

// localImages is a daemon holding: app (pulled, signed by alice), other
// (pulled, never signed), built (no registry digest, tagged with app's
// repository), twice (one image pulled from two registries: two digests)
// and containers of app (running), built (exited) and of an image since
// removed.
func (h *harness) localImages() (*fakeDaemon, map[string]notarize.Digest) {
	h.t.Helper()
	host := h.reg.host
	_, otherD := h.pushRandom("other:v1")
	_, mirrorD := h.pushRandom("mirror/twice:v1")
	d := map[string]notarize.Digest{"app": digestOf(h.t, h.reg.image), "other": otherD, "mirror": mirrorD}
	d["twice"] = d["app"] // the same manifest in a second repository
	return &fakeDaemon{
		images: []image.Summary{
			{ID: "sha256:" + strings.Repeat("a", 64), RepoTags: []string{host + "/app:v1"}, RepoDigests: []string{host + "/app@" + string(d["app"])}},
			{ID: "sha256:" + strings.Repeat("b", 64), RepoTags: []string{host + "/other:v1"}, RepoDigests: []string{host + "/other@" + string(otherD)}},
			{ID: "sha256:" + strings.Repeat("c", 64), RepoTags: []string{host + "/app:latest"}},
			{ID: "sha256:" + strings.Repeat("d", 64), RepoTags: []string{host + "/mirror/twice:v1", "alias:1"},
				RepoDigests: []string{host + "/mirror/twice@" + string(mirrorD), host + "/app@" + string(d["app"])}},
		},
		containers: []container.Summary{
			{ID: strings.Repeat("1", 64), Names: []string{"/web"}, ImageID: "sha256:" + strings.Repeat("a", 64), State: container.StateRunning},
			{ID: strings.Repeat("2", 64), Names: []string{"/job"}, ImageID: "sha256:" + strings.Repeat("c", 64), State: container.StateExited},
			{ID: strings.Repeat("3", 64), Names: []string{"/orphan"}, Image: "gone:1", ImageID: "sha256:" + strings.Repeat("e", 64), State: container.StateCreated},
		},
	}, d
}

func TestAuditDaemon(t *testing.T) {
	h := newHarness(t, "alice")
	daemon, d := h.localImages()
	host := h.reg.host
	h.mustRun(0, "sign", host+"/app:v1")

	o := h.mustAudit(2, auditOptions{daemon: daemon})
	if o.Source != "daemon" || o.Verdict != "UNKNOWN" || len(o.Signers) != 1 || o.Signers[0].Name != "alice" || o.CheckpointSize == nil {
		t.Fatalf("audit: %+v", o)
	}
	if len(o.Subjects) != 6 {
		t.Fatalf("%d subjects, want 6 (app, other, built, twice×2, orphan): %+v", len(o.Subjects), o.Subjects)
	}
	app := subjectByRef(t, o, host+"/app:v1")
	if app.Verdict != "TRUSTED" || app.Digest != string(d["app"]) || len(app.Containers) != 1 || app.Containers[0].Name != "web" || app.Containers[0].State != "running" ||
		len(app.Signers) != 1 || app.Signers[0].Status != "TRUSTED" || app.Signers[0].LogIndex == nil {
		t.Errorf("app: %+v", app)
	}
	if s := subjectByRef(t, o, host+"/other:v1"); s.Verdict != "UNKNOWN" || s.Digest != string(d["other"]) || s.Signers[0].Status != "NONE" {
		t.Errorf("other: %+v", s)
	}
	// A local image named like a trusted one is not judged by its name.
	built := subjectByRef(t, o, host+"/app:latest")
	if built.Verdict != "UNVERIFIABLE" || built.Digest != "" || !strings.Contains(built.Reason, "no registry digest") || len(built.Containers) != 1 || built.Containers[0].State != "exited" {
		t.Errorf("built: %+v", built)
	}
	// One image pulled from two registries: judged per digest, the alias tag with both.
	m := subjectByRef(t, o, host+"/mirror/twice@"+string(d["mirror"]))
	a := subjectByRef(t, o, host+"/app@"+string(d["app"]))
	if m.Verdict != "UNKNOWN" || a.Verdict != "TRUSTED" || !containsString(m.References, "alias:1") || !containsString(m.References, host+"/mirror/twice:v1") || containsString(a.References, host+"/mirror/twice:v1") {
		t.Errorf("image pulled twice: %+v and %+v", m, a)
	}
	if s := subjectByRef(t, o, "gone:1"); s.Verdict != "UNVERIFIABLE" || s.Containers[0].Name != "orphan" {
		t.Errorf("container of a removed image: %+v", s)
	}

	h.mustRun(0, "untrust", host+"/other:v1")
	if o := h.mustAudit(1, auditOptions{daemon: daemon}); subjectByRef(t, o, host+"/other:v1").Verdict != "UNTRUSTED" {
		t.Errorf("after untrust: %+v", o.Subjects)
	}
	if o := h.mustAudit(1, auditOptions{daemon: daemon, signers: []string{"alice"}}); o.Verdict != "UNTRUSTED" {
		t.Errorf("--signer alice: %s", o.Verdict)
	}
}

// TestAuditLocalBuildUnderSignedTag: `docker build -t REG/app:v1` over a
// pulled, signed app:v1 moves the tag to the local image; an audit that
// judged by name would call it TRUSTED. It is UNVERIFIABLE, with its
// container, and the pulled image is judged by its digest.
func TestAuditLocalBuildUnderSignedTag(t *testing.T) {
	h := newHarness(t, "alice")
	host := h.reg.host
	signed := digestOf(t, h.reg.image)
	h.mustRun(0, "sign", host+"/app:v1")
	daemon := &fakeDaemon{
		images: []image.Summary{
			{ID: "sha256:" + strings.Repeat("a", 64), RepoTags: []string{}, RepoDigests: []string{host + "/app@" + string(signed)}},
			{ID: "sha256:" + strings.Repeat("b", 64), RepoTags: []string{host + "/app:v1"}},
		},
		containers: []container.Summary{
			{ID: strings.Repeat("1", 64), Names: []string{"/web"}, Image: host + "/app:v1", ImageID: "sha256:" + strings.Repeat("b", 64), State: container.StateRunning},
		},
	}
	o := h.mustAudit(2, auditOptions{daemon: daemon})
	built := subjectByRef(t, o, host+"/app:v1")
	if built.Verdict != statusNoDigest || built.Digest != "" || len(built.Containers) != 1 || built.Containers[0].Name != "web" {
		t.Errorf("the local build under the signed tag: %+v", built)
	}
	if pulled := subjectByRef(t, o, host+"/app@"+string(signed)); pulled.Verdict != "TRUSTED" || len(pulled.Containers) != 0 {
		t.Errorf("the pulled image: %+v", pulled)
	}
}

func TestAuditTable(t *testing.T) {
	h := newHarness(t, "alice")
	host := h.reg.host
	daemon := &fakeDaemon{
		images: []image.Summary{
			{ID: "sha256:" + strings.Repeat("a", 64), RepoTags: []string{host + "/app:v1"}, RepoDigests: []string{host + "/app@" + string(digestOf(t, h.reg.image))}},
			{ID: "sha256:" + strings.Repeat("c", 64), RepoTags: []string{"local/built:latest"}},
		},
		containers: []container.Summary{
			{ID: strings.Repeat("1", 64), Names: []string{"/web"}, ImageID: "sha256:" + strings.Repeat("a", 64), State: container.StateRunning},
			{ID: strings.Repeat("2", 64), Names: []string{"/job"}, ImageID: "sha256:" + strings.Repeat("a", 64), State: container.StateExited},
		},
	}
	h.mustRun(0, "sign", host+"/app:v1")
	r := h.audit(auditOptions{daemon: daemon, format: formatTable}, "", false)
	if r.code != 2 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	h.golden("audit.txt", r.stdout)
}

// TestAuditHostileDaemon: names from the daemon cannot drive the terminal,
// and a RepoDigest that is not a digest is an ERROR, never a verdict.
func TestAuditHostileDaemon(t *testing.T) {
	h := newHarness(t, "alice")
	daemon := &fakeDaemon{
		images: []image.Summary{
			{ID: "sha256:" + strings.Repeat("a", 64), RepoTags: []string{"evil\x1b[2J\x1b]0;owned\x07:v1\u202e"}, RepoDigests: []string{"evil@sha256:zz\x1b[31m"}},
		},
		containers: []container.Summary{
			{ID: "x", Names: []string{"/c\x1b[1A\r\u200bTRUSTED"}, ImageID: "sha256:" + strings.Repeat("a", 64), State: "running\x1b[0m"},
		},
	}
	r := h.audit(auditOptions{daemon: daemon, format: formatTable}, "", false)
	if r.code != ExitCouldNotVerify {
		t.Fatalf("exit %d, want 4\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, bad := range []string{"\x1b", "\x07", "\r", "\u202e", "\u200b"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("table output carries %q:\n%q", bad, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "ERROR") || !strings.Contains(r.stdout, "cannot be looked up") {
		t.Errorf("malformed RepoDigest not reported as ERROR:\n%s", r.stdout)
	}
	// JSON escapes what it carries.
	j := h.audit(auditOptions{daemon: daemon}, "", false)
	if strings.Contains(j.stdout, "\x1b") || !json.Valid([]byte(j.stdout)) {
		t.Errorf("JSON output carries raw escapes or is invalid:\n%q", j.stdout)
	}
}

func TestAuditDaemonUnreachable(t *testing.T) {
	h := newHarness(t, "alice")
	r := h.audit(auditOptions{daemon: &fakeDaemon{err: fmt.Errorf("connection refused")}}, "", false)
	var o auditOutput
	if r.code != ExitCouldNotVerify || json.Unmarshal([]byte(r.stdout), &o) != nil || o.Verdict != statusError || !strings.Contains(o.Error, "connection refused") {
		t.Fatalf("exit %d, output %s", r.code, r.stdout)
	}
}

func TestAuditRegistry(t *testing.T) {
	h := newHarness(t, "alice")
	host := h.reg.host
	repo := host + "/app"
	// v2 names the same manifest as v1; v3 another one.
	v2, err := name.NewTag(repo + ":v2")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Tag(v2, h.reg.image, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	_, v3 := h.pushRandom("app:v3")
	h.mustRun(0, "sign", repo+":v1")

	o := h.mustAudit(2, auditOptions{repo: repo, allTags: true})
	if o.Source != "registry" || o.Repository != repo || len(o.Subjects) != 2 {
		t.Fatalf("audit --all-tags: %+v", o)
	}
	if s := subjectByRef(t, o, repo+":v2"); s.Verdict != "TRUSTED" || !containsString(s.References, repo+":v1") {
		t.Errorf("v1/v2: %+v", s)
	}
	if s := subjectByRef(t, o, repo+":v3"); s.Verdict != "UNKNOWN" || s.Digest != string(v3) {
		t.Errorf("v3: %+v", s)
	}
	o = h.mustAudit(0, auditOptions{repo: repo, tags: "v[12]"})
	if len(o.Subjects) != 1 || o.Subjects[0].Verdict != "TRUSTED" {
		t.Errorf("--tags 'v[12]': %+v", o.Subjects)
	}
	if o := h.mustAudit(0, auditOptions{repo: repo, tags: "nothing*"}); len(o.Subjects) != 0 {
		t.Errorf("no tag matches: %+v", o.Subjects)
	}
	for _, bad := range []auditOptions{
		{repo: repo},                                // neither --all-tags nor --tags
		{repo: repo, allTags: true, tags: "v*"},     // both
		{repo: repo + ":v1", allTags: true},         // a tag, not a repository
		{repo: repo, tags: "[", format: formatJSON}, // a bad glob
		{allTags: true},                             // --all-tags without a repository
		{repo: repo, allTags: true, format: "yaml"}, // unknown format
		{repo: repo, allTags: true, key: "alice"},   // --key without --sign
		{repo: repo, allTags: true, sign: true},     // --sign without a terminal nor --yes
	} {
		if r := h.audit(bad, "", false); r.code != ExitUsage {
			t.Errorf("%+v: exit %d, want 125\n%s", bad, r.code, r.stderr)
		}
	}
}

// TestAuditLyingRegistry: a manifest that does not hash to the digest the
// registry announces is an ERROR (exit 4), never judged by the announced
// digest; tag lists without end and oversized ones fail the audit.
func TestAuditLyingRegistry(t *testing.T) {
	h := newHarness(t, "alice")
	h.mustRun(0, "sign", h.reg.host+"/app:v1")
	signed := string(digestOf(t, h.reg.image))
	var mode string
	lying := newTestRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case mode == "digest" && strings.Contains(r.URL.Path, "/manifests/"):
				rec := headerRewriter{ResponseWriter: w, digest: signed}
				next.ServeHTTP(rec, r)
				return
			case mode == "endless" && strings.HasSuffix(r.URL.Path, "/tags/list"):
				w.Header().Set("Link", `</v2/evil/tags/list?n=1&last=x>; rel="next"`)
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"name":"evil","tags":[]}`)
				return
			case mode == "many" && strings.HasSuffix(r.URL.Path, "/tags/list"):
				w.Header().Set("Content-Type", "application/json")
				tags := make([]string, maxAuditTags+1)
				for i := range tags {
					tags[i] = fmt.Sprintf("t%d", i)
				}
				b, _ := json.Marshal(map[string]any{"name": "evil", "tags": tags})
				w.Write(b)
				return
			case mode == "badtag" && strings.HasSuffix(r.URL.Path, "/tags/list"):
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"name":"evil","tags":["v1","../../app/manifests/v1"]}`)
				return
			case mode == "badtag" && strings.Contains(r.URL.Path, ".."):
				t.Errorf("a request for a listed tag that is not a tag: %s", r.URL.Path)
			case mode == "huge" && strings.HasSuffix(r.URL.Path, "/tags/list"):
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"name":"evil","tags":["`+strings.Repeat("a", maxTagPageSize)+`"]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	// The lying registry holds other content under evil:v1 and says it is the signed digest.
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, lying.host+"/evil:v1"), img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	mode = "digest"
	o := h.mustAudit(ExitCouldNotVerify, auditOptions{repo: lying.host + "/evil", allTags: true})
	if len(o.Subjects) != 1 || o.Subjects[0].Verdict != statusError || o.Subjects[0].Digest != "" || !strings.Contains(o.Subjects[0].Reason, "digest mismatch") {
		t.Fatalf("lying Docker-Content-Digest: %+v", o.Subjects)
	}
	// A listed "tag" that is a path is not requested: ERROR, the real tag judged.
	mode = "badtag"
	o = h.mustAudit(ExitCouldNotVerify, auditOptions{repo: lying.host + "/evil", allTags: true})
	if bad := subjectByRef(t, o, lying.host+"/evil:../../app/manifests/v1"); bad.Verdict != statusError || bad.Digest != "" || !strings.Contains(bad.Reason, "not a valid tag") {
		t.Fatalf("a tag that is a path: %+v", bad)
	}
	if v1 := subjectByRef(t, o, lying.host+"/evil:v1"); v1.Verdict != "UNKNOWN" {
		t.Fatalf("evil:v1: %+v", v1)
	}
	mode = "endless"
	start := time.Now()
	if o := h.mustAudit(ExitCouldNotVerify, auditOptions{repo: lying.host + "/evil", allTags: true}); !strings.Contains(o.Error, ErrTooManyTags.Error()) {
		t.Fatalf("endless tag pages: %+v", o)
	}
	t.Logf("endless tag list cut off after %v", time.Since(start))
	mode = "many"
	if o := h.mustAudit(ExitCouldNotVerify, auditOptions{repo: lying.host + "/evil", allTags: true}); !strings.Contains(o.Error, ErrTooManyTags.Error()) {
		t.Fatalf("too many tags: %+v", o)
	}
	mode = "huge"
	if o := h.mustAudit(ExitCouldNotVerify, auditOptions{repo: lying.host + "/evil", allTags: true}); !strings.Contains(o.Error, errBodyTooLarge.Error()) {
		t.Fatalf("huge tag page: %+v", o)
	}
}

func TestAuditSign(t *testing.T) {
	h := newHarness(t, "alice")
	daemon, d := h.localImages()
	host := h.reg.host
	h.mustRun(0, "sign", host+"/app:v1")
	h.mustRun(0, "untrust", host+"/other:v1") // a revocation --sign must not undo
	// A digest the registry does not serve: nothing that was fetched and hashed here.
	missing := notarize.DigestOf([]byte("not in the registry"))
	daemon.images = append(daemon.images, image.Summary{ID: "sha256:" + strings.Repeat("f", 64), RepoTags: []string{host + "/ghost:v1"}, RepoDigests: []string{host + "/ghost@" + string(missing)}})

	t.Run("declined on a terminal", func(t *testing.T) {
		r := h.audit(auditOptions{daemon: daemon, sign: true}, "n\n", true)
		if r.code != 1 || !strings.Contains(r.stderr, "Sign 2 digest(s) as TRUSTED with key alice") || !strings.Contains(r.stderr, "nothing was signed") {
			t.Fatalf("exit %d\nstderr:\n%s", r.code, r.stderr)
		}
		for _, want := range []string{string(d["app"]), string(d["other"])} { // trusted, untrusted: not candidates
			if strings.Contains(r.stderr, want) {
				t.Errorf("%s offered for signing:\n%s", want, r.stderr)
			}
		}
	})
	t.Run("yes", func(t *testing.T) {
		r := h.audit(auditOptions{daemon: daemon, sign: true, yes: true}, "", false)
		var o auditOutput
		if err := json.Unmarshal([]byte(r.stdout), &o); err != nil {
			t.Fatal(err, r.stdout)
		}
		var signedDigests []string
		for _, s := range o.Signed {
			signedDigests = append(signedDigests, s.Digest)
		}
		// mirror is signed; ghost cannot be fetched, so it is not; other stays UNTRUSTED.
		if len(o.Signed) != 1 || o.Signed[0].Digest != string(d["mirror"]) || o.Signed[0].Signer != "alice" {
			t.Fatalf("signed %v, want only %s\nstderr:\n%s", signedDigests, d["mirror"], r.stderr)
		}
		if !strings.Contains(r.stderr, "could not sign "+string(missing)) {
			t.Errorf("the unsignable digest is not reported:\n%s", r.stderr)
		}
		if s := subjectByRef(t, &o, host+"/mirror/twice:v1"); s.Verdict != "TRUSTED" {
			t.Errorf("after --sign: %+v", s)
		}
		if s := subjectByRef(t, &o, host+"/other:v1"); s.Verdict != "UNTRUSTED" {
			t.Errorf("--sign undid a revocation: %+v", s)
		}
		if r.code != 1 || o.Verdict != "UNTRUSTED" {
			t.Errorf("exit %d verdict %s, want 1 UNTRUSTED", r.code, o.Verdict)
		}
	})
}

// TestAuditSignInterrupted: Ctrl-C while signing stops the signing (no
// further submission), says what was recorded, and exits 130 — not 4 after
// trying every remaining digest.
func TestAuditSignInterrupted(t *testing.T) {
	h := newHarness(t, "alice")
	for i := range 10 {
		h.pushRandom(fmt.Sprintf("many:t%d", i))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var submits atomic.Int32
	ledgerHTTP := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			submits.Add(1)
			cancel() // Ctrl-C once the first statement is submitted
		}
		return resp, err
	})}
	r := h.auditWith(ctx, ledgerHTTP, auditOptions{repo: h.reg.host + "/many", allTags: true, sign: true, yes: true, jobs: 1, format: formatTable}, "", false)
	if r.code != ExitInterrupted || !strings.Contains(r.stderr, "interrupted") {
		t.Fatalf("exit %d, want 130\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := submits.Load(); n != 1 {
		t.Errorf("%d statements submitted after the interrupt, want 1", n)
	}
	if strings.Count(r.stderr, "could not sign") > 0 {
		t.Errorf("every remaining digest was tried:\n%s", r.stderr)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestAuditExitCodes(t *testing.T) {
	for _, tc := range []struct {
		verdicts []string
		want     int
	}{
		{nil, 0},
		{[]string{"TRUSTED"}, 0},
		{[]string{"TRUSTED", "UNKNOWN"}, 2},
		{[]string{"UNVERIFIABLE", "TRUSTED"}, 2},
		{[]string{"UNKNOWN", "UNSUPPORTED"}, 3},
		{[]string{"UNSUPPORTED", "ERROR"}, 4},
		{[]string{"ERROR", "UNTRUSTED", "UNKNOWN"}, 1},
		{[]string{"TRUSTED", ""}, 4}, // never judged: fail closed
	} {
		o := &auditOutput{}
		for _, v := range tc.verdicts {
			o.Subjects = append(o.Subjects, auditSubject{Verdict: v})
		}
		o.finish(0)
		if o.ExitCode != tc.want {
			t.Errorf("%v: exit %d (%s), want %d", tc.verdicts, o.ExitCode, o.Verdict, tc.want)
		}
	}
}

func TestRenderProgress(t *testing.T) {
	for _, tc := range []struct {
		done, total int
		want        string
	}{
		{0, 40, "\r[" + strings.Repeat(" ", 30) + "] 0/40 judging"},
		{12, 40, "\r[" + strings.Repeat("=", 9) + strings.Repeat(" ", 21) + "] 12/40 judging"},
		{50, 40, "\r[" + strings.Repeat("=", 30) + "] 40/40 judging"},
	} {
		if got := renderProgress(tc.done, tc.total, "judging"); got != tc.want {
			t.Errorf("renderProgress(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}

func TestProgress(t *testing.T) {
	t.Run("terminal, after a second", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var b lockedWriter
			p := newProgress(&b, true)
			p.start("judging", 4)
			p.add(1)
			time.Sleep(900 * time.Millisecond)
			synctest.Wait()
			if b.String() != "" {
				t.Fatalf("bar drawn before a second: %q", b.String())
			}
			time.Sleep(200 * time.Millisecond)
			synctest.Wait()
			if !strings.Contains(b.String(), "] 1/4 judging") {
				t.Fatalf("no bar after a second: %q", b.String())
			}
			p.add(3)
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			p.finish()
			if s := b.String(); !strings.Contains(s, "4/4") || !strings.HasSuffix(s, "\r") {
				t.Fatalf("bar not finished and cleared: %q", s)
			}
		})
	})
	t.Run("not a terminal", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var b lockedWriter
			p := newProgress(&b, false)
			p.start("judging", 4)
			time.Sleep(3 * time.Second)
			synctest.Wait()
			p.finish()
			if b.String() != "" {
				t.Fatalf("progress on a non-terminal: %q", b.String())
			}
		})
	})
}

// lockedWriter is a bytes.Buffer safe for the progress goroutine and the test.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
