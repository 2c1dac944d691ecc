package ledger

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ui"
	"github.com/notarize/docker-notarize/notarize"
)

// pageMaxEntries bounds the entries the public page reads for one digest
// (over as many Lookup pages as it takes); the page says when more exist.
const pageMaxEntries = 200

// Bounds of a signer key's page: the digests it reads from the key lookup
// to count the key's tallies (past it the page says "at least"), and the
// most recent statements it lists.
const (
	pageKeyMaxDigests = api.MaxLookupLimit
	pageKeyRecent     = 20
	// pageKeyMaxPages bounds the key lookup pages read for one view (a
	// page may end early, short of its limit).
	pageKeyMaxPages = 8
)

// pageCSP is the Content-Security-Policy of the public page and its
// assets: nothing but this origin's own style sheet and script, no inline
// script or style, no framing, forms only to this origin.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// routePage adds the public page: exactly "/", a signer key's page at
// "/keys/{keyid}" and the embedded assets under "/static/". Every other
// unknown path keeps the JSON 404.
func (l *Ledger) routePage(mux *http.ServeMux) {
	mux.Handle("/{$}", pageHeaders(http.HandlerFunc(l.servePage)))
	mux.Handle("/keys/{keyid}", pageHeaders(http.HandlerFunc(l.serveKeyPage)))
	mux.Handle("/static/", pageHeaders(ui.Static()))
}

