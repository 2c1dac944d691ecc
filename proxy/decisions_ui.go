package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/ui"
)

// Dashboard bounds: what one page shows.
const (
	uiRefusals     = 20
	uiRepos        = 15
	uiImages       = 15
	uiRevocations  = 15
	uiDigestRecent = 20
	// uiOtherStatements bounds the statements shown by keys outside the
	// policy (anyone may log statements about any digest).
	uiOtherStatements = 50
)

var renderer = sync.OnceValues(ui.New)

// dashboard serves the read-only dashboard under /ui/: the overview at
// /ui/, a digest's page at /ui/digest/DIGEST, the data of the overview as
// JSON at /ui/decisions.json, and the embedded assets at /ui/static/.
// routes() registers it inside the authenticated router.
func (s *Server) dashboard() http.Handler {
	static := ui.Static("/ui/static/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == "/ui":
			http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
		case p == "/ui/":
			s.serveOverview(w, r)
		case p == "/ui/decisions.json":
			s.serveDecisionsJSON(w, r)
		case strings.HasPrefix(p, "/ui/digest/"):
			s.serveDigestPage(w, r, strings.TrimPrefix(p, "/ui/digest/"))
		case strings.HasPrefix(p, "/ui/static/"):
			static.ServeHTTP(w, r)
		default:
			ui.SetHeaders(w.Header())
			http.NotFound(w, r)
		}
	})
}

func uiError(w http.ResponseWriter, msg string, code int) {
	ui.SetHeaders(w.Header())
	http.Error(w, msg, code)
}

func (s *Server) serveOverview(w http.ResponseWriter, r *http.Request) {
	rd, err := renderer()
	if err != nil {
		uiError(w, err.Error(), http.StatusInternalServerError)
		return
	}
	now := time.Now().UTC()
	f, ferr := ParseDecisionFilter(r.URL.Query())
	page := ui.Overview{Now: now}
	if ferr != nil {
		page.Error = ferr.Error()
		f = DecisionFilter{Range: DefaultRange}
	}
	f.sees = s.viewer(r)
	s.fillOverview(&page, f, now)
	code := http.StatusOK
	if ferr != nil {
		code = http.StatusBadRequest
	}
	rd.Overview(w, code, page)
}

// fillOverview gathers the overview's numbers: each from a precomputed
// aggregate or a bounded list, never from all the decisions.
func (s *Server) fillOverview(page *ui.Overview, f DecisionFilter, now time.Time) {
	pol := s.policy.Load()
	page.Filter = s.filterForm(f, pol)
	bars, sum := s.stats.series(f, now)
	_, width, _ := rangeOf(f.Range)
	layout := "15:04"
	if width >= 24*time.Hour {
		layout = "Jan 2"
	} else if width >= 6*time.Hour {
		layout = "Jan 2 15:04"
	}
	for _, b := range bars {
		page.Bars = append(page.Bars, ui.Bar{Label: b.Start.UTC().Format(layout), Allowed: b.Counts[0], Refused: b.Counts[1], Audit: b.Counts[2]})
	}
	page.Chart = ui.NewChart(page.Bars)
	page.Totals = ui.Bar{Allowed: sum[0], Refused: sum[1], Audit: sum[2]}
	for _, d := range s.stats.recentMatching(f, true, uiRefusals, now) {
		page.Refusals = append(page.Refusals, ui.Refusal{Time: d.Time, Target: d.Target(), Reference: d.Reference, Digest: string(d.Digest),
			Verdict: d.Verdict, Reason: d.Reason, Mode: d.Mode, SignCommand: s.signCommand(d.Target(), d.Digest)})
	}
	for _, rs := range s.stats.reposMatching(f, uiRepos) {
		page.Repos = append(page.Repos, ui.Repo{Upstream: rs.Upstream, Repo: rs.Repo, Allowed: rs.Allowed, Refused: rs.Denied, Audit: rs.AuditOnly,
			LastVerdict: rs.LastVerdict, LastDigest: string(rs.LastDigest), LastSeen: rs.LastSeen})
	}
	for _, ds := range s.stats.topDigestsNow(uiImages, now, f.sees) {
		page.Images = append(page.Images, uiImage(ds))
	}
	page.Signers, page.Revocations = s.signerPanels(pol, f.sees)
	page.Replica = s.replicaHealth(now)
	page.Witnesses = s.witnessHealth(now)
	tracked, repos, untracked, dropped, werr := s.stats.recordHealth()
	if f.sees != nil { // proxy-wide numbers are not for a viewer restricted by the access rules
		tracked, repos, untracked, dropped = len(page.Images), len(page.Repos), 0, 0
	}
	page.Record = ui.Record{Digests: tracked, Repos: repos, Untracked: untracked, Dropped: dropped, WriteError: werr,
		Retention: "30 days, at most " + itoa(s.stats.max) + " digests and " + itoa(maxTrackedRepos) + " repositories"}
}

