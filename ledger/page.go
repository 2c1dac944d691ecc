package ledger

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/ledger/ui"
	"github.com/notarize/docker-notarize/notarize"
)

// pageMaxEntries bounds the entries the public page reads for one digest
// (over as many Lookup pages as it takes); the page says when more exist.
const pageMaxEntries = 200

// Bounds of a signer key's page: the digests it reads from the key index
// to count the key's tallies (past it the page says "at least"), and the
// most recent statements it lists.
const (
	pageKeyMaxDigests = 10_000
	pageKeyRecent     = 20
	// pageKeyScanChunk is the key index rows read at a time.
	pageKeyScanChunk = 512
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
	l.writePage(w, r, status, buf.Bytes())
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

// pageLookup reads the first pageMaxEntries entries about d from the
// index (below the latest checkpoint, once the index has caught up with
// it) and folds them, per key, to the current statement
// (notarize.Current). When more entries exist, the current statement of
// each key seen is read too, so that a later statement of a shown key is
// never hidden; keys seen only later remain unlisted, and the page says
// so. It builds no proof: the page is a convenience, verify proves.
func (l *Ledger) pageLookup(ctx context.Context, d notarize.Digest, data *ui.Data) error {
	_, cp, err := l.coveredCheckpoint(ctx)
	if err != nil {
		return err
	}
	leave, err := l.enterLookup(ctx, lookupPage)
	if err != nil {
		return err
	}
	defer leave()
	indices, err := l.store.Page(ctx, d, nil, 0, cp.Size, pageMaxEntries+1)
	if err != nil {
		return err
	}
	data.Truncated = len(indices) > pageMaxEntries
	indices = indices[:min(len(indices), pageMaxEntries)]
	records, err := l.pageRead(ctx, indices)
	if err != nil {
		return err
	}
	data.Entries = len(records)
	keys := make([]string, 0)
	for _, r := range records {
		if !slices.Contains(keys, r.KeyID) {
			keys = append(keys, r.KeyID)
		}
	}
	slices.Sort(keys)
	if data.Truncated {
		cur, err := l.store.Current(ctx, d, keys, cp.Size)
		if err != nil {
			return err
		}
		slices.Sort(cur)
		more, err := l.pageRead(ctx, cur)
		if err != nil {
			return err
		}
		records = append(records, more...)
	}
	first := make(map[string]uint64, len(keys)) // each key's first statement read
	for _, r := range records {
		if _, ok := first[r.KeyID]; !ok || r.Index < first[r.KeyID] {
			first[r.KeyID] = r.Index
		}
	}
	revs, err := l.selfRevocations(ctx, keys, first, cp.Size)
	if err != nil {
		return err
	}
	for i, k := range keys {
		rv := revs[i].rv
		// A revoked key's current statement is chosen among those before
		// its revocation. When the page read only some of the statements
		// (Truncated), that choice could be wrong: the newest is shown,
		// marked if it comes after the revocation.
		counted := records
		if rv != nil && !data.Truncated {
			counted = notarize.Revocations{k: *rv}.Filter(records)
		}
		rec, ok := notarize.Current(counted, d, k)
		if !ok {
			rec, ok = notarize.Current(records, d, k)
		}
		if !ok {
			continue
		}
		p := rec.Statement.Predicate
		data.Statements = append(data.Statements, ui.Statement{
			KeyID:    rec.KeyID,
			Status:   string(p.Status),
			Signed:   p.Timestamp.UTC().Format(time.RFC3339),
			Index:    rec.Index,
			Name:     truncate(p.Name, notarize.MaxNameLen),
			Email:    p.Email,
			Enrolled: l.enrolledIdentity(rec.KeyID),
			Revoked:  l.pageRevokedOf(revs[i], rec.Index),
		})
	}
	data.Looked = true
	data.LogSize = cp.Size
	return nil
}

// pageRead reads the entries at indices (increasing) from the index and
// returns them as records (pageEntries).
func (l *Ledger) pageRead(ctx context.Context, indices []uint64) ([]notarize.Record, error) {
	entries := make([]api.LookupEntry, 0, len(indices))
	err := l.store.entries(ctx, indices, func(i uint64, data []byte) bool {
		entries = append(entries, api.LookupEntry{Index: i, Entry: data})
		return true
	})
	if err != nil {
		return nil, err
	}
	return pageEntries(entries)
}

// pageEntries reads lookup entries of the ledger's own index as records,
// in their order; one that does not parse is an internal error. Each
// entry's signature was checked before it was indexed (indexEntry) and is
// not checked again here: the page is a convenience that proves nothing to
// its reader (verify and ls check every signature themselves), and the
// check was most of a page's time. The parsing is spread over the
// machine's cores.
func pageEntries(entries []api.LookupEntry) ([]notarize.Record, error) {
	out := make([]notarize.Record, len(entries))
	errs := make([]error, len(entries))
	workers := min(runtime.GOMAXPROCS(0), (len(entries)+pageParseChunk-1)/pageParseChunk)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(entries) {
					return
				}
				out[i], errs[i] = pageRecord(entries[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// pageParseChunk is the fewest entries per core worth a goroutine.
const pageParseChunk = 32

// pageRecord parses one indexed entry: its statement and its signer's key ID.
func pageRecord(le api.LookupEntry) (notarize.Record, error) {
	bad := func(err error) (notarize.Record, error) {
		return notarize.Record{}, fmt.Errorf("page: entry %d of the index does not parse: %v", le.Index, err)
	}
	e, err := notarize.ParseEntry(le.Entry)
	if err != nil {
		return bad(err)
	}
	payload, err := base64.StdEncoding.DecodeString(e.Envelope.Payload)
	if err != nil {
		return bad(err)
	}
	st, err := notarize.ParseStatement(payload)
	if err != nil {
		return bad(err)
	}
	pub, err := notarize.ParsePublicKey([]byte(e.PublicKey))
	if err != nil {
		return bad(err)
	}
	keyID, err := notarize.KeyID(pub)
	if err != nil {
		return bad(err)
	}
	return notarize.Record{Index: le.Index, KeyID: keyID, Statement: st}, nil
}

// serveKeyPage renders the page of one signer key: its tallies of current
// statements by status and its most recent statements, from the key
// lookup, bounded by pageKeyMaxDigests.
func (l *Ledger) serveKeyPage(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("keyid")
	data := ui.KeyData{KeyID: truncate(raw, 200), Enrolled: l.enrolledIdentity(raw)}
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
	l.writePage(w, r, status, buf.Bytes())
}

// writePage sends a rendered page with status, held by the answer budget
// until written (writeHeld); past the budget, a short 503 instead.
func (l *Ledger) writePage(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	err := l.writeHeld(w, r, status, func(h http.Header) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		if status == http.StatusServiceUnavailable {
			h.Set("Retry-After", "1")
		}
	}, body, 0)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "The ledger is busy: too many answers not yet read by their clients. Retry in a second.", http.StatusServiceUnavailable)
	}
}

// pageKey counts, from the key index, the digests keyID has statements
// about by the key's current statement about each, reading at most bound
// rows (past it the counts are lower bounds: AtLeast), and shows the
// pageKeyRecent most recently signed of them, reading only those entries.
// It waits for the index to catch up with the latest checkpoint, and
// builds no proof: the page is a convenience, ls proves.
func (l *Ledger) pageKey(ctx context.Context, keyID string, bound int, data *ui.KeyData) error {
	data.MaxDigests = bound
	key, err := hex.DecodeString(keyID)
	if err != nil || len(key) != 32 {
		return fmt.Errorf("%w: key ID %q", errBadRequest, truncate(keyID, 80))
	}
	_, cp, err := l.coveredCheckpoint(ctx)
	if err != nil {
		return err
	}
	leave, err := l.enterLookup(ctx, lookupPage)
	if err != nil {
		return err
	}
	defer leave()
	var (
		recent []storage.KeyRow // the newest rows, newest first
		after  []byte
		n      int
		done   bool
	)
	for !done && n < bound {
		want := min(pageKeyScanChunk, bound-n)
		rows, err := l.store.db.KeyDigests(ctx, key, after, want)
		if err != nil {
			return fmt.Errorf("page: key digests: %w", err)
		}
		for _, r := range rows {
			switch storage.StatusOf(r.Status) {
			case notarize.StatusTrusted:
				data.Trusted++
			case notarize.StatusUntrusted:
				data.Untrusted++
			case notarize.StatusUnsupported:
				data.Unsupported++
			}
			recent = keepNewest(recent, r, pageKeyRecent)
		}
		n += len(rows)
		done = len(rows) < want // the key has no more rows
		if len(rows) > 0 {
			after = rows[len(rows)-1].Digest
		}
	}
	data.Digests = n
	if !done {
		more, err := l.store.db.KeyDigests(ctx, key, after, 1)
		if err != nil {
			return fmt.Errorf("page: key digests: %w", err)
		}
		data.AtLeast = len(more) > 0
	}
	indices := make([]uint64, len(recent))
	for i, r := range recent {
		indices[i] = r.Index
	}
	slices.Sort(indices)
	recs, err := l.pageRead(ctx, indices)
	if err != nil {
		return err
	}
	slices.SortFunc(recs, func(a, b notarize.Record) int {
		if c := b.Statement.Predicate.Timestamp.Compare(a.Statement.Predicate.Timestamp); c != 0 {
			return c
		}
		return cmp.Compare(b.Index, a.Index)
	})
	rv, cut, err := l.selfRevocation(ctx, keyID, cp.Size, l.newScanBudget())
	if err != nil {
		return err
	}
	data.Revoked = l.pageRevoked(rv, cut, 0)
	for _, rec := range recs {
		p := rec.Statement.Predicate
		st := ui.KeyStatement{AfterRevocation: rv != nil && rec.Index > rv.Index, Digest: rec.Statement.Digest().String(), Status: string(p.Status),
			Signed: p.Timestamp.UTC().Format(time.RFC3339), Index: rec.Index, Name: truncate(p.Name, notarize.MaxNameLen), Email: p.Email}
		if len(rec.Statement.Subject) > 0 {
			st.Subject = truncate(rec.Statement.Subject[0].Name, 200)
		}
		data.Recent = append(data.Recent, st)
	}
	data.Looked = true
	data.LogSize = max(cp.Size, l.store.Processed())
	return nil
}

// keepNewest inserts r into newest (newest signed first, ties broken by
// the greater log index) and keeps at most k rows.
func keepNewest(newest []storage.KeyRow, r storage.KeyRow, k int) []storage.KeyRow {
	i := len(newest)
	for i > 0 && storage.Newer(r.Stamp, r.Index, newest[i-1].Stamp, newest[i-1].Index) {
		i--
	}
	if i >= k {
		return newest
	}
	newest = slices.Insert(newest, i, r)
	return newest[:min(len(newest), k)]
}
