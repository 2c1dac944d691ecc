package plugin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// lsAssets signs n files with the harness's only key (alice) and untrusts
// every third; it returns the files' digests, sorted, and which are revoked.
func lsAssets(t *testing.T, h *harness, n int) ([]notarize.Digest, map[notarize.Digest]bool) {
	t.Helper()
	dir := t.TempDir()
	var ds []notarize.Digest
	revoked := map[notarize.Digest]bool{}
	for i := range n {
		b := fmt.Appendf(nil, "asset %d of %s", i, t.Name())
		p := filepath.Join(dir, fmt.Sprintf("asset%d.bin", i))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		h.mustRun(0, "sign", "--key", "alice", "file:"+p)
		d := notarize.DigestOf(b)
		if i%3 == 0 {
			h.mustRun(0, "untrust", "--key", "alice", "file:"+p)
			revoked[d] = true
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds, revoked
}

// lsFront is a front before the harness's real ledger: it passes every
// request through, and answers the key lookup itself from the ledger's
// proven current lookups of the digests it knows, perPage digests a page,
// after rewrite (a lie) when set.
type lsFront struct {
	t       *testing.T
	ledger  string
	digests []notarize.Digest
	perPage int
	mu      sync.Mutex
	rewrite func(page int, r *api.KeyDigestsResponse)
	pages   int
}

// set installs a rewrite and resets the page count.
func (f *lsFront) set(rewrite func(page int, r *api.KeyDigestsResponse)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rewrite, f.pages = rewrite, 0
}

func (f *lsFront) pageCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pages
}

func (f *lsFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, api.PathKeys) {
		u, _ := url.Parse(f.ledger)
		httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, r)
		return
	}
	keyID := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, api.PathKeys), api.PathKeyDigestsSuffix)
	cursor := notarize.Digest(r.URL.Query().Get(api.QueryCursor))
	resp := api.KeyDigestsResponse{KeyID: keyID, Entries: []api.LookupEntry{}}
	for _, d := range f.digests {
		if cursor != "" && d <= cursor {
			continue
		}
		if len(resp.Entries) == f.perPage {
			resp.Next = f.last(resp.Entries)
			break
		}
		cur := f.current(d, keyID)
		resp.Checkpoint = cur.Checkpoint
		resp.Entries = append(resp.Entries, cur.Entries...)
	}
	f.mu.Lock()
	if f.rewrite != nil {
		f.rewrite(f.pages, &resp)
	}
	f.pages++
	f.mu.Unlock()
	w.Header().Set("Content-Type", api.MediaTypeJSON)
	_ = json.NewEncoder(w).Encode(resp)
}

