package replica_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// TestReplicaKeepsKindAndMediaType: the policy lets an index's trust cover
// its children only when the trusted statement says it is an index, by
// kind or media type, so the replica must hand both back as signed.
func TestReplicaKeepsKindAndMediaType(t *testing.T) {
	sv := newSigner(t)
	d := notarize.DigestOf([]byte("an index"))
	e, err := notarize.Sign(context.Background(), sv, notarize.NewStatement(d, "test", notarize.Predicate{
		Status: notarize.StatusTrusted, Kind: notarize.KindIndex, MediaType: notarize.MediaTypeOCIIndex, Name: "release", Timestamp: time.Now().UTC(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.Verify()
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{batches: []*ledgerclient.FollowBatch{{
		Entries: []ledgerclient.FollowedEntry{{Index: 0, Record: notarize.Record{Index: 0, KeyID: v.KeyID, Statement: v.Statement}}},
		State:   ledgerclient.FollowState{Size: 1, Hashes: [][]byte{make([]byte, 32)}},
	}}}
	path := filepath.Join(t.TempDir(), "r.db")
	r, err := replica.Open(replica.Config{Path: path, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs, err := r.Records(t.Context(), d)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Records = %+v, %v", recs, err)
	}
	if p := recs[0].Statement.Predicate; p.Kind != notarize.KindIndex || p.MediaType != notarize.MediaTypeOCIIndex {
		t.Fatalf("kind %q, media type %q; want what was signed", p.Kind, p.MediaType)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened from its file, it still has them.
	r, err = replica.Open(replica.Config{Path: path, Source: &fakeSource{}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if recs, err := r.Records(t.Context(), d); err != nil || len(recs) != 1 || recs[0].Statement.Predicate.MediaType != notarize.MediaTypeOCIIndex {
		t.Fatalf("after reopening: %+v, %v", recs, err)
	}
}