func uiImage(ds DigestStats) ui.Image {
	return ui.Image{Digest: string(ds.Digest), Targets: ds.Targets, Allowed: ds.Allowed, Refused: ds.Denied, Audit: ds.AuditOnly,
		LastVerdict: ds.LastVerdict, LastSigner: ds.LastSigner, LastSeen: ds.LastSeen}
}

// signCommand is what a signer runs to trust digest d pulled as target
// ("UPSTREAM/REPO"): `docker notarize sign` resolves the reference at the
// upstream registry itself (it hashes the manifest), so the command names
// the upstream's host ("docker.io" for Docker Hub), not the proxy's name
// for it.
func (s *Server) signCommand(target string, d notarize.Digest) string {
	ref := target
	if name, repo, ok := strings.Cut(target, "/"); ok {
		if u := s.router.byName[name]; u != nil {
			host := u.Host()
			if u.IsDockerHub() {
				host = "docker.io"
			}
			ref = host + "/" + repo
		}
	}
	return "docker notarize sign " + ref + "@" + string(d)
}

func (s *Server) filterForm(f DecisionFilter, pol *notarize.Evaluator) ui.Filter {
	form := ui.Filter{Upstream: f.Upstream, Repo: f.Repo, Verdict: f.Verdict, Signer: f.Signer, Outcome: string(f.Outcome), Range: f.Range,
		Verdicts: Verdicts}
	for _, u := range s.ups {
		form.Upstreams = append(form.Upstreams, u.Name())
	}
	for _, o := range Outcomes {
		form.Outcomes = append(form.Outcomes, string(o))
	}
	for _, r := range Ranges {
		form.Ranges = append(form.Ranges, r.Name)
	}
	form.Signers = signerNames(pol)
	return form
}

