package ledger

import (
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam22KeyTablesRange: Config.KeyTables accepts every value from
// 0 (DefaultKeyTables) to the keys the cache holds, the top one included,
// and a ledger made with the top one has that bound; a value out of the
// range is refused by name, with the range. Mutant checked: ">=" for ">"
// in Validate (the documented maximum refused).
func TestRedteam22KeyTablesRange(t *testing.T) {
	for _, n := range []int{0, 1, DefaultKeyTables, notarize.DefaultKeyCacheSize} {
		c := Config{KeyTables: n}
		if err := c.Validate(); err != nil && strings.Contains(err.Error(), "KeyTables") {
			t.Errorf("KeyTables %d refused: %v", n, err)
		}
	}
	for _, n := range []int{-1, notarize.DefaultKeyCacheSize + 1, 1 << 40} {
		c := Config{KeyTables: n}
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "KeyTables") || !strings.Contains(err.Error(), "between 0") {
			t.Errorf("KeyTables %d: %v, want an error naming KeyTables and its range", n, err)
		}
	}
	tl := startLedger(t, Config{KeyTables: notarize.DefaultKeyCacheSize})
	if got := tl.store.keys.TablesBound(); got != notarize.DefaultKeyCacheSize {
		t.Fatalf("KeyTables %d: the cache's bound is %d", notarize.DefaultKeyCacheSize, got)
	}
}