// current asks the real ledger for keyID's proven current statement about d.
func (f *lsFront) current(d notarize.Digest, keyID string) api.LookupResponse {
	resp, err := http.Get(f.ledger + api.PathDigests + d.String() + api.PathCurrentSuffix + "?" + api.QueryKeyID + "=" + keyID)
	if err != nil {
		f.t.Error(err)
		return api.LookupResponse{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lr api.LookupResponse
	if err := json.Unmarshal(b, &lr); err != nil || len(lr.Entries) != 1 {
		f.t.Errorf("current lookup of %s: %v %s", d, err, b)
	}
	return lr
}

func (f *lsFront) last(es []api.LookupEntry) string {
	e, err := notarize.ParseEntry(es[len(es)-1].Entry)
	if err != nil {
		f.t.Fatal(err)
	}
	v, err := e.VerifyLogged()
	if err != nil {
		f.t.Fatal(err)
	}
	return v.Statement.Digest().String()
}

func decodeLs(t *testing.T, out string) lsOutput {
	t.Helper()
	var o lsOutput
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("ls -o json printed %q: %v", out, err)
	}
	return o
}

// checkLs checks that o lists exactly ds for one signer, with their
// statuses, and the tallies.
func checkLs(t *testing.T, o lsOutput, name string, ds []notarize.Digest, revoked map[notarize.Digest]bool) {
	t.Helper()
	if len(o.Signers) != 1 || o.Signers[0].Name != name {
		t.Fatalf("signers %+v, want %s alone", o.Signers, name)
	}
	s := o.Signers[0]
	if len(s.Statements) != len(ds) {
		t.Fatalf("%d statements, want %d", len(s.Statements), len(ds))
	}
	nrev := 0
	for i, st := range s.Statements {
		want := "TRUSTED"
		if revoked[ds[i]] {
			want = "UNTRUSTED"
			nrev++
		}
		if st.Digest != string(ds[i]) || st.Status != want || st.KeyID != s.KeyIDs[0] || st.LogIndex == 0 {
			t.Fatalf("statement %d = %+v, want %s %s", i, st, ds[i], want)
		}
	}
	want := lsCounts{Assets: len(ds), Trusted: len(ds) - nrev, Untrusted: nrev, Revoked: nrev}
	if s.lsCounts != want || o.Team != want || o.Complete || o.CheckpointSize == 0 || o.SchemaVersion != lsSchemaVersion {
		t.Fatalf("counts %+v team %+v (complete %v, size %d), want %+v", s.lsCounts, o.Team, o.Complete, o.CheckpointSize, want)
	}
}

// TestLsThroughFront: pages served by a front before the real ledger, each
// entry proven by the ledger, are listed in digest order with the key's
// current status and tallied; a front that lies about them in any way makes
// ls exit 4 (could not verify) and print no listing.
func TestLsThroughFront(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	ds, revoked := lsAssets(t, h, 7)
	front := &lsFront{t: t, ledger: h.ledger.URL, digests: ds, perPage: 2}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	env := map[string]string{EnvLedger: srv.URL}

	out, errOut, code := h.runWithEnv(env, "ls", "--signer", "alice", "-o", "json")
	if code != 0 {
		t.Fatalf("ls: exit %d\n%s\n%s", code, out, errOut)
	}
	checkLs(t, decodeLs(t, out), "alice", ds, revoked)
	if n := front.pageCount(); n != 4 {
		t.Fatalf("%d pages asked, want 4 (7 digests, 2 a page)", n)
	}
	out, errOut, code = h.runWithEnv(env, "ls", "--signer", "alice")
	nrev := len(revoked)
	summary := fmt.Sprintf("7 assets signed by alice: %d trusted, %d revoked (%d untrusted, 0 unsupported)", 7-nrev, nrev, nrev)
	if code != 0 || !strings.Contains(out, summary) || strings.Count(out, "sha256:") != 7 || !strings.Contains(errOut, "not proven") {
		t.Fatalf("ls table: exit %d, want %q\n%s\n%s", code, summary, out, errOut)
	}

	bob := newHarnessKeyID(t, "bob")
	for _, tc := range []struct {
		name string
		lie  func(page int, r *api.KeyDigestsResponse)
	}{
		{"a digest repeated on the next page", func(page int, r *api.KeyDigestsResponse) {
			if page == 1 {
				r.Entries = append([]api.LookupEntry{front.current(ds[1], r.KeyID).Entries[0]}, r.Entries...)
			}
		}},
		{"digests reordered on a page", func(page int, r *api.KeyDigestsResponse) {
			if page == 1 {
				r.Entries[0], r.Entries[1] = r.Entries[1], r.Entries[0]
			}
		}},
		{"a page going back", func(page int, r *api.KeyDigestsResponse) {
			if page == 2 {
				r.Entries[0] = front.current(ds[0], r.KeyID).Entries[0]
			}
		}},
		{"the answer about another key", func(page int, r *api.KeyDigestsResponse) {
			r.KeyID = bob
		}},
		{"an entry that is not in the log", func(page int, r *api.KeyDigestsResponse) {
			if page == 1 {
				r.Entries[0].Index++
			}
		}},
		{"a next cursor behind the page", func(page int, r *api.KeyDigestsResponse) {
			if r.Next != "" {
				r.Next = string(ds[0])
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			front.set(tc.lie)
			defer front.set(nil)
			out, errOut, code := h.runWithEnv(env, "ls", "--signer", "alice", "-o", "json")
			if code != ExitCouldNotVerify {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, ExitCouldNotVerify, out, errOut)
			}
			o := decodeLs(t, out)
			if o.Error == "" || len(o.Signers) != 0 {
				t.Fatalf("a lying front's listing was printed: %+v", o)
			}
		})
	}
}

// newHarnessKeyID returns the key ID of a test key in testdata/keys.
func newHarnessKeyID(t *testing.T, name string) string {
	t.Helper()
	k, err := NewKeyStore("testdata").ResolvePublic("testdata/keys/" + name + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return k.KeyID
}

// TestLsUsageErrors: bad flags, an unknown signer, a bad policy and an
// empty key store are usage errors (125), found before any ledger request.
func TestLsUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests++; http.NotFound(w, r) }))
	t.Cleanup(srv.Close)
	badPolicy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(badPolicy, []byte("signers: {release: {keys: [missing.pub]}}\nrules: [{match: '**', require: [release]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"ls", "--status", "revoked"}, nil, "--status"},
		{[]string{"ls", "-o", "yaml"}, nil, "--output"},
		{[]string{"ls", "--signer", "carol"}, nil, "carol"},
		{[]string{"ls", "--signer", "alice", "--policy", badPolicy}, nil, "choose one"},
		{[]string{"ls", "--policy", badPolicy}, nil, "missing.pub"},
		{[]string{"ls", "--policy", filepath.Join(empty, "none.yaml")}, nil, "none.yaml"},
		{[]string{"ls"}, map[string]string{EnvHome: empty}, "no signers"},
		{[]string{"ls", "extra"}, nil, "ls"},
	} {
		env := map[string]string{EnvLedger: srv.URL}
		for k, v := range tc.env {
			env[k] = v
		}
		out, errOut, code := h.runWithEnv(env, tc.args...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d mentioning %q\n%s", tc.args, code, errOut, ExitUsage, tc.want, out)
		}
	}
	if requests != 0 {
		t.Fatalf("%d ledger requests for usage errors", requests)
	}
}

