package posix

import (
	"bytes"
	"testing"
)

// TestRowArena: bbolt keeps every key and value of a transaction until it
// commits, so the slices a rowArena hands out must never share bytes,
// even when one is appended to or the buffer runs out.
func TestRowArena(t *testing.T) {
	a := rowArena(make([]byte, 0, 10))
	x := a.cat([]byte("abc"), []byte("de"))
	y := a.cat([]byte("fgh"))
	z := a.cat(bytes.Repeat([]byte("z"), 20)) // more than is left: a new buffer
	w := a.cat([]byte("w"))
	_ = append(x, "XXXX"...) // must not write over y
	if string(x) != "abcde" || string(y) != "fgh" || string(z) != string(bytes.Repeat([]byte("z"), 20)) || string(w) != "w" {
		t.Fatalf("arena slices overlap: %q %q %q %q", x, y, z, w)
	}
	if cap(x) != len(x) || cap(y) != len(y) {
		t.Fatalf("arena slices not capped: cap %d, %d", cap(x), cap(y))
	}
}