func signerNames(pol *notarize.Evaluator) []string {
	names := make([]string, 0, len(pol.Policy().Signers))
	for n := range pol.Policy().Signers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// signerPanels returns the policy's signers with their tallies and the
// recent revocations, from the trust source (the replica). A viewer
// restricted by the access rules (sees) is shown only the revocations of
// digests pulled through a repository it may see.
func (s *Server) signerPanels(pol *notarize.Evaluator, sees func(string) bool) ([]ui.Signer, []ui.Revocation) {
	var signers []ui.Signer
	for _, name := range signerNames(pol) {
		sg := ui.Signer{Name: name, Email: pol.Policy().Signers[name].Email, Keys: pol.AcceptedKeys(notarize.Rule{Require: []string{name}})}
		if ts, err := s.trust.Tallies(sg.Keys); err == nil {
			for _, t := range ts {
				sg.Trusted += t.Trusted
				sg.Untrusted += t.Untrusted
				sg.Unsupported += t.Unsupported
			}
		}
		signers = append(signers, sg)
	}
	var keys []string
	for _, sg := range signers {
		keys = append(keys, sg.Keys...)
	}
	var revs []ui.Revocation
	rs, _ := s.trust.Revocations(keys, uiRevocations)
	for _, r := range rs {
		if sees != nil {
			if _, ok := s.stats.digest(r.Digest, sees); !ok {
				continue
			}
		}
		revs = append(revs, ui.Revocation{Index: r.Index, Time: r.Timestamp, Digest: string(r.Digest), Signer: pol.SignerName(r.KeyID), Status: strings.ToUpper(string(r.Status))})
	}
	return signers, revs
}

func (s *Server) replicaHealth(now time.Time) ui.Replica {
	st := s.trust.Status()
	h := ui.Replica{Available: true, Size: st.Size, Records: st.Records, BadEntries: st.BadEntries, VerifiedAt: st.VerifiedAt, LastError: st.LastError}
	if st.VerifiedAt.IsZero() {
		h.Age = "never"
	} else {
		h.Age = now.Sub(st.VerifiedAt).Round(time.Second).String() + " ago"
	}
	if err := s.trust.Fresh(); err != nil {
		h.Problem = err.Error()
	} else {
		h.Fresh = true
	}
	return h
}

// witnessHealth is the witnesses panel: the replica's witness policy, its
// quorum's age against the maximum staleness, and each witness's
// cosignature on the last verified checkpoint.
func (s *Server) witnessHealth(now time.Time) ui.Witnesses {
	wh := s.trust.Witnesses()
	if !wh.Policy {
		return ui.Witnesses{}
	}
	out := ui.Witnesses{Policy: true, Quorum: fmt.Sprintf("%d of %d", wh.QuorumN, wh.QuorumOf), CheckpointSize: wh.CheckpointSize,
		QuorumAt: wh.QuorumAt, MaxStaleness: wh.MaxStaleness.String(),
		Fresh: !wh.QuorumAt.IsZero() && now.Sub(wh.QuorumAt) <= wh.MaxStaleness}
	for _, w := range wh.Witnesses {
		st := "missing"
		switch {
		case w.Forged:
			st = "forged"
		case w.CosignedAt.IsZero():
		case now.Sub(w.CosignedAt) > wh.MaxStaleness:
			st = "old"
		default:
			st = "cosigned"
		}
		out.List = append(out.List, ui.Witness{Name: w.Name, CosignedAt: w.CosignedAt, State: st})
	}
	return out
}

func (s *Server) serveDigestPage(w http.ResponseWriter, r *http.Request, raw string) {
	rd, err := renderer()
	if err != nil {
		uiError(w, err.Error(), http.StatusInternalServerError)
		return
	}
	d, err := notarize.ParseDigest(raw)
	if err != nil {
		uiError(w, "not a digest: "+err.Error(), http.StatusBadRequest)
		return
	}
	pol := s.policy.Load()
	sees := s.viewer(r)
	page := ui.DigestPage{Now: time.Now().UTC(), Digest: string(d)}
	ds, known := s.stats.digest(d, sees)
	if !known && sees != nil {
		// Restricted by the access rules: only digests pulled through a
		// repository the viewer may see have a page; the answer is the
		// same whether the digest exists or not, and does not repeat it.
		uiError(w, "no such digest page", http.StatusNotFound)
		return
	}
	if known {
		page.Known, page.Image = true, uiImage(ds)
		if len(ds.Targets) > 0 && ds.LastVerdict != notarize.Trusted.String() {
			page.SignCommand = s.signCommand(ds.Targets[0], d)
		}
	}
	inPolicy := map[string]bool{}
	for _, name := range signerNames(pol) {
		for _, id := range pol.AcceptedKeys(notarize.Rule{Require: []string{name}}) {
			inPolicy[id] = true
		}
	}
	signers := pol.Policy().Signers
	recs, omitted, err := s.trust.History(d, func(id string) bool { return inPolicy[id] }, uiOtherStatements)
	if err != nil {
		page.HistoryErr = err.Error()
	}
	page.Omitted = omitted
	for _, rec := range recs {
		p := rec.Statement.Predicate
		// A policy key is shown by the policy's name and email, which the
		// policy's author vouches for, never by what its statement
		// claims; a key outside it by its ID, with its claim marked.
		st := ui.Statement{Index: rec.Index, Signer: pol.SignerName(rec.KeyID), KeyID: rec.KeyID,
			Status: strings.ToUpper(string(p.Status)), Timestamp: p.Timestamp, Kind: p.Kind, InPolicy: inPolicy[rec.KeyID]}
		if st.InPolicy {
			st.Email = signers[st.Signer].Email
		} else {
			st.Claim = claimText(p.Name, p.Email)
		}
		page.History = append(page.History, st)
	}
	for _, x := range s.stats.recentOf(d, uiDigestRecent, sees) {
		page.Decisions = append(page.Decisions, ui.Decision{Time: x.Time, Target: x.Target(), Reference: x.Reference,
			Verdict: x.Verdict, Outcome: string(x.Outcome), Reason: x.Reason})
	}
	rd.Digest(w, page)
}

// claimText is a statement's claimed name and email as one line of text.
func claimText(name, email string) string {
	switch {
	case email == "":
		return name
	case name == "":
		return "<" + email + ">"
	}
	return name + " <" + email + ">"
}

// DecisionsJSON is the body of GET /ui/decisions.json: the overview's
// decisions over time and recent refusals for the same filter.
type DecisionsJSON struct {
	Range    string     `json:"range"`
	Totals   Counts     `json:"totals"`
	Bars     []Bar      `json:"bars"`
	Refusals []Decision `json:"refusals"`
}

func (s *Server) serveDecisionsJSON(w http.ResponseWriter, r *http.Request) {
	f, err := ParseDecisionFilter(r.URL.Query())
	if err != nil {
		uiError(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.sees = s.viewer(r)
	now := time.Now().UTC()
	bars, sum := s.stats.series(f, now)
	out := DecisionsJSON{Range: f.Range, Bars: bars, Totals: Counts{Allowed: sum[0] + sum[2], Denied: sum[1], AuditOnly: sum[2]},
		Refusals: s.stats.recentMatching(f, true, 100, now)}
	ui.SetHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// viewer returns what the request's user may see of the decisions: nil
// (everything) when the policy has no access rules, else whether the access
// rules let the user pull a target "UPSTREAM/REPO" (memoized for the
// request): a user refused a repository learns nothing about it here
// either. The user is the one the authorize middleware accepted, asked of
// the access controller again (cached for htpasswd); if it now fails,
// nothing is visible.
func (s *Server) viewer(r *http.Request) func(string) bool {
	pol := s.policy.Load().Policy()
	if len(pol.Access) == 0 {
		return nil
	}
	user := ""
	if ac := s.cfg.access; ac != nil {
		g, err := ac.Authorized(r)
		if err != nil || g == nil {
			return func(string) bool { return false }
		}
		user = g.User.Name
	}
	memo := map[string]bool{}
	return func(target string) bool {
		v, ok := memo[target]
		if !ok {
			v = pol.MayPull(user, target).Allow
			memo[target] = v
		}
		return v
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
