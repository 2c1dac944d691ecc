//go:build race

package ledger

// raceEnabled reports whether the tests run with the race detector: the
// ledger binary the MySQL tests start is built the same way, reusing the
// build cache.
const raceEnabled = true
