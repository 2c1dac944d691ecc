package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestGCDefault: with GOGC unset the ledger runs its collector at
// defaultGCPercent; an operator's GOGC, whatever its value, is left as the
// runtime applied it.
func TestGCDefault(t *testing.T) {
	for _, tc := range []struct {
		gogc    string
		wantSet bool
	}{
		{"", true},
		{"100", false},
		{"50", false},
		{"off", false},
	} {
		var got []int
		set := func(p int) int { got = append(got, p); return 100 }
		env := func(k string) string {
			if k == "GOGC" {
				return tc.gogc
			}
			return ""
		}
		applied := applyGCDefault(env, set)
		switch {
		case tc.wantSet && (!applied || len(got) != 1 || got[0] != defaultGCPercent):
			t.Errorf("GOGC unset: applied %v, set %v; want SetGCPercent(%d)", applied, got, defaultGCPercent)
		case !tc.wantSet && (applied || len(got) != 0):
			t.Errorf("GOGC=%q: applied %v, set %v; want the operator's setting left alone", tc.gogc, applied, got)
		}
	}
}

// TestUsageDocumentsGC: --help says what GOGC and GOMEMLIMIT do here.
func TestUsageDocumentsGC(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"GOGC", "uses 200", "GOMEMLIMIT"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage does not mention %q:\n%s", want, stderr.String())
		}
	}
}
