package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestHelpExitsZero: --help (and -h) prints the usage and exits 0, as
// notarize-ledger does; a bad flag still exits 2.
func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var errb bytes.Buffer
		if code := run(t.Context(), []string{arg}, io.Discard, &errb); code != 0 {
			t.Errorf("notarize-proxy %s exits %d, want 0", arg, code)
		}
		if !strings.Contains(errb.String(), "-upstream") {
			t.Errorf("notarize-proxy %s does not print the usage:\n%s", arg, errb.String())
		}
	}
	if code := run(t.Context(), []string{"--no-such-flag"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("notarize-proxy --no-such-flag exits %d, want 2", code)
	}
}

// TestVersionFlag: --version prints the binary's version on stdout and exits 0.
func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"--version"}, &out, io.Discard); code != 0 {
		t.Fatalf("--version exits %d", code)
	}
	if got := out.String(); got != "notarize-proxy "+version+"\n" {
		t.Errorf("--version printed %q", got)
	}
}
