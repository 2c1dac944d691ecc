package ledger

import (
	"crypto/sha256"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// TestFollowerIndexesVerifiedEntriesOnly: the follower checks every entry;
// one that does not verify (a foreign log, or a rule made stricter since it
// was logged) is in no lookup, but an exact replay of it is still a
// duplicate. Rows carry the key, so a filtered page and the current
// statement see only the keys asked for.
func TestFollowerIndexesVerifiedEntriesOnly(t *testing.T) {
	st, err := openTestIndex(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b := newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	good := a.signAt(t, d, notarize.StatusTrusted, now)
	forged := b.signAt(t, d, notarize.StatusTrusted, now)
	forged.Envelope.Signatures[0].Sig = good.Envelope.Signatures[0].Sig
	later := a.signAt(t, d, notarize.StatusUntrusted, now.Add(time.Second))
	byB := b.signAt(t, d, notarize.StatusTrusted, now.Add(time.Hour))
	lg := &fakeLog{}
	lg.append(mustMarshal(t, good), mustMarshal(t, forged), mustMarshal(t, later), mustMarshal(t, byB))
	stop := follow(t, st, lg)
	defer stop()
	waitProcessed(t, st, 4)

	ctx := t.Context()
	for _, tc := range []struct {
		keys []string
		want []uint64
	}{
		{nil, []uint64{0, 2, 3}},
		{[]string{a.keyID}, []uint64{0, 2}},
		{[]string{b.keyID}, []uint64{3}},
		{[]string{a.keyID, b.keyID}, []uint64{0, 2, 3}},
	} {
		got, err := st.Page(ctx, d, tc.keys, 0, math.MaxUint64, 100)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Fatalf("page of %d keys: %v %v, want %v", len(tc.keys), got, err, tc.want)
		}
	}
	if got, err := st.Page(ctx, d, []string{a.keyID, b.keyID}, 1, 3, 100); err != nil || !slices.Equal(got, []uint64{2}) {
		t.Fatalf("page [1, 3): %v %v", got, err)
	}
	if got, err := st.Current(ctx, d, []string{a.keyID, b.keyID}, 4); err != nil || !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("current: %v %v, want [2 3]", got, err)
	}
	// Below index 3, b has no verified statement.
	if got, err := st.Current(ctx, d, []string{a.keyID, b.keyID}, 3); err != nil || !slices.Equal(got, []uint64{2}) {
		t.Fatalf("current below 3: %v %v, want [2]", got, err)
	}
	h := sha256.Sum256(mustMarshal(t, forged))
	if idx, ok, err := st.indexOf(ctx, h); err != nil || !ok || idx != 1 {
		t.Fatalf("identity of the unverifiable entry: %d %v %v, want 1", idx, ok, err)
	}
}