// pageHeaders sets the security headers of the page and its assets and
// allows GET and HEAD only.
func pageHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", pageCSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// servePage renders the public page, with the current statements of
// every signer about the digest query parameter when there is one.
func (l *Ledger) servePage(w http.ResponseWriter, r *http.Request) {
	data := ui.Data{MaxEntries: pageMaxEntries}
	status := http.StatusOK
	if q := r.URL.Query(); q.Has("digest") {
		raw := strings.TrimSpace(q.Get("digest"))
		data.Digest = truncate(raw, 200)
		if d, err := notarize.ParseDigest(raw); err != nil {
			status = http.StatusBadRequest
			data.Error = "Not a digest: want sha256: followed by 64 lowercase hex characters."
		} else if err := l.pageLookup(r.Context(), d, &data); err != nil {
			status, _ = classify(err)
			data.Error = pageErrorMessage(status)
			data.Looked = false
			if status >= http.StatusInternalServerError && status != http.StatusServiceUnavailable {
				l.log.ErrorContext(r.Context(), "page lookup", "digest", d.String(), "err", err)
			}
		}
	}
	var buf bytes.Buffer
	if err := ui.Render(&buf, data); err != nil {
		l.log.ErrorContext(r.Context(), "render page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	writePage(w, r, status, buf.Bytes())
}

// pageErrorMessage is what the page says for a failed lookup; the error
// itself is logged, not shown.
func pageErrorMessage(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "The ledger refused this lookup as malformed."
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return "The ledger is busy; try again in a moment."
	default:
		return "The ledger could not answer this lookup."
	}
}

// pageLookup reads up to pageMaxEntries entries about d from the index
// and folds them, per key, to the current statement (notarize.Current).
// When more entries exist, the current statements of the keys seen are
// asked for with Ledger.Current, so that a later statement of a shown
// key is never hidden; keys seen only later remain unlisted, and the
// page says so.
func (l *Ledger) pageLookup(ctx context.Context, d notarize.Digest, data *ui.Data) error {
	var (
		records []notarize.Record
		after   *uint64
		size    uint64
	)
	for len(records) < pageMaxEntries {
		resp, err := l.Lookup(ctx, d, LookupOptions{After: after, Limit: pageMaxEntries - len(records)})
		if err != nil {
			return err
		}
		recs, sz, err := pageRecords(resp)
		if err != nil {
			return err
		}
		records, size = append(records, recs...), sz
		if resp.Next == nil {
			after = nil
			break
		}
		after = resp.Next
	}
	data.Entries = len(records)
	data.Truncated = after != nil
	keys := make([]string, 0)
	for _, r := range records {
		if !slices.Contains(keys, r.KeyID) {
			keys = append(keys, r.KeyID)
		}
	}
	slices.Sort(keys)
	if data.Truncated {
		for chunk := range slices.Chunk(keys, api.MaxCurrentKeyIDs) {
			resp, err := l.Current(ctx, d, chunk)
			if err != nil {
				return err
			}
			recs, _, err := pageRecords(resp)
			if err != nil {
				return err
			}
			records = append(records, recs...)
		}
	}
	for _, k := range keys {
		rec, ok := notarize.Current(records, d, k)
		if !ok {
			continue
		}
		p := rec.Statement.Predicate
		data.Statements = append(data.Statements, ui.Statement{
			KeyID:  rec.KeyID,
			Status: string(p.Status),
			Signed: p.Timestamp.UTC().Format(time.RFC3339),
			Index:  rec.Index,
			Name:   truncate(p.Name, notarize.MaxNameLen),
		})
	}
	data.Looked = true
	data.LogSize = size
	return nil
}

// pageRecords verifies the entries of resp (as logged: VerifyLogged) and
// returns them as records, with the size of resp's checkpoint. An entry
// of the index that does not verify is an internal error (not wrapped,
// so that it classifies as 500): the ledger accepted only verified ones.
func pageRecords(resp *api.LookupResponse) ([]notarize.Record, uint64, error) {
	out, err := pageEntries(resp.Entries)
	if err != nil {
		return nil, 0, err
	}
	return out, checkpointSize(resp.Checkpoint), nil
}

// pageEntries verifies lookup entries as logged and returns them as
// records; one that does not verify is an internal error.
func pageEntries(entries []api.LookupEntry) ([]notarize.Record, error) {
	out := make([]notarize.Record, 0, len(entries))
	for _, le := range entries {
		e, err := notarize.ParseEntry(le.Entry)
		if err != nil {
			return nil, fmt.Errorf("page: entry %d of the index does not verify: %v", le.Index, err)
		}
		v, err := e.VerifyLogged()
		if err != nil {
			return nil, fmt.Errorf("page: entry %d of the index does not verify: %v", le.Index, err)
		}
		out = append(out, notarize.Record{Index: le.Index, KeyID: v.KeyID, Statement: v.Statement})
	}
	return out, nil
}

// checkpointSize returns the tree size of a checkpoint note (its second
// line), or 0 when it has none.
func checkpointSize(cp string) uint64 {
	lines := strings.SplitN(cp, "\n", 3)
	if len(lines) < 3 {
		return 0
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// serveKeyPage renders the page of one signer key: its tallies of current
// statements by status and its most recent statements, from the key
// lookup, bounded by pageKeyMaxDigests.
func (l *Ledger) serveKeyPage(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("keyid")
	data := ui.KeyData{KeyID: truncate(raw, 200)}
	status := http.StatusOK
	if !isKeyID(raw) {
		status = http.StatusBadRequest
		data.Error = "Not a key ID: want 64 lowercase hex characters (the SHA-256 of the signer's public key)."
	} else if err := l.pageKey(r.Context(), raw, pageKeyMaxDigests, &data); err != nil {
		status, _ = classify(err)
		data.Error = pageErrorMessage(status)
		data.Looked = false
		if status >= http.StatusInternalServerError && status != http.StatusServiceUnavailable {
			l.log.ErrorContext(r.Context(), "key page lookup", "keyid", raw, "err", err)
		}
	}
	var buf bytes.Buffer
	if err := ui.RenderKey(&buf, data); err != nil {
		l.log.ErrorContext(r.Context(), "render key page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	writePage(w, r, status, buf.Bytes())
}

// writePage sends a rendered page with status.
func writePage(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// pageKey reads up to bound digests of keyID from the key lookup (in
// digest order, each with the key's current statement), counts them by
// status and keeps the pageKeyRecent most recently signed. When more
// digests follow, the counts are lower bounds (AtLeast).
func (l *Ledger) pageKey(ctx context.Context, keyID string, bound int, data *ui.KeyData) error {
	data.MaxDigests = bound
	var (
		cursor notarize.Digest
		recs   []notarize.Record
		size   uint64
	)
	for range pageKeyMaxPages {
		resp, err := l.KeyDigests(ctx, keyID, KeyDigestsOptions{Cursor: cursor, Limit: bound - len(recs)})
		if err != nil {
			return err
		}
		got, err := pageEntries(resp.Entries)
		if err != nil {
			return err
		}
		recs, size = append(recs, got...), checkpointSize(resp.Checkpoint)
		cursor = notarize.Digest(resp.Next)
		if cursor == "" || len(recs) >= bound {
			break
		}
	}
	data.AtLeast = cursor != ""
	for _, rec := range recs {
		switch rec.Statement.Predicate.Status {
		case notarize.StatusTrusted:
			data.Trusted++
		case notarize.StatusUntrusted:
			data.Untrusted++
		case notarize.StatusUnsupported:
			data.Unsupported++
		}
	}
	data.Digests = len(recs)
	slices.SortFunc(recs, func(a, b notarize.Record) int {
		if c := b.Statement.Predicate.Timestamp.Compare(a.Statement.Predicate.Timestamp); c != 0 {
			return c
		}
		return cmp.Compare(b.Index, a.Index)
	})
	for _, rec := range recs[:min(len(recs), pageKeyRecent)] {
		p := rec.Statement.Predicate
		st := ui.KeyStatement{Digest: rec.Statement.Digest().String(), Status: string(p.Status),
			Signed: p.Timestamp.UTC().Format(time.RFC3339), Index: rec.Index, Name: truncate(p.Name, notarize.MaxNameLen)}
		if len(rec.Statement.Subject) > 0 {
			st.Subject = truncate(rec.Statement.Subject[0].Name, 200)
		}
		data.Recent = append(data.Recent, st)
	}
	data.Looked = true
	data.LogSize = size
	return nil
}
