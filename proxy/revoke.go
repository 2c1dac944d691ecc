package proxy

import (
	"context"
	"fmt"

	"github.com/notarize/docker-notarize/notarize"
)

// revocations returns the key revocations that count (notarize's rule:
// the lowest log index of a revocation by the key itself or one of its
// policy revokers) for the keys that the rule matching tgt accepts, from
// the trust source's records about each key's revocation digest. The
// replica holds the whole log, so a revocation counts as soon as the
// replica has applied it: within its follow interval, and at once before
// a refusal (decide refreshes it). A source that cannot answer is an
// error: the caller fails closed (UNVERIFIABLE), never "not revoked".
func (s *Server) revocations(ctx context.Context, pol *notarize.Evaluator, tgt string) (notarize.Revocations, error) {
	_, rule, ok := pol.Policy().Match(tgt)
	if !ok {
		return nil, nil
	}
	var recs []notarize.Record
	seen := map[string]bool{}
	for _, k := range pol.AcceptedKeys(rule) {
		if seen[k] {
			continue
		}
		seen[k] = true
		d, err := notarize.KeyRevocationDigest(k)
		if err != nil {
			return nil, fmt.Errorf("revocations of key %s: %w", k, err)
		}
		// Only the key's and its revokers' records: a revocation by
		// anyone else does not count, and strangers flooding the
		// revocation digest cannot push the decision into UNVERIFIABLE.
		r, err := s.trust.RecordsBy(ctx, d, append([]string{k}, pol.Revokers(k)...))
		if err != nil {
			return nil, fmt.Errorf("revocations of key %s: %w", k, err)
		}
		recs = append(recs, r...)
	}
	return pol.Revocations(recs), nil
}
