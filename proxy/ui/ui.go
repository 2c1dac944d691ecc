// Package ui renders notarize-proxy's read-only dashboard (served at /ui/
// by package proxy, behind the proxy's client authentication): HTML pages
// from html/template and their assets, all embedded in the binary. A page
// never loads anything from another host, and every answer carries a
// strict Content-Security-Policy: scripts and styles only from the proxy
// itself, no inline script, no inline style (the chart is SVG drawn with
// attributes, not styles), no frames, forms only to the proxy.
//
// The package only renders: package proxy gathers the numbers (from its
// decision record and its ledger replica) into the page types below.
package ui

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CSP is the Content-Security-Policy of every dashboard answer.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'none'; " +
	"font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Filter is the filter form's state and choices.
type Filter struct {
	Upstream, Repo, Verdict, Signer, Outcome, Range string

	Upstreams, Verdicts, Signers, Outcomes, Ranges []string
}

// Bar is one bar of the decisions-over-time chart.
type Bar struct {
	Label                   string
	Allowed, Refused, Audit uint64
}

// Total is the bar's height in decisions.
func (b Bar) Total() uint64 { return b.Allowed + b.Refused + b.Audit }

// Repo is a row of the most pulled repositories.
type Repo struct {
	Upstream, Repo          string
	Allowed, Refused, Audit uint64
	LastVerdict             string
	LastDigest              string
	LastSeen                time.Time
}

// Image is a row of the most verified digests.
type Image struct {
	Digest                  string
	Targets                 []string
	Allowed, Refused, Audit uint64
	LastVerdict, LastSigner string
	LastSeen                time.Time
}

// Refusal is a row of the recent refusals.
type Refusal struct {
	Time                               time.Time
	Target, Reference, Digest          string
	Verdict, Reason, SignCommand, Mode string
}

// Signer is a signer of the policy with its tallies from the replica.
type Signer struct {
	// Name and Email are the policy's: its author vouches for them.
	Name, Email                     string
	Keys                            []string
	Trusted, Untrusted, Unsupported uint64
}

// Revocation is an untrusted or unsupported statement the replica applied.
type Revocation struct {
	Index          uint64
	Time           time.Time
	Digest, Signer string
	Status         string
}

// Replica is the health of the proxy's ledger replica.
type Replica struct {
	Available          bool
	Size, Records      uint64
	BadEntries         uint64
	VerifiedAt         time.Time
	Age                string
	Fresh              bool
	Problem, LastError string
}

// Witness is one witness of the proxy's witness policy with its
// cosignature on the replica's last verified checkpoint.
type Witness struct {
	Name       string
	CosignedAt time.Time
	// State is "cosigned", "old" (cosigned longer ago than the replica's
	// maximum staleness), "missing" (no cosignature on the checkpoint) or
	// "forged" (a line under its key that does not verify).
	State string
}

// Witnesses is the health of the witness policy the replica checks
// every ledger checkpoint against.
type Witnesses struct {
	// Policy is false without a witness policy.
	Policy bool
	// Quorum reads "2 of 3".
	Quorum         string
	CheckpointSize uint64
	// QuorumAt is when the newest verified quorum was completed.
	QuorumAt     time.Time
	MaxStaleness string
	// Fresh is whether the quorum is younger than MaxStaleness.
	Fresh bool
	List  []Witness
}

// Record is the state of the proxy's decision record.
type Record struct {
	Digests, Repos     int
	Untracked, Dropped uint64
	WriteError         string
	Retention          string
}

// Overview is the dashboard's main page.
type Overview struct {
	Now         time.Time
	Filter      Filter
	Error       string
	Bars        []Bar
	Chart       Chart
	Totals      Bar
	Repos       []Repo
	Images      []Image
	Refusals    []Refusal
	Signers     []Signer
	Revocations []Revocation
	Replica     Replica
	Witnesses   Witnesses
	Record      Record
}