// TestLsPolicyTeam: with --policy, every signer of the policy is listed
// with all its keys, and the team line counts the distinct assets.
func TestLsPolicyTeam(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	ds, revoked := lsAssets(t, h, 4)
	front := &lsFront{t: t, ledger: h.ledger.URL, digests: ds, perPage: 3}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	pub, err := os.ReadFile("testdata/keys/alice.pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("signers:\n  release: {keys: [release.pub]}\nrules:\n  - {match: '**', require: [release]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: srv.URL}, "ls", "--policy", pol, "-o", "json")
	if code != 0 {
		t.Fatalf("ls --policy: exit %d\n%s\n%s", code, out, errOut)
	}
	checkLs(t, decodeLs(t, out), "release", ds, revoked)
}

// TestLsAgainstLedger: against a real ledger's key lookup, ls lists every
// asset the key signed with its current status (a later untrust counts),
// filters by status, and shows no other key's assets.
func TestLsAgainstLedger(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	ds, revoked := lsAssets(t, h, 5)
	dir := t.TempDir()
	p := filepath.Join(dir, "bob.bin")
	if err := os.WriteFile(p, []byte("bob's asset"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.mustRun(0, "sign", "--key", "bob", "file:"+p)

	checkLs(t, decodeLs(t, h.mustRun(0, "ls", "--signer", "alice", "-o", "json")), "alice", ds, revoked)
	o := decodeLs(t, h.mustRun(0, "ls", "--signer", "alice", "--status", "UNTRUSTED", "-o", "json"))
	if o.Status != "UNTRUSTED" || len(o.Signers) != 1 || len(o.Signers[0].Statements) != len(revoked) || o.Signers[0].Untrusted != len(revoked) {
		t.Fatalf("ls --status untrusted: %+v", o)
	}
	for _, st := range o.Signers[0].Statements {
		if !revoked[notarize.Digest(st.Digest)] || st.Status != "UNTRUSTED" {
			t.Fatalf("ls --status untrusted listed %+v", st)
		}
	}
	o = decodeLs(t, h.mustRun(0, "ls", "-o", "json"))
	if len(o.Signers) != 2 || o.Team.Assets != len(ds)+1 || o.Team.Revoked != len(revoked) {
		t.Fatalf("ls of the whole store: %+v", o)
	}
}

// history asks the real ledger for every statement of keyID about d, each
// with its proof.
func (f *lsFront) history(d notarize.Digest, keyID string) api.LookupResponse {
	resp, err := http.Get(f.ledger + api.PathDigests + d.String() + "?" + api.QueryKeyID + "=" + keyID)
	if err != nil {
		f.t.Error(err)
		return api.LookupResponse{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lr api.LookupResponse
	if err := json.Unmarshal(b, &lr); err != nil {
		f.t.Errorf("lookup of %s: %v %s", d, err, b)
	}
	return lr
}

// TestLsProveRefusesSupersededStatement: a front that lists the key's
// older "trusted" statement about an asset it has since untrusted passes
// the key lookup's checks (the statement is logged and signed by the key):
// ls alone shows it TRUSTED. With --prove, each listed statement is
// checked against a current lookup, proven complete by the ledger's
// verifiable map, and ls exits 4 naming both entries.
func TestLsProveRefusesSupersededStatement(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	ds, revoked := lsAssets(t, h, 3) // the first is untrusted after being trusted
	front := &lsFront{t: t, ledger: h.ledger.URL, digests: ds, perPage: 10}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	env := map[string]string{EnvLedger: srv.URL}

	// Honest pages: --prove agrees with every listed statement.
	out, errOut, code := h.runWithEnv(env, "ls", "--signer", "alice", "--prove", "-o", "json")
	if code != 0 {
		t.Fatalf("ls --prove of honest pages: exit %d\n%s\n%s", code, out, errOut)
	}
	checkLs(t, decodeLs(t, out), "alice", ds, revoked)

	var stale notarize.Digest
	for d := range revoked {
		stale = d
	}
	front.set(func(_ int, r *api.KeyDigestsResponse) {
		for i := range r.Entries {
			e, _ := notarize.ParseEntry(r.Entries[i].Entry)
			if v, err := e.VerifyLogged(); err == nil && v.Statement.Digest() == stale {
				hist := front.history(stale, r.KeyID)
				r.Entries[i] = hist.Entries[0] // the older "trusted" statement
				r.Checkpoint = hist.Checkpoint
			}
		}
	})
	out, errOut, code = h.runWithEnv(env, "ls", "--signer", "alice", "-o", "json")
	if code != 0 || !strings.Contains(out, string(stale)) {
		t.Fatalf("ls without --prove: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, st := range decodeLs(t, out).Signers[0].Statements {
		if st.Digest == string(stale) && st.Status != "TRUSTED" {
			t.Fatalf("the lie did not take: %+v", st)
		}
	}
	out, errOut, code = h.runWithEnv(env, "ls", "--signer", "alice", "--prove", "-o", "json")
	o := decodeLs(t, out)
	if code != ExitCouldNotVerify || !strings.Contains(o.Error, "proven current statement") || len(o.Signers) != 0 {
		t.Fatalf("ls --prove of a superseded statement: exit %d, %+v\n%s", code, o, errOut)
	}
}
