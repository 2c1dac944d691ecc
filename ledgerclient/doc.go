// Package ledgerclient talks to a docker notarize ledger and believes nothing
// it has not verified: it pins the ledger's checkpoint verifier key, keeps the
// last verified checkpoint per log origin on disk, proves consistency from it
// to every newer checkpoint (C2SP tlog-checkpoint, signed-note, tlog-tiles),
// verifies inclusion proofs and every envelope signature itself.
//
// It also holds the wire types of the ledger's JSON API (api.go), shared with
// package ledger.
package ledgerclient