// Statement is one statement of a digest's history.
type Statement struct {
	Index uint64
	// Signer is the policy's name for the key (and Email its email), never
	// the statement's claim; "key …" for a key outside the policy.
	Signer, Email string
	KeyID         string
	Status        string
	Timestamp     time.Time
	// Claim is the name and email the statement claims, shown only for a
	// key outside the policy (marked as its claim): a policy key is shown
	// by the policy's name, whatever its statements say.
	Claim    string
	Kind     string
	InPolicy bool
}

// Decision is one recent decision about a digest.
type Decision struct {
	Time                                        time.Time
	Target, Reference, Verdict, Outcome, Reason string
}

// DigestPage is the page of one digest.
type DigestPage struct {
	Now         time.Time
	Digest      string
	Known       bool
	Image       Image
	SignCommand string
	History     []Statement
	HistoryErr  string
	// Omitted counts older statements by keys outside the policy not shown.
	Omitted   int
	Decisions []Decision
}

// Renderer renders the dashboard's pages. It is safe for concurrent use.
type Renderer struct {
	t *template.Template
}

// New parses the embedded templates.
func New() (*Renderer, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"ago":   ago,
		"when":  when,
		"short": short,
		"pct":   pct,
		"lower": strings.ToLower,
		"dict": func(id int, cmd string) any {
			return struct {
				ID  int
				Cmd string
			}{id, cmd}
		},
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("ui: parse templates: %w", err)
	}
	return &Renderer{t: t}, nil
}

// Chart geometry (SVG user units).
const (
	chartH  = 160
	barStep = 24
)

// SetHeaders sets the security headers of every dashboard answer.
func SetHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// Overview writes the main page with HTTP status code.
func (r *Renderer) Overview(w http.ResponseWriter, code int, p Overview) {
	r.render(w, code, "overview.html", p)
}

// Digest writes a digest's page.
func (r *Renderer) Digest(w http.ResponseWriter, p DigestPage) {
	r.render(w, http.StatusOK, "digest.html", p)
}

func (r *Renderer) render(w http.ResponseWriter, code int, name string, data any) {
	var buf bytes.Buffer
	if err := r.t.ExecuteTemplate(&buf, name, data); err != nil {
		SetHeaders(w.Header())
		http.Error(w, "ui: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	SetHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// Static serves the embedded assets (style.css, app.js) under prefix.
func Static(prefix string) http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	fsrv := http.StripPrefix(prefix, http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		SetHeaders(w.Header())
		w.Header().Set("Cache-Control", "max-age=300")
		fsrv.ServeHTTP(w, r)
	})
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// short abbreviates a digest or key ID for display ("sha256:0123456789ab…").
func short(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13] + "…"
	}
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func pct(part, total uint64) string {
	if total == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(part)/float64(total))
}

// Rect is one segment of a stacked bar of the chart.
type Rect struct {
	X, Y, W, H int
	Class      string
	Title      string
}

// Chart is the decisions-over-time chart, laid out for SVG.
type Chart struct {
	W, H   int
	Max    uint64
	Rects  []Rect
	Labels []Rect // X and Title only: the axis labels
}

// NewChart lays out bars as stacked SVG rectangles (refused at the bottom,
// then audit-only, then allowed), scaled to the tallest bar.
func NewChart(bars []Bar) Chart {
	c := Chart{W: len(bars) * barStep, H: chartH}
	for _, b := range bars {
		c.Max = max(c.Max, b.Total())
	}
	for i, b := range bars {
		x, y := i*barStep+2, chartH
		for _, seg := range []struct {
			n     uint64
			class string
		}{{b.Refused, "refused"}, {b.Audit, "audit"}, {b.Allowed, "allowed"}} {
			if seg.n == 0 {
				continue
			}
			h := max(1, int(float64(seg.n)/float64(c.Max)*float64(chartH-4)))
			y -= h
			c.Rects = append(c.Rects, Rect{X: x, Y: y, W: barStep - 4, H: h, Class: seg.class,
				Title: fmt.Sprintf("%s: %d %s", b.Label, seg.n, seg.class)})
		}
		if i%max(1, len(bars)/6) == 0 {
			c.Labels = append(c.Labels, Rect{X: x, Title: b.Label})
		}
	}
	return c
}
