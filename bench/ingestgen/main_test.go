package main

import "testing"

// TestSignerKeyFromSeed: with a seed, key i is the same in every run and
// differs from key j; without one, every key is new.
func TestSignerKeyFromSeed(t *testing.T) {
	key := func(seed string, i int) string {
		t.Helper()
		k, err := signerKey(seed, i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if key("s", 3) != key("s", 3) {
		t.Fatal("one seed and index gave two keys")
	}
	if key("s", 3) == key("s", 4) || key("s", 3) == key("t", 3) {
		t.Fatal("two seeds or indices gave one key")
	}
	if key("", 3) == key("", 3) {
		t.Fatal("without a seed, two runs gave one key")
	}
}
