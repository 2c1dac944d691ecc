package proxy

import (
	"encoding/json"
	"net/http"
)

// Evidence is the body of GET /notarize/v1/evidence: signed proof that the
// ledger misbehaved, as the replica found it, for anyone to check on their
// own (the entry is signed by the ledger's key, the checkpoint logs it).
type Evidence struct {
	// WrongMapRoots are map-root entries whose root is not the root of the
	// verifiable index recomputed from the log (issue 11).
	WrongMapRoots []WrongMapRoot `json:"wrongMapRoots"`
}

// WrongMapRoot is one wrong map root: the ledger-signed entry (a
// notarize.MapRoot note) at Index, the checkpoint it is logged under, the
// root it claims and the root recomputed from the log's first Size entries.
type WrongMapRoot struct {
	Index      uint64 `json:"index"`
	Size       uint64 `json:"size"`
	Entry      string `json:"entry"`
	Checkpoint string `json:"checkpoint"`
	Claimed    []byte `json:"claimedRoot"`
	Recomputed []byte `json:"recomputedRoot"`
}

// serveEvidence serves what the replica holds as evidence of misbehaviour
// (an empty list when none). It needs an authenticated client, like
// /notarize/v1/stats.
func (s *Server) serveEvidence(w http.ResponseWriter, _ *http.Request) {
	ev := Evidence{WrongMapRoots: []WrongMapRoot{}}
	if e := s.trust.Status().WrongMapRoot; e != nil {
		ev.WrongMapRoots = append(ev.WrongMapRoots, WrongMapRoot{
			Index: e.Index, Size: e.Size, Entry: string(e.Entry), Checkpoint: string(e.Checkpoint),
			Claimed: e.Got[:], Recomputed: e.Want[:],
		})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(ev)
}
