package proxy

import (
	"net/http"
	"strconv"
)

// serveCheckpoint serves the replica's latest verified ledger checkpoint,
// the signed note as the ledger signed it and, with a witness policy, as a
// quorum of its witnesses cosigned it: other proxies (notarize-proxy
// --peer) and auditors compare it with their own view, so that a ledger
// showing one history to this proxy and another to them is caught. It is
// served even when stale (the cosignatures date it), 503 before the first
// verified checkpoint.
func (s *Server) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp := s.trust.Status().Checkpoint
	if len(cp) == 0 {
		http.Error(w, "notarize-proxy: no ledger checkpoint verified yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(cp)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(cp)
}
