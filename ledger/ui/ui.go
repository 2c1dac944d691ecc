// Package ui holds the ledger's public page: its html/template and its
// static assets (style sheet and script), embedded in the binary so that
// the page never asks another host for anything. Package ledger renders it
// (ledger/page.go); this package only owns the markup and the view model.
package ui

import (
	"embed"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed templates/index.html templates/key.html
var templates embed.FS

//go:embed static/style.css static/app.js
var static embed.FS

// page is the parsed public page; html/template escapes every value by
// its context.
var page = template.Must(template.ParseFS(templates, "templates/index.html"))

// keyPage is the parsed page of one signer key.
var keyPage = template.Must(template.ParseFS(templates, "templates/key.html"))

// Statement is one signer's current statement about the looked-up digest,
// as the page shows it.
type Statement struct {
	KeyID  string
	Status string
	// Signed is the signer's own timestamp, RFC 3339 in UTC.
	Signed string
	Index  uint64
	// Name is the display name from the statement: it is the signer's
	// claim, not authenticated beyond the key.
	Name string
	// Email is the email from the statement, the signer's claim too.
	Email string
	// Enrolled is the identity the ledger enrols the key with (its
	// --signers file), nil when it enrols none.
	Enrolled *Identity
	// Revoked is the key's self-revocation, nil when it has none.
	Revoked *Revoked
}

// Revoked is a key's revocation of itself as the pages show it: every
// statement by the key at a later log index does not count, whatever
// date it carries.
type Revoked struct {
	// Index is the revocation's log index; Signed its signed timestamp,
	// RFC 3339 in UTC (informational); Reason its reason attribute.
	Index  uint64
	Signed string
	Reason string
	// After is set when the statement shown beside it comes after the
	// revocation in the log, and so does not count.
	After bool
	// Unread is set when the page read Scanned statements about its
	// signers' revocation digests (the key's own, on a key's page) without
	// reaching the end of this key's: it cannot say whether it is revoked. Skipped is set when the page did not look
	// the key up at all: it looks up Scanned signers' at most.
	Unread  bool
	Skipped bool
	Scanned int
}

// Identity is a signer's enrolled identity as the pages show it.
type Identity struct {
	Name  string
	Email string
}

// Data is the view model of the page.
type Data struct {
	// Digest is the digest asked for, as typed (it may be invalid).
	Digest string
	// Looked is true when a valid digest was looked up.
	Looked bool
	// Error is a message for a person when the lookup could not be made.
	Error string
	// Statements holds the current statement of each signer, by key ID.
	Statements []Statement
	// Entries is the number of entries read to build Statements.
	Entries int
	// Truncated is set when more entries match than the page reads.
	Truncated bool
	// MaxEntries is the bound on the entries the page reads.
	MaxEntries int
	// LogSize is the tree size of the checkpoint the answer was read under.
	LogSize uint64
}

// Render writes the page for d to w.
func Render(w io.Writer, d Data) error {
	return page.Execute(w, d)
}

// KeyStatement is a signer key's current statement about one digest, as
// the key's page shows it.
type KeyStatement struct {
	Digest string
	Status string
	// Signed is the signer's own timestamp, RFC 3339 in UTC.
	Signed string
	Index  uint64
	// Name is the display name the signer claims in the statement.
	Name string
	// Email is the email the signer claims in the statement.
	Email string
	// Subject is the subject's name in the statement (an image reference
	// or a file name), as the signer wrote it.
	Subject string
	// AfterRevocation is set when the key revoked itself at a lower log
	// index: the statement does not count.
	AfterRevocation bool
}

// KeyData is the view model of a signer key's page.
type KeyData struct {
	// KeyID is the key asked for, as typed (it may be invalid).
	KeyID string
	// Enrolled is the identity the ledger enrols the key with (its
	// --signers file), nil when it enrols none.
	Enrolled *Identity
	// Revoked is the key's self-revocation, nil when it has none.
	Revoked *Revoked
	// Looked is true when a valid key ID was looked up.
	Looked bool
	// Error is a message for a person when the lookup could not be made.
	Error string
	// Trusted, Untrusted and Unsupported count the digests by the key's
	// current statement about each, among the Digests read.
	Trusted, Untrusted, Unsupported int
	// Digests is how many digests were read; AtLeast is set when the key
	// has statements about more than the page reads (MaxDigests), so the
	// counts are lower bounds.
	Digests    int
	AtLeast    bool
	MaxDigests int
	// Recent are the key's most recent current statements among those
	// read, newest signed first.
	Recent []KeyStatement
	// LogSize is the tree size of the checkpoint the answer was read under.
	LogSize uint64
}

// RenderKey writes the page of one signer key to w.
func RenderKey(w io.Writer, d KeyData) error {
	return keyPage.Execute(w, d)
}

// Static serves the embedded assets under the path prefix /static/. It
// answers 404 for anything else, directories included (no listings).
func Static() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}
