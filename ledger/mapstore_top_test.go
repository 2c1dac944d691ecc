package ledger

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// TestTopNodesFoldsRecomputeFromLog: with the map's top levels read from
// memory (topNodes), every root the ledger commits over many updates, on
// either engine, is the root recomputed from the log, and the kept levels
// were read from memory: a kept node not moved by a commit's writes (the
// root node changes at every commit) would have given a root the log does
// not recompute.
func TestTopNodesFoldsRecomputeFromLog(t *testing.T) {
	for _, engine := range []string{posix.EnginePebble, posix.EngineBbolt} {
		t.Run(engine, func(t *testing.T) {
			t.Setenv(envTestEngine, engine)
			tl := startLedger(t, Config{MapCommitEntries: 100, MapCommitInterval: 20 * time.Millisecond})
			if tl.vmap.top == nil {
				t.Fatal("a ledger with a map of its own keeps no top levels in memory")
			}
			alice, bob := newTestSigner(t), newTestSigner(t)
			t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
			var digests []notarize.Digest
			for round := range 6 {
				var entries [][]byte
				for i := range 100 {
					d := randomDigest(t)
					if len(digests) > 0 && i%3 == 0 {
						d = digests[(round*31+i)%len(digests)] // a key updated again
					}
					digests = append(digests, d)
					s := alice
					if i%2 == 1 {
						s = bob
					}
					entries = append(entries, mustMarshal(t, s.signAt(t, d, notarize.StatusTrusted, t0.Add(time.Duration(round*100+i)*time.Second))))
				}
				appendRaw(t, tl, entries)
				waitMapCovers(t, tl, tl.store.Processed())
			}
			waitRootIndexed(t, tl)
			if n := recomputeRoots(t, tl); n < 6 {
				t.Fatalf("%d roots checked, want at least 6", n)
			}
			top := tl.vmap.top
			top.mu.Lock()
			hits, misses, depth := top.hits, top.misses, top.depth
			top.mu.Unlock()
			if depth < 5 || hits < misses {
				t.Fatalf("kept levels 0-%d: %d node IDs from memory, %d from the store; want most from memory", depth, hits, misses)
			}
			t.Logf("kept levels 0-%d: %d node IDs from memory, %d from the store", depth, hits, misses)
		})
	}
}

// countNodes is a storage.MapNodeReader over stored nodes by ID bytes
// that counts the IDs it is asked for.
type countNodes struct {
	nodes map[string][]byte
	asked int
}

func (c *countNodes) MapNodes(_ context.Context, ids [][]byte) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = c.nodes[string(id)]
		c.asked++
	}
	return out, nil
}

// TestTopNodesHoldOnlyTheirPosition: topNodes answers from memory only
// for the position it was filled at or moved to by a commit from it.
// Reads of a snapshot at another position empty it; so does a commit from
// another position, a failed update (reset), and a reader made before a
// commit fills nothing after it.
func TestTopNodesHoldOnlyTheirPosition(t *testing.T) {
	ctx := t.Context()
	id := func(depth int, prefix byte) []byte {
		return append(binary.BigEndian.AppendUint16(nil, uint16(depth)), prefix)
	}
	root := []byte{0, 0}
	base := &countNodes{nodes: map[string][]byte{string(root): []byte("root@100"), string(id(1, 0x80)): []byte("right@100")}}
	read := func(r storage.MapNodeReader, ids ...[]byte) []string {
		t.Helper()
		got, err := r.MapNodes(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(got))
		for i, v := range got {
			out[i] = string(v)
		}
		return out
	}
	top := &topNodes{}
	r := top.over(base, 100) // topDepth(100) = 3
	if got := read(r, root, id(1, 0x80), id(1, 0)); got[0] != "root@100" || got[1] != "right@100" || got[2] != "" {
		t.Fatalf("first read: %q", got)
	}
	asked := base.asked
	if got := read(top.over(base, 100), root, id(1, 0)); got[0] != "root@100" || got[1] != "" || base.asked != asked {
		t.Fatalf("second read at the same position: %q, %d IDs asked of the store", got, base.asked-asked)
	}

	// A commit from 100 moves it; the store holds the commit too.
	old := top.over(base, 100)
	c := &storage.MapCommit{From: 100, Position: 120, Writes: []storage.MapNodeWrite{{ID: root, Node: []byte("root@120")}, {ID: id(1, 0x80), Delete: true}}}
	top.committed(c)
	base.nodes[string(root)] = []byte("root@120")
	delete(base.nodes, string(id(1, 0x80)))
	asked = base.asked
	if got := read(top.over(base, 120), root, id(1, 0x80)); got[0] != "root@120" || got[1] != "" || base.asked != asked {
		t.Fatalf("after the commit: %q, %d IDs asked of the store", got, base.asked-asked)
	}
	// The reader made at 100 reads the store, and fills nothing.
	base.nodes[string(id(2, 0x40))] = []byte("stale")
	read(old, id(2, 0x40))
	delete(base.nodes, string(id(2, 0x40)))
	if got := read(top.over(base, 120), id(2, 0x40)); got[0] != "" {
		t.Fatalf("a reader made before the commit filled %q after it", got)
	}

	// A snapshot at another position, a commit from another position, a
	// failed update: each empties it.
	for _, step := range []struct {
		name string
		do   func()
		at   uint64
	}{
		{"a snapshot at another position", func() {}, 122},
		{"a commit from another position", func() { top.committed(&storage.MapCommit{From: 7, Position: 121}) }, 121},
		{"a failed update", top.reset, 121},
	} {
		read(top.over(base, 121), root) // filled at 121
		base.nodes[string(root)] = []byte("root@" + step.name)
		step.do()
		if got := read(top.over(base, step.at), root); got[0] != "root@"+step.name {
			t.Fatalf("%s: read %q, want the store's", step.name, got[0])
		}
	}

	// Levels below the kept ones are never kept.
	deep := id(topDepth(121)+1, 0x20)
	base.nodes[string(deep)] = []byte("deep")
	read(top.over(base, 121), deep)
	asked = base.asked
	read(top.over(base, 121), deep)
	if base.asked == asked {
		t.Fatal("a node below the kept levels was answered from memory")
	}
}
